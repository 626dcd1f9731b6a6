"""What reconcile asks the batch-settlement contract: channel state at one block, and the receipts of the
settler's claims and sweeps.

`BatchAuditor` is an `EvmAuditor` (it answers the same questions about `exact` payments) that also reads
the contract, so the auditors reconcile already builds per network can check channels too. It reads,
never writes; an unreachable node raises RpcUnavailable, a node that answers nonsense PaymentError.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from eth_abi.exceptions import DecodingError

from ...audit import CONFIRMED, MISMATCH, NOT_FOUND, PENDING, REVERTED
from ...errors import PaymentError, Reason
from ..audit import EvmAuditor
from ..rpc import EvmRpc, RpcUnavailable
from .abi import CLAIMED, SETTLED, contract_logs
from .chain import BatchChainReader
from .digests import BATCH_SETTLEMENT_ADDRESS
from .outcomes import ChannelSnapshot

CHANNELS_PER_CALL = 100  # one multicall eth_call reads this many channels (three getters each)


@dataclass(frozen=True, slots=True)
class ChainHead:
    """The block reconcile reads channels at, and its timestamp: the chain's own clock (a devnet's may run ahead)."""

    number: int
    timestamp: int

    @property
    def tag(self) -> str:
        return hex(self.number)


@dataclass(frozen=True, slots=True)
class BatchTxReading:
    """A recorded claim or sweep as its receipt shows it."""

    status: str  # CONFIRMED, REVERTED, MISMATCH (a sweep that moved another amount), PENDING, NOT_FOUND
    tx_hash: str
    block: int | None
    moved_atomic: int | None  # claimed (Claimed events) or swept to the receiver (Settled events)
    detail: str


def _quantity(value: Any) -> int | None:
    return int(value, 16) if isinstance(value, str) and value.startswith("0x") else None


class BatchAuditor(EvmAuditor):
    """An EVM network's auditor that also reads its batch-settlement contract."""

    def __init__(self, rpc: EvmRpc, network: str, *, contract: str = BATCH_SETTLEMENT_ADDRESS) -> None:
        super().__init__(rpc, network)
        self._reader = BatchChainReader(network, rpc)
        self._contract = contract

    def __repr__(self) -> str:
        return f"BatchAuditor(network={self.network!r}, rpc={self._rpc.url!r})"

    async def head(self) -> ChainHead:
        block = await self._rpc.request("eth_getBlockByNumber", ["latest", False])
        number = _quantity(block.get("number")) if isinstance(block, dict) else None
        timestamp = _quantity(block.get("timestamp")) if isinstance(block, dict) else None
        if number is None or timestamp is None:
            raise RpcUnavailable("eth_getBlockByNumber: the node answered something that is not a block")
        return ChainHead(number, timestamp)

    async def channels(self, channel_ids: Sequence[str], head: ChainHead) -> list[ChannelSnapshot]:
        """Each channel's balance, totalClaimed, pending withdrawal and refundNonce, all at `head`'s block."""
        snapshots: list[ChannelSnapshot] = []
        for start in range(0, len(channel_ids), CHANNELS_PER_CALL):
            part = channel_ids[start : start + CHANNELS_PER_CALL]
            try:
                snapshots += await self._reader.read_channels(part, head.tag)
            except (DecodingError, ValueError, IndexError) as exc:  # no contract there, or a node's odd answer
                raise PaymentError(Reason.BATCH_RPC_READ_FAILED, f"channel read unreadable: {exc}") from None
        return snapshots

    async def batch_transaction(
        self, tx_hash: str, *, kind: str, receiver: str | None, amount_atomic: int
    ) -> BatchTxReading:
        """Did a recorded claim (`kind` "claim") or sweep ("settle") land and succeed, and did a sweep pay
        `receiver` the recorded `amount_atomic`? A claim's amount is not judged: a row at or below what the
        contract holds is skipped there, so what it moved depends on what landed before it."""
        receipt = await self._rpc.get_transaction_receipt(tx_hash)
        if receipt is None:
            transaction = await self._rpc.get_transaction(tx_hash)
            if transaction is None:
                return BatchTxReading(NOT_FOUND, tx_hash, None, None, "the node knows no such transaction")
            return BatchTxReading(PENDING, tx_hash, None, None, "known to the node, no receipt yet")
        block = _quantity(receipt.get("blockNumber"))
        if _quantity(receipt.get("status")) != 1:
            return BatchTxReading(REVERTED, tx_hash, block, None, f"reverted in block {block}")
        logs = contract_logs(receipt, self._contract)
        if kind == "claim":
            claimed = sum(entry.amount for entry in logs if entry.event == CLAIMED)
            return BatchTxReading(CONFIRMED, tx_hash, block, claimed, f"claimed {claimed} in block {block}")
        payee = "0x" + "00" * 12 + (receiver or "")[2:].lower()  # the Settled event's indexed receiver
        swept = sum(entry.amount for entry in logs if entry.event == SETTLED and entry.key == payee)
        if swept == amount_atomic:
            return BatchTxReading(CONFIRMED, tx_hash, block, swept, f"swept {swept} to {receiver} in block {block}")
        detail = f"swept {swept} to {receiver} in block {block}; the ledger recorded {amount_atomic}"
        return BatchTxReading(MISMATCH, tx_hash, block, swept, detail)
