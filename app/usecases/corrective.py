"""The corrective 402 of batch settlement: the channel as the gateway books it and the last voucher it holds.

A client that lost its place (a new process, lost storage) sends a voucher that is not the channel's next; the
refusal carries, in the batch offer's `extra`, the channel's state and the last voucher, from which the official
clients re-base and sign again (a voucher: charged + price; a refund: the charged total).
"""

from __future__ import annotations

from typing import Protocol

from app.usecases.outcomes import Refused
from app.usecases.pricing import PaidRoute
from payments import PaymentRequirements
from payments.evm.batch import channel_state_extra, corrective_requirements


class BookedChannel(Protocol):
    """What a corrective 402 says of a channel (the ledger's Channel and a refund's HeldChannel both have it)."""

    @property
    def balance_atomic(self) -> int: ...
    @property
    def claimed_atomic(self) -> int: ...
    @property
    def withdraw_requested_at(self) -> int: ...
    @property
    def refund_nonce(self) -> int: ...
    @property
    def charged_atomic(self) -> int: ...
    @property
    def signed_max_atomic(self) -> int | None: ...
    @property
    def signature(self) -> str | None: ...


def corrective(
    paid: PaidRoute, offer: PaymentRequirements, refused: Refused, channel_id: str, channel: BookedChannel
) -> Refused:
    """`refused`, its batch offer replaced by one carrying `channel`'s state and last voucher."""
    state = channel_state_extra(
        channel_id,
        channel.balance_atomic,
        channel.claimed_atomic,
        channel.withdraw_requested_at,
        channel.refund_nonce,
        channel.charged_atomic,
    )
    corrected = corrective_requirements(offer, state, channel.signed_max_atomic, channel.signature)
    offers = tuple(corrected if (o.scheme, o.network) == (offer.scheme, offer.network) else o for o in paid.offers)
    return Refused(refused.refusal, offers)
