"""The Solana auditor: what a Solana cluster shows for one settlement transaction (by its signature).

The landed transaction is read with `read_landed`, the same function settlement checks its own
payments with. Solana has no authorization to consume apart from the transaction itself, so
`authorization_used` has nothing to say.
"""

from __future__ import annotations

import base64
from typing import Any

from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.transaction import SanitizeError, VersionedTransaction

from ..audit import CONFIRMED, MISMATCH, NOT_FOUND, PENDING, REVERTED, SettlementFinding
from .exact import LandedTransfer, read_landed
from .programs import associated_token_address
from .rpc import RpcError, SvmRpc

HISTORY_SEARCHED = 100  # signatures of the payer's token account read back when a settlement has no signature
LANDED = ("confirmed", "finalized")  # "processed" may still be on a fork that is dropped


def _landed(status: dict[str, Any]) -> bool:
    confirmation = status.get("confirmationStatus")
    if confirmation is None:  # older nodes: no status field, and `confirmations` null once rooted
        return status.get("confirmations", 0) is None
    return confirmation in LANDED


class SvmAuditor:
    """Reads one Solana network through `rpc`; every RpcUnavailable is the caller's to handle."""

    def __init__(self, rpc: SvmRpc, network: str) -> None:
        self.network = network
        self._rpc = rpc

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
        `{network}:{message hash}`), found in the recent history of the payer's token account: a remote
        facilitator co-signs and sends it, and its signature is unknown to us until it says it."""
        network, _, message_hash = payment_key.rpartition(":")
        if network != self.network:
            return None
        try:
            account = associated_token_address(Pubkey.from_string(payer), Pubkey.from_string(asset))
        except ValueError:
            return None
        try:
            history = await self._rpc.request(
                "getSignaturesForAddress", [str(account), {"limit": HISTORY_SEARCHED, "commitment": "confirmed"}]
            )
        except RpcError:  # a node without history cannot say
            return None
        for entry in history if isinstance(history, list) else []:
            signature = entry.get("signature") if isinstance(entry, dict) else None
            if not isinstance(signature, str) or entry.get("err") is not None:
                continue
            landed = await self._rpc.transaction(signature)
            encoded = landed.get("transaction") if landed else None
            try:
                raw = base64.b64decode(encoded[0]) if isinstance(encoded, list) and encoded else b""
                found = str(VersionedTransaction.from_bytes(raw).message.hash())
            except (ValueError, TypeError, SanitizeError):
                continue
            if found == message_hash:
                return signature
        return None
