"""The source watch: sharing follows a source's health, as the sharing model has it.

A shared stream whose source keeps failing (its circuit is open: two failed fetches in a row, shared through
Redis by every worker) goes to `maintenance`, listed but not sold, with the reason in the audit log; after the
source's next successful fetch it is shared again. Only the maintenance the watch set itself is cleared: one
an operator set stays until an operator lifts it. Sources fetched per point on demand are left alone: nothing
refetches them while their streams are not sold, so no success would ever clear them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import asyncpg

from adapters import DataTier, Sharing, Stream
from ledger import operator

log = logging.getLogger("worldgate.controls")


class SourceWatch:
    def __init__(self, pool: asyncpg.Pool, tier: Callable[[], DataTier | None]) -> None:
        self._pool = pool
        self._tier = tier  # the services' tier, once the lifespan built it; its registry is the live view

    async def check(self) -> list[str]:
        """Look at every scheduled source once; the streams whose sharing this changed."""
        tier = self._tier()
        if tier is None:
            return []
        groups: dict[str, list[Stream]] = {}
        for stream in tier.registry.every():
            if stream.adapter and stream.interval_s and not stream.point:
                groups.setdefault(stream.adapter, []).append(stream)
        if not groups:
            return []
        stored = await operator.sharing_rows(self._pool)
        fetched = await tier.cache.fetched_at(sorted(groups))
        now = time.time()
        changed = []
        for source, streams in sorted(groups.items()):
            status = await tier.cache.source_status(source)
            failing = status.circuit(now) == "open"
            succeeded = max((t for t in (fetched.get(source), status.last_success_at) if t), default=None)
            for stream in streams:
                row = stored.get(stream.id)
                set_by_watch = row is not None and row["automatic"] and row["sharing"] == Sharing.MAINTENANCE
                if failing and stream.sharing is Sharing.OK:
                    why = f"{source} is failing: {status.last_error or 'its circuit is open'}"
                    if await operator.auto_maintenance(self._pool, stream.id, why):
                        log.warning("stream put in maintenance", extra={"stream": stream.id, "source": source})
                        changed.append(stream.id)
                    continue
                cleared = not failing and succeeded is not None and set_by_watch
                if cleared and await operator.auto_maintenance_cleared(self._pool, stream.id, succeeded):
                    log.info("stream shared again", extra={"stream": stream.id, "source": source})
                    changed.append(stream.id)
        return changed
