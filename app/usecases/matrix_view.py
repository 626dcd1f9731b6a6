"""The operator's source matrix: every stream, shared or not, with its category, type, upstream, schedule, last
fetch, freshness, health (circuit, failures, last error), sharing, price, parent fetch and how many records
(points) its latest value holds. Read from the registry and the data tier only; nothing is fetched."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from adapters import DataTier, Entry, Registry, Stream, StreamType, Unavailable, freshness
from adapters.history import ColdStore, for_stream, recorded
from app.usecases.pricing import Pricing


def stream_row(stream: Stream, price_atomic: int | None) -> dict[str, Any]:
    """The parts of a stream the operator's matrix shows that do not depend on live state."""
    return {
        "id": stream.id,
        "name": stream.name,
        "category": stream.category,
        "type": stream.type.value,
        "interval_s": stream.interval_s,
        "source": stream.adapter,
        "upstream": stream.upstream,
        "sharing": stream.sharing.value,
        "price_tier": stream.price_tier,
        "price_atomic": price_atomic,
        "point": stream.point,
    }


async def source_matrix(registry: Registry, pricing: Pricing | None, tier: DataTier | None) -> list[dict[str, Any]]:
    now = time.time()
    streams = registry.every()
    feeds = Counter(s.adapter for s in streams if s.adapter)
    fetched = await tier.cache.fetched_at(sorted({s.adapter for s in streams if s.adapter})) if tier else {}
    entries: dict[str, Entry | None] = {}  # one cached value per fetch group, however many streams it feeds
    rows = []
    for stream in streams:
        paid = pricing.lookup(f"/v1/streams/{stream.id}") if pricing else None
        row = stream_row(stream, paid.amount_atomic if paid else None)
        # the fetch it shares with other streams (one upstream call feeds them all)
        row["parent"] = stream.parent if stream.adapter and feeds[stream.adapter] > 1 else None
        fetched_at = fetched.get(stream.adapter) if stream.adapter and not stream.point else None
        row["fetched_at"] = fetched_at
        row["age_s"] = round(now - fetched_at, 1) if fetched_at else None
        row["circuit"], row["failures"], row["last_error"], row["last_error_at"] = None, 0, None, None
        if stream.interval_s is None:
            row["freshness"], row["points"] = "static", None
        elif stream.point:
            row["freshness"], row["points"] = "per_point", None
        else:
            row["freshness"] = freshness(now - fetched_at, stream.interval_s) if fetched_at else "unknown"
            row["points"] = None
        if tier is not None and stream.adapter:
            status = await tier.cache.source_status(stream.adapter)
            row["circuit"], row["failures"] = status.circuit(now), status.consecutive_failures
            row["last_error"], row["last_error_at"] = status.last_error, status.last_error_at
            if not stream.point:
                if stream.adapter not in entries:
                    entries[stream.adapter] = await tier.cache.peek(tier.adapters[stream.adapter])
                entry = entries[stream.adapter]
                row["points"] = len(entry.records.get(stream.id, ())) if entry else None
        elif tier is not None and stream.type is StreamType.STATIC:
            try:
                row["points"] = len((await tier.read(stream)).records)
            except Unavailable:
                row["points"] = None
        row["health"] = _health(row)
        rows.append(row)
    return rows


def _health(row: dict[str, Any]) -> str:
    """One word for the matrix: ok, degraded (a recent failure, or old data), failing (circuit open), or idle."""
    if row["circuit"] == "open":
        return "failing"
    if row["failures"] or row["freshness"] in ("stale", "critical"):
        return "degraded"
    if row["freshness"] == "unknown":
        return "idle"  # never fetched here yet
    return "ok"


async def backfill_coverage(pool: Any, streams: list[Stream]) -> dict[str, dict[str, Any] | None]:
    """Per recorded stream, what the time machine's backfill holds of it: its upstream's reach (max_days), the days
    finished and the last (None: recorded, but its upstream keeps no past). Streams not recorded are absent."""
    done = await ColdStore(pool).backfilled()
    coverage: dict[str, dict[str, Any] | None] = {}
    for stream in streams:
        if not recorded(stream):
            continue
        backfiller = for_stream(stream.id)
        progress = done.get(backfiller.source) if backfiller else None
        coverage[stream.id] = (
            None
            if backfiller is None
            else {
                "source": backfiller.source,
                "max_days": backfiller.max_days,
                "days_done": int(progress["days"]) if progress else 0,
                "last_day": progress["last_day"].isoformat() if progress else None,
            }
        )
    return coverage
