"""Reading the settlement contract and checking what only the chain can tell: channel state, token
balances, and signatures by contract wallets (EIP-1271).

Every read of channels is one `multicall` eth_call of the contract's own getters, so the three
values of a channel (and of many channels) come from one block.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ...errors import PaymentError, Reason, Refusal
from ...networks import evm_chain_id
from ..codes import CodeCache
from ..eip712 import recover_address
from ..rpc import EvmRpc, RpcError
from .abi import (
    ERC1271_MAGIC,
    REFUNDED,
    balance_of_call,
    channel_reads,
    contract_logs,
    decode_channel,
    decode_multicall,
    decode_pair,
    is_valid_signature_call,
    multicall_call,
    receivers_call,
)
from .digests import BATCH_SETTLEMENT_ADDRESS, voucher_digest
from .outcomes import ChannelSnapshot
from .sender import describe_revert
from .vouchers import CheckedVoucher


@dataclass(frozen=True, slots=True)
class SentRefund:
    """A cooperative refund transaction of ours looked up by hash, after its answer was lost (a timeout, a crash)."""

    tx_hash: str
    known: bool  # the node has it, mined or waiting
    mined: bool
    success: bool  # mined and not reverted
    refunded: int  # what the contract's Refunded events for the channel paid the payer
    gas_cost_atomic: int
    gas_payer: str | None
    block_number: int | None


def _quantity(value: Any) -> int:
    return int(value, 16) if isinstance(value, str) and value.startswith("0x") else 0


def _channel_bytes(channel_id: str | bytes) -> bytes:
    raw = bytes.fromhex(channel_id[2:]) if isinstance(channel_id, str) else channel_id
    if len(raw) != 32:
        raise ValueError("a channel id is 32 bytes")
    return raw


class BatchChainReader:
    """The read side on one EVM network. Node failures raise PaymentError (nothing is known, nothing charged)."""

    def __init__(self, network: str, rpc: EvmRpc, *, codes: CodeCache | None = None) -> None:
        chain_id = evm_chain_id(network)
        if chain_id is None:
            raise ValueError(f"{network} is not an eip155 network")
        self.network = network
        self.chain_id = chain_id
        self._rpc = rpc
        self._codes = CodeCache(rpc) if codes is None else codes

    async def _view(self, to: str, data: bytes, block: str = "latest") -> bytes:
        try:
            return await self._rpc.call(to, data, block=block)
        except RpcError as exc:  # a getter does not revert: the node or the address is wrong
            raise PaymentError(Reason.BATCH_RPC_READ_FAILED, f"read failed: {describe_revert(exc)}") from None

    async def read_channels(self, channel_ids: Sequence[str | bytes], block: str = "latest") -> list[ChannelSnapshot]:
        """Balance, totalClaimed, pending withdrawal and refundNonce of each channel, all at one block."""
        ids = [_channel_bytes(c) for c in channel_ids]
        if not ids:
            return []
        calls = [call for channel in ids for call in channel_reads(channel)]
        results = decode_multicall(await self._view(BATCH_SETTLEMENT_ADDRESS, multicall_call(calls), block))
        snapshots = []
        for index, channel in enumerate(ids):
            balance, total, amount, initiated_at, nonce = decode_channel(results[3 * index : 3 * index + 3])
            snapshots.append(ChannelSnapshot("0x" + channel.hex(), balance, total, amount, initiated_at, nonce, block))
        return snapshots

    async def read_channel(self, channel_id: str | bytes, block: str = "latest") -> ChannelSnapshot:
        return (await self.read_channels([channel_id], block))[0]

    async def read_receiver(self, receiver: str, token: str, block: str = "latest") -> tuple[int, int]:
        """(totalClaimed, totalSettled) of a receiver in one token: `settle` pays out the difference."""
        return decode_pair(await self._view(BATCH_SETTLEMENT_ADDRESS, receivers_call(receiver, token), block))

    async def token_balance(self, token: str, owner: str, block: str = "latest") -> int:
        return int.from_bytes((await self._view(token, balance_of_call(owner), block))[:32], "big")

    async def signed_by(self, signer: str, digest: bytes, signature: bytes) -> bool:
        """As the contract's SignatureChecker: ECDSA for an account without code, EIP-1271 for a contract."""
        if recover_address(digest, signature) == signer.lower():
            return True
        if not await self._codes.has_code(signer):
            return False
        try:
            answer = await self._rpc.call(signer, is_valid_signature_call(digest, signature))
        except RpcError:  # a revert is a refusal; an unreachable node raises
            return False
        return answer[:4] == ERC1271_MAGIC

    async def voucher_signature_refusal(self, checked: CheckedVoucher) -> Refusal | None:
        """None if the voucher's signature holds: checked locally already, or (zero payerAuthorizer) by the payer."""
        if checked.signer_verified:
            return None
        digest = voucher_digest(self.chain_id, checked.channel_id_bytes, checked.max_claimable)
        if await self.signed_by(checked.payer, digest, checked.signature):
            return None
        return Refusal(Reason.BATCH_VOUCHER_SIGNATURE, "the voucher is not signed by the payer (ECDSA or EIP-1271)")

    async def verify_voucher(self, checked: CheckedVoucher, *, deposit: int = 0) -> ChannelSnapshot | Refusal:
        """The reference facilitator's on-chain voucher rules, for a channel with no fresh local mirror:
        signature, channel exists, ceiling ≤ balance (+ a deposit riding along), ceiling above totalClaimed
        (a refund's may equal it). Returns the state checked against, to mirror."""
        refused = await self.voucher_signature_refusal(checked)
        if refused is not None:
            return refused
        channel = await self.read_channel(checked.channel_id)
        if channel.balance + deposit == 0:
            return Refusal(Reason.BATCH_CHANNEL_NOT_FOUND, "the channel has no deposit")
        if checked.max_claimable > channel.balance + deposit:
            return Refusal(Reason.BATCH_CUMULATIVE_EXCEEDS_BALANCE, "the voucher exceeds the channel's escrow")
        below = checked.max_claimable < channel.total_claimed
        if below or (checked.max_claimable == channel.total_claimed and checked.kind != "refund"):
            return Refusal(Reason.BATCH_CUMULATIVE_BELOW_CLAIMED, "the voucher is not above what is already claimed")
        return channel

    async def read_many(self, channel_ids: Sequence[str], block: str) -> tuple[ChannelSnapshot, ...]:
        """Channels after a transaction, at its block (a lagging node's `latest` may not show it yet)."""
        return tuple(await self.read_channels(list(dict.fromkeys(channel_ids)), block))

    async def channel_and_balance(self, channel_id: str, token: str, owner: str) -> tuple[ChannelSnapshot, int]:
        """A channel and a token balance, concurrently (two contracts: two eth_calls)."""
        channel, balance = await asyncio.gather(self.read_channel(channel_id), self.token_balance(token, owner))
        return channel, balance

    async def sent_refund(self, tx_hash: str, channel_id: str) -> SentRefund:
        """Where a refund we sent stands: mined (and what it refunded), waiting, or unknown to the node."""
        try:
            receipt = await self._rpc.get_transaction_receipt(tx_hash)
            if receipt is None:
                known = await self._rpc.get_transaction(tx_hash) is not None
                return SentRefund(tx_hash, known, False, False, 0, 0, None, None)
        except RpcError as exc:
            raise PaymentError(Reason.BATCH_RPC_READ_FAILED, f"read failed: {describe_revert(exc)}") from None
        key = channel_id.lower()
        logs = contract_logs(receipt, BATCH_SETTLEMENT_ADDRESS)
        refunded = sum(log.amount for log in logs if log.event == REFUNDED and log.key == key)
        gas = _quantity(receipt.get("gasUsed")) * _quantity(receipt.get("effectiveGasPrice"))
        payer = str(receipt.get("from", "")).lower() or None
        success = _quantity(receipt.get("status")) == 1
        return SentRefund(tx_hash, True, True, success, refunded, gas, payer, _quantity(receipt.get("blockNumber")))
