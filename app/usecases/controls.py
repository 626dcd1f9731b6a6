"""The operator's live controls in every worker: payer bans and stream sharing.

Both live in Postgres (the admin API writes them). Each worker holds a copy, loaded at startup,
reloaded when Postgres NOTIFYs a change (so a ban reaches every worker and replica within
milliseconds) and every RELOAD_S as a safety net. The gate reads the copy, so a ban costs no query
on the paid path. A sharing change rebuilds the registry view and the prices (`on_sharing`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import asyncpg

import ledger
from ledger import operator

log = logging.getLogger("worldgate.controls")
RELOAD_S = 30.0


def normalize_payer(payer: str) -> str:
    """As payments name payers: EVM addresses lowercase, Solana base58 exactly as written."""
    text = payer.strip()
    return text.lower() if text.startswith("0x") else text


class Controls:
    def __init__(self, pool: asyncpg.Pool, on_sharing: Callable[[dict[str, str]], None]) -> None:
        self._pool = pool
        self._on_sharing = on_sharing
        self.banned: frozenset[str] = frozenset()
        self.sharing: dict[str, str] = {}
        self._dirty = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def is_banned(self, payer: str) -> bool:
        return payer in self.banned

    async def reload(self) -> None:
        banned = frozenset((await operator.bans(self._pool)).keys())
        sharing = await operator.sharing(self._pool)
        self.banned = banned
        if sharing != self.sharing:
            self.sharing = sharing
            self._on_sharing(sharing)

    def changed(self, _what: str = "*") -> None:
        """From the NOTIFY listener (any thread-free callback): reload soon, once."""
        self._dirty.set()

    async def _keep_fresh(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._dirty.wait(), RELOAD_S)
            self._dirty.clear()
            try:
                await self.reload()
            except ledger.LedgerError as exc:  # keep the last copy; fail closed is the gate's job, not this
                log.warning("could not reload bans and sharing", extra={"error": str(exc)})

    def start(self) -> None:
        self._task = asyncio.create_task(self._keep_fresh(), name="controls")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
