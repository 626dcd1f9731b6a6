"""Which addresses have contract code: `eth_getCode`, remembered per address for a while.

A signature that does not recover to `from` is either an EIP-1271 wallet's or a forgery, and one
`eth_getCode(from)` tells which. Anyone can send forgeries naming the same `from` over and over, so
the answer is remembered: bounded (oldest out first), "has code" for minutes, "no code" only briefly
(a counterfactual wallet gets code when it is deployed). Concurrent lookups of one address share one
call. A failed lookup is not remembered and raises, as the RPC does.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable

from .rpc import EvmRpc

ENTRIES_MAX_DEFAULT = 10_000
CODE_TTL_S_DEFAULT = 300.0
NO_CODE_TTL_S_DEFAULT = 15.0


class CodeCache:
    def __init__(
        self,
        rpc: EvmRpc,
        *,
        entries_max: int = ENTRIES_MAX_DEFAULT,
        code_ttl_s: float = CODE_TTL_S_DEFAULT,
        no_code_ttl_s: float = NO_CODE_TTL_S_DEFAULT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._rpc = rpc
        self._entries_max = entries_max
        self._code_ttl_s = code_ttl_s
        self._no_code_ttl_s = no_code_ttl_s
        self._clock = clock
        self._known: OrderedDict[str, tuple[float, bool]] = OrderedDict()  # address -> (expires at, has code)
        self._pending: dict[str, asyncio.Task[bool]] = {}

    def __len__(self) -> int:
        return len(self._known)

    def cached(self, address: str) -> bool | None:
        """The remembered answer for `address`, or None if there is none (or it expired)."""
        address = address.lower()
        entry = self._known.get(address)
        if entry is None:
            return None
        expires_at, has_code = entry
        if self._clock() >= expires_at:
            del self._known[address]
            return None
        return has_code

    async def has_code(self, address: str) -> bool:
        """Whether `address` has code now (or had, within the TTL). Raises PaymentError if the node fails."""
        address = address.lower()
        known = self.cached(address)
        if known is not None:
            return known
        task = self._pending.get(address)
        if task is None:
            task = asyncio.ensure_future(self._lookup(address))
            self._pending[address] = task
            task.add_done_callback(lambda done: self._settled(address, done))
        # Shielded: a caller that goes away must not cancel the lookup the others wait for.
        return await asyncio.shield(task)

    async def _lookup(self, address: str) -> bool:
        has_code = bool(await self._rpc.get_code(address))
        self._known[address] = (self._clock() + (self._code_ttl_s if has_code else self._no_code_ttl_s), has_code)
        self._known.move_to_end(address)
        while len(self._known) > self._entries_max:
            self._known.popitem(last=False)
        return has_code

    def _settled(self, address: str, task: asyncio.Task[bool]) -> None:
        if self._pending.get(address) is task:
            del self._pending[address]
        if not task.cancelled():
            task.exception()  # retrieved here, so a failure nobody still awaits is not logged as lost
