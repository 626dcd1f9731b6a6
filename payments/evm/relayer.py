"""The relayer: one key that pays gas to submit settlements, with its nonces serialized.

Broadcasts of one signer run one at a time (an asyncio lock, plus an optional cross-process lock
that the app injects, e.g. a Postgres advisory lock, for several workers sharing a key). The nonce
comes from a local counter seeded from the node's `pending` count; whenever the outcome of a send
is unknown, or another process may have used the key, it is reseeded. The transaction hash is
known before the broadcast (keccak of the signed bytes) and is handed to `on_broadcast` first, so a
crash after the send still leaves the hash on record for reconciliation.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from eth_account import Account
from eth_utils import to_checksum_address

from ..outcomes import OnBroadcast
from .eip712 import keccak256
from .rpc import EvmRpc, RpcError, RpcUnavailable

LockFactory = Callable[[str], AbstractAsyncContextManager[Any]]

GAS_LIMIT_DEFAULT = 200_000  # transferWithAuthorization uses ~60-90k; EIP-1271 wallets a little more
FEE_CACHE_S = 2.0  # about one Base block
_NONCE_ERRORS = ("nonce too low", "nonce too high", "already known", "replacement transaction underpriced")


class Relayer:
    def __init__(
        self,
        rpc: EvmRpc,
        private_key: str,
        chain_id: int,
        *,
        gas_limit: int = GAS_LIMIT_DEFAULT,
        shared_lock: LockFactory | None = None,
    ) -> None:
        self._rpc = rpc
        self._account = Account.from_key(private_key)
        self.address: str = str(self._account.address)
        self.chain_id = chain_id
        self.gas_limit = gas_limit
        self._lock = asyncio.Lock()
        self._shared_lock = shared_lock
        self._next_nonce: int | None = None
        self._fees: tuple[float, int, int] | None = None  # (fetched at, max fee, priority fee)

    def __repr__(self) -> str:  # never the key
        return f"Relayer(address={self.address}, chain_id={self.chain_id})"

    async def _fees_now(self) -> tuple[int, int]:
        now = time.monotonic()
        if self._fees is not None and now - self._fees[0] < FEE_CACHE_S:
            return self._fees[1], self._fees[2]
        base_fee, priority = await asyncio.gather(self._rpc.base_fee(), self._rpc.max_priority_fee())
        if base_fee is None:  # pre-London chain: pay the legacy gas price as both caps
            max_fee = priority = await self._rpc.gas_price()
        else:
            max_fee = 2 * base_fee + priority  # survives a few full blocks of base-fee growth
        self._fees = (now, max_fee, priority)
        return max_fee, priority

    def _sign(self, to: str, data: bytes, nonce: int, max_fee: int, priority: int) -> bytes:
        tx = {
            "type": 2,
            "chainId": self.chain_id,
            "nonce": nonce,
            "to": to_checksum_address(to),
            "value": 0,
            "data": data,
            "gas": self.gas_limit,
            "maxFeePerGas": max_fee,
            "maxPriorityFeePerGas": priority,
        }
        return bytes(self._account.sign_transaction(tx).raw_transaction)

    async def submit(self, to: str, data: bytes, on_broadcast: OnBroadcast | None = None) -> str:
        """Sign and broadcast one call; returns its hash once the node accepted it.

        Raises RpcError if the node refused the transaction (nothing was broadcast), RpcUnavailable
        if the outcome is unknown (the hash was already handed to `on_broadcast`).
        """
        async with self._lock, self._shared_lock(self.address) if self._shared_lock else _no_lock():
            if self._next_nonce is None or self._shared_lock is not None:
                self._next_nonce = await self._rpc.get_transaction_count(self.address, "pending")
            max_fee, priority = await self._fees_now()
            for attempt in range(2):
                raw = self._sign(to, data, self._next_nonce, max_fee, priority)
                tx_hash = "0x" + keccak256(raw).hex()
                if on_broadcast is not None:
                    await on_broadcast(tx_hash)
                try:
                    await self._rpc.send_raw_transaction(raw)
                except RpcUnavailable:
                    self._next_nonce = None  # the node may or may not hold it: ask again next time
                    raise
                except RpcError as exc:
                    if attempt == 0 and any(marker in exc.rpc_message.lower() for marker in _NONCE_ERRORS):
                        self._next_nonce = await self._rpc.get_transaction_count(self.address, "pending")
                        continue
                    raise
                self._next_nonce += 1
                return tx_hash
        raise AssertionError("unreachable: the loop returns or raises")  # pragma: no cover


@contextlib.asynccontextmanager
async def _no_lock() -> Any:
    yield
