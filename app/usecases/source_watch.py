"""The source watch: sharing follows a source's health, as the sharing model has it.

A shared stream whose source keeps failing (its circuit open: two failed fetches in a row, shared through Redis by
every worker) for FAILING_S is sold as `maintenance`: listed, not sold; after the source's next successful fetch
(which closes the circuit) it is sold again. An operator who forces a fetch (the console's Fetch) sees the
outcome at once, without the wait. The operator's own sharing is never changed: this is an overlay on it, kept
in each worker's memory and derived from the circuits in Redis, so every worker agrees, nothing stale is left in
Postgres when a gateway stops, and a stream an operator set to `not_shared` or `maintenance` stays so. Each
change is kept once in the audit log (as `system`; the first worker to see it writes it). Sources fetched per
point on demand are left alone: nothing refetches them while their streams are not sold.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import asyncpg

from adapters import DataTier, Registry, Sharing, Stream
from ledger import console

log = logging.getLogger("worldgate.controls")
FAILING_S = 30.0  # a source failing this long (its circuit open throughout) puts its streams in maintenance


class SourceWatch:
    def __init__(self, pool: asyncpg.Pool, tier: Callable[[], DataTier | None], base: Callable[[], Registry]) -> None:
        self._pool = pool
        self._tier = tier  # the services' tier, once the lifespan built it
        self._base = base  # every stream with the settings' sharing: what the operator's rows apply over
        self._failing_since: dict[str, float] = {}  # source → when this worker first saw its circuit open
        self.down: frozenset[str] = frozenset()  # sources whose streams are sold as maintenance now
        self._why: dict[str, str] = {}

    def _scheduled(self) -> dict[str, list[Stream]]:
        groups: dict[str, list[Stream]] = {}
        for stream in self._base().every():
            if stream.adapter and stream.interval_s and not stream.point:
                groups.setdefault(stream.adapter, []).append(stream)
        return groups

    async def check(self, asked: str | None = None) -> bool:
        """Look at every scheduled source's circuit; True when the set of sources down changed (the controls then
        reload sharing). `asked`: a source an operator just asked, judged without the FAILING_S wait."""
        tier = self._tier()
        if tier is None:
            return False
        now = time.time()
        down = set()
        for source in sorted(self._scheduled()):
            status = await tier.cache.source_status(source)
            if status.circuit(now) != "open":
                self._failing_since.pop(source, None)
                continue
            since = self._failing_since.setdefault(source, now)
            if source == asked or source in self.down or now - since >= FAILING_S:
                down.add(source)
                self._why[source] = status.last_error or "its circuit is open"
        if down == self.down:
            return False
        came, went = down - self.down, self.down - down
        self.down = frozenset(down)
        for source in sorted(came):
            await self._record(tier, source, True)
        for source in sorted(went):
            await self._record(tier, source, False)
        return True

    def overlay(self, stored: dict[str, str]) -> dict[str, str]:
        """The sharing to sell by: the operator's (`stored` over the settings'), with the streams of the sources down
        that would be sold (`ok`) as `maintenance`."""
        if not self.down:
            return stored
        base = {s.id: s.sharing.value for s in self._base().every()}
        shown = dict(stored)
        for source, streams in self._scheduled().items():
            if source in self.down:
                for stream in streams:
                    if stored.get(stream.id, base[stream.id]) == Sharing.OK:
                        shown[stream.id] = Sharing.MAINTENANCE.value
        return shown

    def streams_down(self) -> set[str]:
        groups = self._scheduled()
        return {s.id for source in self.down for s in groups.get(source, ())}

    async def _record(self, tier: DataTier, source: str, down: bool) -> None:
        """One audit entry per change, whichever worker sees it first (a Redis marker says it is written)."""
        streams = [s.id for s in self._scheduled().get(source, ())]
        log.log(
            logging.WARNING if down else logging.INFO,
            "source health changed sharing",
            extra={"source": source, "down": down, "streams": streams},
        )
        if not await _first_to_see(tier, source, down):
            return
        detail: dict[str, Any] = {"sharing": "maintenance" if down else "ok", "automatic": True, "streams": streams}
        detail["why"] = f"{source} is failing: {self._why.get(source)}" if down else f"{source} answered again"
        await console.record(self._pool, console.SYSTEM, "sharing.auto", source, detail)


async def _first_to_see(tier: DataTier, source: str, down: bool) -> bool:
    redis = tier.cache.redis
    key = f"{tier.cache.prefix}watch:{source}"
    try:
        if down:
            return bool(await redis.set(key, "down", nx=True, ex=86_400))
        return bool(await redis.delete(key))
    except Exception:  # without Redis each worker says it: one entry too many beats none
        return True
