"""The recorder: every upstream fetch of a shared realtime, grid or snapshot stream becomes a snapshot.

The cache tier calls `on_fetch` once per upstream fetch (never for a value another process fetched), so a
fleet records each fetch once. A snapshot goes to the hot layer first (Redis: checksum dedupe across
replicas, a 48 h window, and a pending entry), then straight through to the cold layer (Postgres), where it
is durable within milliseconds of its fetch. What could not be written through (Postgres down, the process
killed between the two writes) stays pending in Redis; `flush` writes it on a schedule and at shutdown,
from any replica. With Redis down the cold layer dedupes alone; with both down a snapshot waits in this
process's memory (bounded) for the next flush.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from ..cache import Entry
from ..registry import Stream, StreamType
from ..upstream.base import Adapter, Point
from .hot import HotLayer
from .snapshots import Snapshot, utc
from .store import ColdStore

log = logging.getLogger("worldgate.history")
RECORDED_TYPES = (StreamType.REALTIME, StreamType.GRID, StreamType.SNAPSHOT)
FLUSH_S_DEFAULT = 60.0
RETENTION_DAYS_DEFAULT = 5 * 365 + 1
RETENTION_EVERY_S = 86_400.0
MEMORY_PENDING_MAX = 10_000


def recorded(stream: Stream) -> bool:
    """Recorded: a stream the scheduler keeps warm (shared, refreshed), not per point, not bundled."""
    return stream.type in RECORDED_TYPES and not stream.point and stream.adapter is not None


class Recorder:
    def __init__(
        self,
        cold: ColdStore,
        hot: HotLayer | None,
        streams: Iterable[Stream],
        *,
        flush_s: float = FLUSH_S_DEFAULT,
        retention_days: float = RETENTION_DAYS_DEFAULT,
    ) -> None:
        self.cold = cold
        self.hot = hot
        self.streams = {s.id: s for s in streams if recorded(s)}
        self.flush_s = flush_s
        self.retention_days = retention_days
        self._memory: deque[Snapshot] = deque(maxlen=MEMORY_PENDING_MAX)
        self._task: asyncio.Task[None] | None = None
        self.counts = {"new": 0, "repeat": 0, "pending": 0}  # this process's, for tests and the dashboard

    async def on_fetch(self, adapter: Adapter, point: Point | None, entry: Entry) -> None:
        """The cache tier's hook: one upstream fetch's records, per stream."""
        if point is not None or adapter.point:
            return
        for stream_id, records in entry.records.items():
            if stream_id in self.streams and records:
                at = entry.fetched_at_unix_s
                snapshot = Snapshot.of(stream_id, records, t=at, fetched_at=at)
                self.counts[await self.record(snapshot)] += 1

    async def record(self, snapshot: Snapshot) -> str:
        """ "new" (stored), "repeat" (the stream's last state again), or "pending" (to be written by a flush)."""
        fresh: bool | None = None  # None: the hot layer could not say
        if self.hot is not None:
            try:
                fresh = await self.hot.offer(snapshot)
            except Exception as exc:  # Redis down or refusing: the cold layer dedupes alone
                log.warning("history hot layer unavailable", extra={"error": type(exc).__name__})
        if fresh is False:
            return "repeat"
        try:
            stored = await self.cold.record(snapshot)
        except Exception as exc:  # Postgres down: pending in Redis (or, failing that, here) until a flush
            log.warning("history cold write failed; left for the flush", extra={"error": type(exc).__name__})
            if fresh is None:
                self._memory.append(snapshot)
            return "pending"
        if fresh:
            await self._unpend([snapshot])
        return "new" if stored else "repeat"

    async def _unpend(self, snapshots: list[Snapshot]) -> None:
        assert self.hot is not None
        try:
            await self.hot.flushed(snapshots)
        except Exception as exc:  # still pending: the next flush writes it again, which stores nothing twice
            log.warning("history pending entry not cleared", extra={"error": type(exc).__name__})

    async def flush(self) -> int:
        """Write whatever is pending (hot layer, then memory) and every stream's last sighting to the cold layer;
        how many snapshots it wrote."""
        written = 0
        if self._memory:
            held = list(self._memory)
            written += await self.cold.record_many(held)
            for _ in held:
                self._memory.popleft()
        if self.hot is None:
            return written
        while batch := await self.hot.pending():
            written += await self.cold.record_many(batch)
            await self.hot.flushed(batch)
        for stream in self.streams:
            seen = await self.hot.seen(stream)
            if seen is not None:
                await self.cold.seen(stream, seen)
        return written

    async def retain(self) -> list[str]:
        """Drop the month partitions older than the retention."""
        dropped = await self.cold.drop_before(utc(time.time()) - timedelta(days=self.retention_days))
        if dropped:
            log.info("history partitions dropped", extra={"partitions": dropped})
        return dropped

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="history-flush")

    async def _run(self) -> None:
        next_retention = 0.0
        while True:
            try:
                if time.monotonic() >= next_retention:
                    await self.retain()
                    next_retention = time.monotonic() + RETENTION_EVERY_S
                await self.flush()
            except Exception:
                log.exception("history flush failed; retried next time")
            await asyncio.sleep(self.flush_s)

    async def stop(self) -> None:
        """Stop the schedule and flush once more (shutdown): nothing recorded stays only in memory."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        try:
            await self.flush()
        except Exception:
            log.exception("history flush at shutdown failed; what is pending in Redis is written by the next flush")

    def status(self) -> dict[str, Any]:
        return {
            "recorded_streams": sorted(self.streams),
            "counts": dict(self.counts),
            "memory_pending": len(self._memory),
        }
