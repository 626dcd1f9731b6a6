"""Dispatch to a scheme's local inspection by network family, and v1 payloads into v2 form.

`inspect` is what the gate runs before claiming a payment: pure, no I/O, microseconds. `authenticate`
runs right after it, before anything is recorded under the payer it names.
"""

from __future__ import annotations

import time

from .codec import PaymentPayload, PaymentPayloadV1, PaymentRequirements
from .errors import Reason, Refusal
from .evm import exact as evm_exact
from .facilitator import Facilitator
from .networks import caip2
from .outcomes import Inspection
from .svm import exact as svm_exact


def inspect(
    payload: PaymentPayload, requirements: PaymentRequirements, now_unix_s: int | None = None
) -> Inspection | Refusal:
    now = int(time.time()) if now_unix_s is None else now_unix_s
    family = requirements.network.partition(":")[0]
    if family == "eip155" and requirements.scheme == evm_exact.SCHEME:
        return evm_exact.inspect(payload, requirements, now)
    if family == "solana" and requirements.scheme == svm_exact.SCHEME:
        return svm_exact.inspect(payload, requirements)
    return Refusal(Reason.UNSUPPORTED_SCHEME, f"no {requirements.scheme} scheme for {requirements.network}")


async def authenticate(
    facilitator: Facilitator, payload: PaymentPayload, requirements: PaymentRequirements, inspection: Inspection
) -> Refusal | None:
    """Whether the signature speaks for `inspection.payer`, before a rate limit or a claim is keyed on it.

    None at once, without touching the facilitator, when `inspect` verified the signer (EOA, Solana), so a
    facilitator (or a wrapper of one) is asked only for the rest: EVM signatures that did not recover to
    `from` (`Facilitator.authenticate`). Raises PaymentError when the chain or facilitator cannot answer.
    """
    if inspection.signer_verified:
        return None
    return await facilitator.authenticate(payload, requirements, inspection)


def v1_as_v2(payload: PaymentPayloadV1, offers: list[PaymentRequirements]) -> PaymentPayload | Refusal:
    """A v1 payload names only scheme and network; bind it to this route's offer for that pair.

    The signed authorization still has to carry the offer's payTo and amount, so nothing is
    trusted that v2's `accepted` echo would have checked.
    """
    network = caip2(payload.network)
    for offer in offers:
        if offer.scheme == payload.scheme and offer.network == network:
            return PaymentPayload(x402_version=1, accepted=offer, payload=payload.payload)
    return Refusal(Reason.OFFER_MISMATCH, f"this route takes no {payload.scheme} payment on {payload.network}")
