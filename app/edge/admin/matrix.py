"""The operator's source matrix: every stream, shared or not, with its schedule, last fetch, freshness,
circuit, sharing, price and how many records (points) its latest value holds."""

from __future__ import annotations

import time
from typing import Any

from adapters import DataTier, Registry, StreamType, Unavailable, freshness
from app.edge.admin.api import stream_row
from app.usecases.pricing import Pricing


async def source_matrix(registry: Registry, pricing: Pricing | None, tier: DataTier | None) -> list[dict[str, Any]]:
    now = time.time()
    streams = registry.every()
    fetched = await tier.cache.fetched_at(sorted({s.adapter for s in streams if s.adapter})) if tier else {}
    rows = []
    for stream in streams:
        paid = pricing.lookup(f"/v1/streams/{stream.id}") if pricing else None
        row = stream_row(stream, paid.amount_atomic if paid else None)
        fetched_at = fetched.get(stream.adapter) if stream.adapter and not stream.point else None
        row["fetched_at"] = fetched_at
        row["age_s"] = round(now - fetched_at, 1) if fetched_at else None
        if stream.interval_s is None:
            row["freshness"], row["circuit"], row["points"] = "static", None, None
        elif stream.point:
            row["freshness"], row["points"] = "per_point", None
        else:
            row["freshness"] = freshness(now - fetched_at, stream.interval_s) if fetched_at else "unknown"
        if tier is not None and stream.adapter:
            status = await tier.cache.source_status(stream.adapter)
            row["circuit"], row["last_error"] = status.circuit(now), status.last_error
            if not stream.point:
                entry = await tier.cache.peek(tier.adapters[stream.adapter])
                row["points"] = len(entry.records.get(stream.id, ())) if entry else None
        elif tier is not None and stream.type is StreamType.STATIC:
            try:
                row["points"] = len((await tier.read(stream)).records)
            except Unavailable:
                row["points"] = None
        rows.append(row)
    return rows
