"""EVM JSON-RPC: typed helpers over the shared transport, and revert-reason decoding."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from eth_abi import decode as abi_decode

from ..jsonrpc import JsonRpc, RpcError, RpcUnavailable

RECEIPT_POLL_S_MAX = 0.5  # receipts are polled from 10 ms, doubling up to this

ERROR_SELECTOR = bytes.fromhex("08c379a0")  # Error(string)

__all__ = ["EvmRpc", "RpcError", "RpcUnavailable", "revert_reason"]


def revert_reason(error: RpcError) -> str | None:
    """The Error(string) message of a revert, when the node returned revert data (or put it in the message)."""
    data = error.data.get("data") if isinstance(error.data, dict) else error.data  # some nodes nest it
    return decode_revert(data) or _reason_from_message(error.rpc_message)


def decode_revert(data: str | None) -> str | None:
    if not isinstance(data, str) or not data.startswith("0x"):
        return None
    try:
        raw = bytes.fromhex(data[2:])
    except ValueError:
        return None
    if raw[:4] != ERROR_SELECTOR:
        return None
    try:
        return str(abi_decode(["string"], raw[4:])[0])
    except Exception:  # eth_abi raises several unrelated types for bad input
        return None


def _reason_from_message(message: str) -> str | None:
    # Some nodes put the reason only in the message: "execution reverted: FiatTokenV2: ..."
    marker = "execution reverted: "
    return message.split(marker, 1)[1] if marker in message else None


class EvmRpc(JsonRpc):
    """Hex quantities in, Python ints and bytes out."""

    async def chain_id(self) -> int:
        return _int(await self.request("eth_chainId", []))

    async def call(self, to: str, data: bytes, *, sender: str | None = None, block: str = "latest") -> bytes:
        tx: dict[str, str] = {"to": to, "data": "0x" + data.hex()}
        if sender is not None:
            tx["from"] = sender
        return _bytes(await self.request("eth_call", [tx, block]))

    async def get_code(self, address: str) -> bytes:
        return _bytes(await self.request("eth_getCode", [address, "latest"]))

    async def get_balance(self, address: str) -> int:
        return _int(await self.request("eth_getBalance", [address, "latest"]))

    async def get_transaction_count(self, address: str, block: str = "pending") -> int:
        return _int(await self.request("eth_getTransactionCount", [address, block]))

    async def send_raw_transaction(self, raw: bytes) -> str:
        return str(await self.request("eth_sendRawTransaction", ["0x" + raw.hex()]))

    async def get_transaction_receipt(self, tx_hash: str) -> dict[str, Any] | None:
        receipt = await self.request("eth_getTransactionReceipt", [tx_hash])
        if receipt is not None and not isinstance(receipt, dict):
            raise RpcUnavailable("eth_getTransactionReceipt: node answered something that is not a receipt")
        return receipt

    async def await_receipt(self, tx_hash: str, timeout_s: float) -> dict[str, Any] | None:
        """Poll for a receipt (backing off to RECEIPT_POLL_S_MAX) until `timeout_s` passes: None if none came."""
        deadline = time.monotonic() + timeout_s
        delay = 0.01
        while True:
            try:
                receipt = await self.get_transaction_receipt(tx_hash)
            except RpcUnavailable:
                receipt = None  # a flaky node is not a failed transaction: keep asking until the deadline
            if receipt is not None:
                return receipt
            if time.monotonic() + delay > deadline:
                return None
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECEIPT_POLL_S_MAX)

    async def get_transaction(self, tx_hash: str) -> dict[str, Any] | None:
        """The transaction as the node knows it (`blockNumber` null while it waits in the mempool), or None."""
        transaction = await self.request("eth_getTransactionByHash", [tx_hash])
        if transaction is not None and not isinstance(transaction, dict):
            raise RpcUnavailable("eth_getTransactionByHash: node answered something that is not a transaction")
        return transaction

    async def base_fee(self) -> int | None:
        block = await self.request("eth_getBlockByNumber", ["latest", False])
        if not isinstance(block, dict):
            raise RpcUnavailable("eth_getBlockByNumber: node answered something that is not a block")
        fee = block.get("baseFeePerGas")
        return _int(fee) if fee is not None else None

    async def max_priority_fee(self) -> int:
        return _int(await self.request("eth_maxPriorityFeePerGas", []))

    async def gas_price(self) -> int:
        return _int(await self.request("eth_gasPrice", []))


def _int(value: Any) -> int:
    if not isinstance(value, str) or not value.startswith("0x"):
        raise RpcUnavailable(f"node answered {value!r} where a hex quantity belongs")
    try:
        return int(value, 16)
    except ValueError:
        raise RpcUnavailable(f"node answered {value!r} where a hex quantity belongs") from None


def _bytes(value: Any) -> bytes:
    if not isinstance(value, str) or not value.startswith("0x"):
        raise RpcUnavailable(f"node answered {value!r} where hex data belongs")
    try:
        return bytes.fromhex(value[2:])
    except ValueError:
        raise RpcUnavailable("node answered malformed hex data") from None
