"""The facilitator: one interface (`authenticate / verify / settle / supported`), two homes.

`LocalFacilitator` runs our schemes with our keys and RPCs; `RemoteFacilitator` speaks the x402
facilitator HTTP API to any facilitator URL. The gate is written against `Facilitator` only.
"""

from __future__ import annotations

from typing import Protocol

from ..codec import PaymentPayload, PaymentRequirements, SupportedResponse
from ..errors import Refusal
from ..outcomes import Inspection, OnBroadcast, Settlement, Verification


class Facilitator(Protocol):
    async def authenticate(
        self, payload: PaymentPayload, requirements: PaymentRequirements, inspection: Inspection
    ) -> Refusal | None:
        """Whether the payment's signature speaks for `inspection.payer`; run between `inspect` and anything
        recorded under that payer (rate limit, claim). None when it does, a Refusal when it does not.

        No I/O when `inspection.signer_verified`. Otherwise it may ask the chain (or a remote facilitator);
        when that cannot answer it raises PaymentError, as `verify` does: unavailable, nothing charged.
        """
        ...

    async def verify(self, payload: PaymentPayload, requirements: PaymentRequirements) -> Verification:
        """A refusal is a `Verification(valid=False)`; infrastructure failure raises PaymentError."""
        ...

    async def settle(
        self,
        payload: PaymentPayload,
        requirements: PaymentRequirements,
        on_broadcast: OnBroadcast | None = None,
    ) -> Settlement:
        """Never raises for a payment problem: failures and unknown outcomes come back as values.

        `on_broadcast(tx_hash)` runs before a transaction leaves this process, where the hash is
        known in advance (local EVM); if it raises, nothing is broadcast.
        """
        ...

    async def supported(self) -> SupportedResponse: ...

    async def close(self) -> None: ...


__all__ = ["Facilitator", "OnBroadcast"]
