"""The Solana auditor: what a Solana cluster shows for one settlement transaction (by its signature).

The landed transaction is read with `read_landed`, the same function settlement checks its own
payments with. Solana has no authorization to consume apart from the transaction itself, so
`authorization_used` has nothing to say; a settlement whose signature was never known is searched for in
the payer's token account history, page after page (history.py), up to a count and a time budget.
"""

from __future__ import annotations

import base64
from contextlib import aclosing
from typing import Any

from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.transaction import SanitizeError, VersionedTransaction

from ..audit import CONFIRMED, MISMATCH, NOT_FOUND, PENDING, REVERTED, SettlementFinding
from .exact import LandedTransfer, read_landed
from .history import Scan, signatures
from .programs import associated_token_address
from .rpc import RpcError, SvmRpc

# How far back the payer's token account history is searched for a settlement whose signature was never known:
# at most this many signatures (ten pages) and this long, whichever comes first.
HISTORY_SEARCHED = 1000
HISTORY_BUDGET_S = 30.0
LANDED = ("confirmed", "finalized")  # "processed" may still be on a fork that is dropped


def _landed(status: dict[str, Any]) -> bool:
    confirmation = status.get("confirmationStatus")
    if confirmation is None:  # older nodes: no status field, and `confirmations` null once rooted
        return status.get("confirmations", 0) is None
    return confirmation in LANDED


class SvmAuditor:
    """Reads one Solana network through `rpc`; every RpcUnavailable is the caller's to handle."""

    def __init__(
        self, rpc: SvmRpc, network: str, *, history: int = HISTORY_SEARCHED, history_s: float = HISTORY_BUDGET_S
    ) -> None:
        self.network = network
        self._rpc = rpc
        self._history = history
        self._history_s = history_s
        self.last_scan = Scan()  # how the last history search ended (pages read, exhausted or stopped at a bound)

    def __repr__(self) -> str:
        return f"SvmAuditor(network={self.network!r}, rpc={self._rpc.url!r})"

    def _finding(
        self,
        status: str,
        signature: str,
        detail: str,
        reading: LandedTransfer | None = None,
        moved: int | None = None,
    ) -> SettlementFinding:
        return SettlementFinding(
            status=status,
            network=self.network,
            tx_hash=signature,
            moved_atomic=moved,
            gas_cost_atomic=reading.fee if reading else None,
            gas_payer=reading.fee_payer if reading else None,
            detail=detail,
        )

    async def settlement(
        self, tx_hash: str, *, asset: str, pay_to: str, payer: str, amount_atomic: int
    ) -> SettlementFinding:
        """Did the transaction signed `tx_hash` move exactly `amount_atomic` of mint `asset` from `payer`'s token
        account to `pay_to`'s? Balances are matched by owner, so `payer` is the source account's owner."""
        try:
            Signature.from_string(tx_hash)
        except ValueError:
            return self._finding(NOT_FOUND, tx_hash, "not a transaction signature (64 bytes of base58)")
        status = await self._rpc.signature_status(tx_hash)  # searches the history, not only recent slots
        if status is None:
            return self._finding(NOT_FOUND, tx_hash, "the cluster knows no such signature")
        if not _landed(status):
            failing = f", failing with {status['err']}" if status.get("err") is not None else ""
            return self._finding(
                PENDING, tx_hash, f"{status.get('confirmationStatus') or 'seen'} in slot {status.get('slot')}{failing}"
            )
        landed = await self._rpc.transaction(tx_hash)
        reading = read_landed(landed, mint=asset, payer=payer, pay_to=pay_to) if landed else None
        err = status.get("err") if status.get("err") is not None else (reading.err if reading else None)
        if err is not None:
            return self._finding(REVERTED, tx_hash, f"failed on chain in slot {status.get('slot')}: {err}", reading)
        if reading is None:
            # the status says it landed, but the node does not serve the transaction yet: not judged
            return self._finding(PENDING, tx_hash, f"confirmed in slot {status.get('slot')}; details not served yet")
        if reading.received == reading.paid == amount_atomic and amount_atomic > 0:
            return self._finding(
                CONFIRMED,
                tx_hash,
                f"moved {amount_atomic} from {payer} to {pay_to} in slot {status.get('slot')}",
                reading,
                reading.moved,
            )
        return self._finding(
            MISMATCH,
            tx_hash,
            f"succeeded in slot {status.get('slot')} but {pay_to}'s {asset} balance changed by {reading.received} "
            f"and {payer}'s by {-reading.paid}; expected {amount_atomic} from {payer} to {pay_to}",
            reading,
            reading.moved,
        )

    async def authorization_used(self, payment_key: str) -> bool | None:
        """None: a Solana payment is its transaction; there is no separate authorization to look up."""
        return None

    async def find_settlement(self, payment_key: str, *, payer: str, asset: str) -> str | None:
        """The signature of a landed transaction carrying this payment's message (the key is
        `{network}:{message hash}`), found in the history of the payer's token account, newest first, paged
        past the first 100 signatures up to the auditor's count and time bounds: a remote facilitator co-signs
        and sends it, and its signature is unknown to us until it says it."""
        network, _, message_hash = payment_key.rpartition(":")
        if network != self.network:
            return None
        try:
            account = associated_token_address(Pubkey.from_string(payer), Pubkey.from_string(asset))
        except ValueError:
            return None
        self.last_scan = scan = Scan()
        history = signatures(self._rpc, str(account), scan=scan, max_count=self._history, deadline_s=self._history_s)
        try:
            async with aclosing(history):
                async for entry in history:
                    if entry.get("err") is None and await self._carries(entry["signature"], message_hash):
                        return str(entry["signature"])
        except RpcError:  # a node without history cannot say
            return None
        return None

    async def _carries(self, signature: str, message_hash: str) -> bool:
        landed = await self._rpc.transaction(signature)
        encoded = landed.get("transaction") if landed else None
        try:
            raw = base64.b64decode(encoded[0]) if isinstance(encoded, list) and encoded else b""
            return str(VersionedTransaction.from_bytes(raw).message.hash()) == message_hash
        except (ValueError, TypeError, SanitizeError):
            return False
