"""What verifying and settling a payment produced: plain values the app turns into HTTP and ledger rows."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from .codec import SettleResponse, VerifyResponse
from .errors import Reason

OnBroadcast = Callable[[str], Awaitable[None]]  # gets a transaction's id before it leaves this process


@dataclass(frozen=True, slots=True)
class Inspection:
    """A payment that passed every check that needs no chain: who pays, how much, and its unique key."""

    scheme_id: str  # e.g. "v2-eip155-exact": registry key, log field, ledger column
    network: str
    asset: str
    payer: str
    pay_to: str
    amount_atomic: int
    valid_before_unix_s: int | None  # None where a blockhash, not a timestamp, bounds the payment
    payment_key: str  # what makes this payment unique; claimed in the ledger before serving
    signer_verified: bool  # the signature was checked locally (EOA); False leaves it to the chain


@dataclass(frozen=True, slots=True)
class Verification:
    valid: bool
    payer: str | None = None
    reason: str | None = None
    message: str | None = None

    def response(self) -> VerifyResponse:
        return VerifyResponse(
            is_valid=self.valid, invalid_reason=self.reason, invalid_message=self.message, payer=self.payer
        )


@dataclass(frozen=True, slots=True)
class Settlement:
    success: bool
    network: str
    transaction: str = ""
    payer: str | None = None
    reason: str | None = None
    message: str | None = None
    gas_cost_atomic: int | None = None  # native units (wei, lamports) paid to settle; known to the local facilitator
    gas_payer: str | None = None  # who paid them: the EVM relayer, the SVM fee payer
    amount: str | None = None  # batch-settlement: a deposit's amount; exact leaves it out
    extra: dict[str, Any] | None = None  # batch-settlement: chargedAmount and channelState for the client

    @property
    def pending(self) -> bool:
        """Broadcast, outcome unknown: neither a success nor a failure until reconciled."""
        return not self.success and self.reason == Reason.SETTLEMENT_PENDING

    def response(self) -> SettleResponse:
        return SettleResponse(
            success=self.success,
            transaction=self.transaction,
            network=self.network,
            payer=self.payer,
            error_reason=self.reason,
            error_message=self.message,
            amount=self.amount,
            extra=self.extra,
        )
