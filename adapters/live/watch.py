"""Where live frames come from: the cache tier's fetches and the refreshes of the one poll loop.

- `fetched` is the cache tier's `on_fetch` hook (beside the time machine's): it runs once per upstream fetch,
  in the process that made it, and turns the fetch into one data frame per live stream it feeds.
- `refreshed` is told the outcome of every refresh (the scheduler's, or the `Poller`'s when the scheduler is
  off): after `UNREACHABLE_AFTER` refreshes in a row without a fresh value, the group's streams get one
  `unreachable` frame, fleet-wide (the status in Redis decides who says it); the next fetch's data frames say
  `ok` again (or, if it brought no records, an `ok` status frame).
- `Poller` is the poll loop for a deployment whose scheduler is off: it refreshes only the groups someone
  watches (a subscriber here, or an operator's keep-alive), through the same cache, so N processes still make
  one upstream call per interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable

from ..cache import Entry, Unavailable
from ..registry import Registry, Stream
from ..scheduler import JITTER, REFRESH_AT, STALE_REFRESH, retry_delay_s
from ..tier import DataTier
from ..upstream.base import Adapter, Point
from .bridge import Bridge
from .frames import OK, UNREACHABLE, live, records_frame, status_frame

log = logging.getLogger("worldgate.live")
UNREACHABLE_AFTER = 3  # consecutive refreshes without a fresh value before a feed is called unreachable


class Watch:
    def __init__(self, registry: Callable[[], Registry], bridge: Bridge) -> None:
        self.registry = registry  # the current view (sharing changes at run time)
        self.bridge = bridge
        self.hub = bridge.hub
        self.failures: dict[str, int] = {}  # fetch group → refreshes in a row without a fresh value

    def streams(self, group: str) -> list[Stream]:
        return [s for s in self.registry().by_adapter().get(group, []) if live(s)]

    async def fetched(self, adapter: Adapter, point: Point | None, entry: Entry) -> None:
        """The cache tier's hook: one upstream fetch (never per point: those have no live feed)."""
        if point is not None or adapter.point:
            return
        feeds = {s.id for s in self.streams(adapter.name)}
        frames = [
            records_frame(stream, records, entry.fetched_at_unix_s)
            for stream, records in entry.records.items()
            if stream in feeds and records
        ]
        self.failures[adapter.name] = 0
        await self.bridge.publish(frames, ok_groups=(adapter.name,))

    async def refreshed(self, stream: Stream, failed: str | None) -> None:
        """The scheduler's (or poller's) hook: a refresh of `stream`'s fetch group and why it failed, if it did."""
        group = stream.adapter
        if group is None:
            return
        streams = self.streams(group)
        if failed is None:
            self.failures[group] = 0
            if any(self.hub.feed(s.id).status == UNREACHABLE for s in streams):
                await self._say(group, streams, OK, None)
            return
        self.failures[group] = count = self.failures.get(group, 0) + 1
        if count >= UNREACHABLE_AFTER and any(self.hub.feed(s.id).status != UNREACHABLE for s in streams):
            await self._say(group, streams, UNREACHABLE, failed)

    async def _say(self, group: str, streams: list[Stream], status: str, reason: str | None) -> None:
        frames = [status_frame(s.id, status, time.time(), reason) for s in streams]
        changed = await self.bridge.swap_status(group, status)
        if changed is False:  # another replica said it already: only our own hub may not have heard
            for frame in frames:
                self.hub.publish(frame)
            return
        log.info("live feed status", extra={"source": group, "status": status, "reason": reason})
        await self.bridge.publish(frames)


Report = Callable[[Stream, str | None], Awaitable[None]]


class Poller:
    """The poll loop per watched fetch group when the scheduler is off (see the module docstring)."""

    def __init__(self, tier: DataTier, report: Report, *, rng: random.Random | None = None) -> None:
        self.tier = tier
        self.report = report
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not security
        self.tasks: dict[str, asyncio.Task[None]] = {}

    def want(self, streams: Iterable[Stream]) -> None:
        """Poll exactly these streams' fetch groups (one loop per group)."""
        wanted = {s.adapter: s for s in streams if s.adapter and s.interval_s}
        for group in set(self.tasks) - set(wanted):
            self.tasks.pop(group).cancel()
        for group, stream in wanted.items():
            if group not in self.tasks:
                self.tasks[group] = asyncio.create_task(self._poll(stream), name=f"live-poll:{group}")

    async def stop(self) -> None:
        tasks = list(self.tasks.values())
        self.tasks.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _poll(self, stream: Stream) -> None:
        assert stream.interval_s is not None
        failures = 0
        while True:
            try:
                read = await self.tier.read(stream, max_age_s=stream.interval_s * REFRESH_AT)
                failed = STALE_REFRESH if read.cache == "STALE" else None
            except Unavailable as exc:
                failed = exc.reason
            except Exception:
                log.exception("live poll crashed", extra={"source": stream.adapter})
                failed = "the refresh crashed"
            failures = failures + 1 if failed else 0
            try:
                await self.report(stream, failed)
            except Exception:
                log.exception("live poll report failed", extra={"source": stream.adapter})
            if failures:
                delay = retry_delay_s(failures, stream.interval_s)
            else:
                delay = stream.interval_s * REFRESH_AT * self._rng.uniform(1 - JITTER, 1)
            await asyncio.sleep(delay)
