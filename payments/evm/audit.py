"""The EVM auditor: what an EVM chain shows for one settlement transaction and one EIP-3009 authorization.

The receipt is read with `read_receipt`, the same function settlement judges its own receipts with,
so a payment the auditor calls confirmed is one settlement would have called settled.
"""

from __future__ import annotations

import re

from eth_abi import encode as abi_encode
from eth_utils import to_checksum_address

from ..audit import CONFIRMED, MISMATCH, NOT_FOUND, PENDING, REVERTED, SettlementFinding
from .eip712 import keccak256
from .exact import AUTHORIZATION_STATE, ReceiptReading, read_receipt
from .rpc import EvmRpc, RpcError

_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
_BYTES32 = re.compile(r"^0x[0-9a-fA-F]{64}$")
TRANSFERS_SHOWN_MAX = 5
AUTHORIZATION_USED_TOPIC = "0x" + keccak256(b"AuthorizationUsed(address,bytes32)").hex()
LOG_LOOKBACK_BLOCKS = 100_000  # ~2.3 days of Base blocks: reconcile runs every few minutes


class EvmAuditor:
    """Reads one EVM network through `rpc`; every RpcUnavailable is the caller's to handle."""

    def __init__(self, rpc: EvmRpc, network: str) -> None:
        self.network = network
        self._rpc = rpc

    def __repr__(self) -> str:
        return f"EvmAuditor(network={self.network!r}, rpc={self._rpc.url!r})"

    def _finding(
        self,
        status: str,
        tx_hash: str,
        detail: str,
        reading: ReceiptReading | None = None,
        moved: int | None = None,
    ) -> SettlementFinding:
        return SettlementFinding(
            status=status,
            network=self.network,
            tx_hash=tx_hash,
            moved_atomic=moved,
            gas_cost_atomic=reading.gas_cost_atomic if reading else None,
            # checksummed, as Settlement.gas_payer gives the relayer
            gas_payer=to_checksum_address(reading.gas_payer) if reading and _ADDRESS.match(reading.gas_payer) else None,
            detail=detail,
        )

    async def settlement(
        self, tx_hash: str, *, asset: str, pay_to: str, payer: str, amount_atomic: int
    ) -> SettlementFinding:
        """Did `tx_hash` move exactly `amount_atomic` of `asset` from `payer` to `pay_to`?"""
        if not _BYTES32.match(tx_hash):
            return self._finding(NOT_FOUND, tx_hash, "not a transaction hash (0x and 32 bytes of hex)")
        receipt = await self._rpc.get_transaction_receipt(tx_hash)
        if receipt is None:
            # No receipt: still in a mempool, or never seen (dropped, or sent to another node/chain).
            transaction = await self._rpc.get_transaction(tx_hash)
            if transaction is None:
                return self._finding(NOT_FOUND, tx_hash, "the node knows no such transaction")
            if transaction.get("blockNumber") is None:
                return self._finding(PENDING, tx_hash, "in the mempool, not mined yet")
            # mined, but the node has not indexed its receipt yet: not readable, so not judged
            return self._finding(PENDING, tx_hash, "mined, but its receipt is not available yet")
        reading = read_receipt(receipt, asset)
        if not reading.succeeded:
            return self._finding(REVERTED, tx_hash, f"reverted in block {reading.block_number}", reading)
        moved = reading.moved(payer, pay_to)
        if moved == amount_atomic and amount_atomic > 0:
            return self._finding(
                CONFIRMED,
                tx_hash,
                f"moved {moved} from {payer.lower()} to {pay_to.lower()} in block {reading.block_number}",
                reading,
                moved,
            )
        return self._finding(
            MISMATCH,
            tx_hash,
            f"succeeded in block {reading.block_number} but {_describe(reading)}; "
            f"expected {amount_atomic} from {payer.lower()} to {pay_to.lower()} of {asset.lower()}",
            reading,
            moved,
        )

    def _key(self, payment_key: str) -> tuple[str, str, str] | None:
        """(asset, from, nonce) of a key `{network}:{asset}:{from}:{nonce}` on this network."""
        parts = payment_key.rsplit(":", 3)  # from the right: the network itself has a colon (eip155:84532)
        if len(parts) != 4:
            return None
        network, asset, sender, nonce = parts
        if network != self.network or not (_ADDRESS.match(asset) and _ADDRESS.match(sender) and _BYTES32.match(nonce)):
            return None
        return asset, sender, nonce

    async def find_settlement(self, payment_key: str, *, payer: str, asset: str) -> str | None:
        """The transaction whose `AuthorizationUsed(from, nonce)` log spent this authorization, searched in
        the last LOG_LOOKBACK_BLOCKS blocks; None if there is none (or the node will not search)."""
        key = self._key(payment_key)
        if key is None:
            return None
        token, sender, nonce = key
        try:
            latest = int(str(await self._rpc.request("eth_blockNumber", [])), 16)
            logs = await self._rpc.request(
                "eth_getLogs",
                [
                    {
                        "address": token,
                        "topics": [AUTHORIZATION_USED_TOPIC, "0x" + "0" * 24 + sender[2:].lower(), nonce.lower()],
                        "fromBlock": hex(max(0, latest - LOG_LOOKBACK_BLOCKS)),
                        "toBlock": "latest",
                    }
                ],
            )
        except (RpcError, ValueError):  # a node that refuses the range (or answers nonsense) cannot say
            return None
        for log in logs if isinstance(logs, list) else []:
            tx_hash = log.get("transactionHash") if isinstance(log, dict) else None
            if isinstance(tx_hash, str) and _BYTES32.match(tx_hash) and not log.get("removed"):
                return tx_hash
        return None

    async def authorization_used(self, payment_key: str) -> bool | None:
        """The token's `authorizationState(from, nonce)` for a key `{network}:{asset}:{from}:{nonce}`."""
        key = self._key(payment_key)
        if key is None:
            return None
        asset, sender, nonce = key
        data = AUTHORIZATION_STATE + abi_encode(["address", "bytes32"], [sender, bytes.fromhex(nonce[2:])])
        try:
            answer = await self._rpc.call(asset, data)
        except RpcError:  # the token has no authorizationState (or refuses it): the chain cannot say
            return None
        if len(answer) != 32:  # an address without code answers 0x
            return None
        return int.from_bytes(answer, "big") != 0


def _describe(reading: ReceiptReading) -> str:
    if not reading.transfers:
        return "the asset emitted no Transfer"
    shown = [f"{t.value} from {t.sender} to {t.recipient}" for t in reading.transfers[:TRANSFERS_SHOWN_MAX]]
    more = len(reading.transfers) - TRANSFERS_SHOWN_MAX
    return "the asset moved " + "; ".join(shown) + (f" (and {more} more)" if more > 0 else "")
