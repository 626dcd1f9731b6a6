"""The operator's live controls in every worker: payer and address bans, and stream sharing.

All live in Postgres (the admin API writes them). Each worker holds a copy, loaded at startup,
reloaded when Postgres NOTIFYs a change (so a ban reaches every worker and replica within
milliseconds) and every RELOAD_S as a safety net. The gate reads the copy, so a ban costs no query
on the paid path; a ban's expiry is checked against the clock, so it ends on time without a reload.
A sharing change rebuilds the registry view and the prices (`on_sharing`).

With a source watch (app/usecases/source_watch.py) attached, the same task looks at the sources' health every
WATCH_S, and the sharing it hands on sells the streams of a source that keeps failing as maintenance until the
source answers again (an overlay on the operator's sharing, which stays as stored).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import time
from collections.abc import Callable
from datetime import datetime

import asyncpg

import ledger
from app.usecases.source_watch import SourceWatch
from ledger import operator

log = logging.getLogger("worldgate.controls")
RELOAD_S = 30.0
WATCH_S = 5.0  # how often the source watch looks at the sources' health
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def normalize_payer(payer: str) -> str:
    """As payments name payers: EVM addresses lowercase, Solana base58 exactly as written."""
    text = payer.strip()
    return text.lower() if text.startswith("0x") else text


def _until(expires_at: datetime | None) -> float | None:
    return expires_at.timestamp() if expires_at is not None else None


def _in_force(until: float | None, now: float) -> bool:
    return until is None or until > now


class Controls:
    def __init__(self, pool: asyncpg.Pool, on_sharing: Callable[[dict[str, str]], None]) -> None:
        self._pool = pool
        self._on_sharing = on_sharing
        self._payers: dict[str, float | None] = {}  # payer → when its ban ends (unix s), None: until lifted
        self._addresses: tuple[tuple[Network, float | None], ...] = ()
        self.sharing: dict[str, str] = {}
        self._dirty = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._watch: SourceWatch | None = None

    def is_banned(self, payer: str) -> bool:
        if payer not in self._payers:
            return False
        return _in_force(self._payers[payer], time.time())

    def address_banned(self, host: str) -> bool:
        """Whether a client address falls in a banned address or network (a malformed one never does)."""
        if not self._addresses:
            return False
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        address = getattr(address, "ipv4_mapped", None) or address
        now = time.time()
        return any(address in network and _in_force(until, now) for network, until in self._addresses)

    async def reload(self) -> None:
        payers = {p: _until(b.expires_at) for p, b in (await operator.bans(self._pool)).items()}
        addresses = tuple(
            (ipaddress.ip_network(b.address, strict=False), _until(b.expires_at))
            for b in await operator.address_bans(self._pool)
        )
        sharing = await operator.sharing(self._pool)
        if self._watch is not None:
            sharing = self._watch.overlay(sharing)
        self._payers, self._addresses = payers, addresses
        if sharing != self.sharing:
            self.sharing = sharing
            self._on_sharing(sharing)

    def changed(self, _what: str = "*") -> None:
        """From the NOTIFY listener (any thread-free callback): reload soon, once."""
        self._dirty.set()

    def follow(self, watch: SourceWatch) -> None:
        """Run the source watch every WATCH_S from the controls' own task, and sell by its overlay."""
        self._watch = watch

    async def _keep_fresh(self) -> None:
        last_reload = time.monotonic()
        while True:
            wait = WATCH_S if self._watch is not None else RELOAD_S
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._dirty.wait(), wait)
            try:
                if self._watch is not None and await self._watch.check():
                    self._dirty.set()  # a source went down or came back: sell by the new overlay now
                if self._dirty.is_set() or time.monotonic() - last_reload >= RELOAD_S:
                    self._dirty.clear()
                    last_reload = time.monotonic()
                    await self.reload()
            except ledger.LedgerError as exc:  # keep the last copy; fail closed is the gate's job, not this
                log.warning("could not reload bans and sharing", extra={"error": str(exc)})
            except Exception:  # the watch reads Redis too: whatever it hit, the controls keep running
                log.exception("the source watch failed; trying again")

    def start(self) -> None:
        self._task = asyncio.create_task(self._keep_fresh(), name="controls")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
