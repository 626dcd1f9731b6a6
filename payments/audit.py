"""What the chain shows for one payment: the question reconciliation asks each network's auditor.

An auditor reads, never writes, and never guesses: an unreachable node raises
`payments.jsonrpc.RpcUnavailable` rather than turning into a status, so the caller can retry later
instead of booking an outcome nobody observed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

CONFIRMED = "confirmed"  # succeeded and moved exactly the amount of the asset from payer to payTo
REVERTED = "reverted"  # on chain, failed
MISMATCH = "mismatch"  # succeeded, but did not move what the payment says (detail: what it moved)
PENDING = "pending"  # known to the node, not yet mined / confirmed
NOT_FOUND = "not_found"  # the node knows nothing of it

STATUSES = (CONFIRMED, REVERTED, MISMATCH, PENDING, NOT_FOUND)


@dataclass(frozen=True, slots=True)
class SettlementFinding:
    status: str  # one of STATUSES
    network: str
    tx_hash: str
    moved_atomic: int | None  # token amount the tx moved from payer to pay_to (confirmed/mismatch)
    gas_cost_atomic: int | None  # native units spent (wei = gasUsed*effectiveGasPrice; lamports = meta.fee)
    gas_payer: str | None  # the relayer / fee payer that paid it
    detail: str  # human-readable, for the operator


@runtime_checkable
class ChainAuditor(Protocol):
    network: str

    async def settlement(
        self, tx_hash: str, *, asset: str, pay_to: str, payer: str, amount_atomic: int
    ) -> SettlementFinding: ...

    async def authorization_used(self, payment_key: str) -> bool | None:
        """True/False if the chain says whether this payment's authorization was consumed; None if the
        scheme has no such notion (Solana) or the key cannot be read."""
        ...

    async def find_settlement(self, payment_key: str, *, payer: str, asset: str) -> str | None:
        """The transaction that settled this payment, found on chain without its hash (a remote facilitator
        whose answer was lost never named it), or None if the chain shows none."""
        ...
