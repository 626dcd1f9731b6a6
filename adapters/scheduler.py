"""The scheduler: keeps every shared (not per-point) fetch warm, so paid reads are cache hits.

Tiers, as the design has them (`tier_of`): about a minute (the ISS), up to hourly (realtime feeds at
their upstream's cadence, 5 to 60 minutes, and the grids), 6-hourly (snapshots), and static data,
loaded once at start. Each fetch group's interval is its streams' (WORLDGATE_SOURCE_INTERVALS overrides
it per group, adapters/registry.py). Each group refreshes at about 80% of its interval, with jitter so
workers and sources do not line up, and exponential backoff after failures. With several workers each
runs a scheduler, and the cache's Redis lock plus its freshness check make one upstream call per
interval across all of them. Point data (weather at a lat/lon) is fetched on demand, and so are the
finer grids unless `grid_prewarm` names their resolutions (a 2-degree grid is 17 calls of 1000
locations each, which Open-Meteo's free tier does not allow every hour).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from contextlib import suppress

from .cache import Unavailable
from .registry import HOUR, MINUTE, SIX_HOURS, Stream, StreamType
from .tier import DataTier

log = logging.getLogger("worldgate.scheduler")
REFRESH_AT = 0.8  # of the interval: refresh a little before the value stops being fresh
JITTER = 0.1
BACKOFF_FIRST_S = 15.0
STAGGER_S_MAX = 2.0  # spread the warm-up of all sources over this long
STALE_REFRESH = "the upstream failed; the last good value was served stale"
# After each refresh: the group's stream and why it got no fresh value (None: it did). Live feeds count these.
OnRefresh = Callable[[Stream, str | None], Awaitable[None]]


TIERS = ("1 min", "1 h", "6 h", "static")  # the design's refresh tiers


def tier_of(stream: Stream) -> str:
    """The design's refresh tier of a stream: 1 min, 1 h (anything up to hourly), 6 h (up to 6-hourly), static."""
    if stream.type is StreamType.STATIC or not stream.interval_s:
        return "static"
    if stream.interval_s <= MINUTE:
        return "1 min"
    return "1 h" if stream.interval_s <= HOUR else "6 h" if stream.interval_s <= SIX_HOURS else "static"


def retry_delay_s(failures: int, interval_s: float) -> float:
    """Exponential backoff after consecutive failures, never longer than the source's own interval."""
    return min(BACKOFF_FIRST_S * 2 ** (failures - 1), interval_s)


class Scheduler:
    def __init__(
        self,
        tier: DataTier,
        *,
        rng: random.Random | None = None,
        on_refresh: OnRefresh | None = None,
        grid_prewarm: tuple[int, ...] = (),
    ) -> None:
        self.tier = tier
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not security
        self._tasks: list[asyncio.Task[None]] = []
        self._on_refresh = on_refresh
        self.grid_prewarm = grid_prewarm  # finer grid resolutions kept warm like any group (default: on demand)

    def groups(self) -> list[Stream]:
        """One representative stream per shared fetch group (its interval and caps stand for the group)."""
        seen: dict[str, Stream] = {}
        for stream in self.tier.registry.all():
            if stream.adapter and not stream.point and stream.interval_s:
                held = seen.get(stream.adapter)
                if held is None or stream.interval_s < (held.interval_s or stream.interval_s):
                    seen[stream.adapter] = stream
        return list(seen.values())

    def grids(self) -> list[tuple[Stream, int]]:
        """(one stream of the group, resolution) for each finer grid kept warm: its bands are read together."""
        wanted = set(self.grid_prewarm)
        return [(s, r) for s in self.groups() for r in s.resolutions if r in wanted]

    def start(self) -> None:
        self._tasks.append(asyncio.create_task(self._load_static(), name="static"))
        for stream in self.groups():
            self._tasks.append(asyncio.create_task(self._keep_warm(stream), name=f"warm:{stream.adapter}"))
        for stream, resolution in self.grids():
            name = f"warm:{stream.adapter}@{resolution}deg"
            self._tasks.append(asyncio.create_task(self._keep_warm(stream, resolution), name=name))

    async def _load_static(self) -> None:
        """The static tier: bundled sets read once at start (so a broken one is in the log before a sale)."""
        for stream in self.tier.registry.all():
            if stream.type is StreamType.STATIC:
                try:
                    await self.tier.read(stream)
                except Unavailable as exc:
                    log.error("bundled dataset unreadable", extra={"stream": stream.id, "reason": exc.reason})

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    async def _keep_warm(self, stream: Stream, resolution: int | None = None) -> None:
        assert stream.interval_s is not None
        await asyncio.sleep(self._rng.uniform(0, STAGGER_S_MAX))
        failures = 0
        while True:
            try:
                finer = {"resolution": resolution} if resolution is not None else {}
                read = await self.tier.read(stream, max_age_s=stream.interval_s * REFRESH_AT, **finer)
                failures = 0
                delay = stream.interval_s * REFRESH_AT * self._rng.uniform(1 - JITTER, 1)
                failed = STALE_REFRESH if read.cache == "STALE" else None
            except Unavailable as exc:
                failures += 1
                delay = retry_delay_s(failures, stream.interval_s)
                log.info("pre-warm failed", extra={"source": stream.adapter, "reason": exc.reason, "retry_s": delay})
                failed = exc.reason
            except Exception:
                failures += 1
                delay = retry_delay_s(failures, stream.interval_s)
                log.exception("pre-warm crashed", extra={"source": stream.adapter})
                failed = "the refresh crashed"
            if self._on_refresh is not None and resolution is None:  # listeners follow the default grid
                try:
                    await self._on_refresh(stream, failed)
                except Exception:  # a listener's failure never stops the refreshes
                    log.exception("refresh listener failed", extra={"source": stream.adapter})
            await asyncio.sleep(delay)
