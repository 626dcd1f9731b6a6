"""The scheduler as the operator sees it: its fetch tiers (streams grouped by refresh interval) and each stream's
schedule, from the source matrix's rows (app/usecases/matrix_view.py) and the scheduler's own rule (adapters:
a shared fetch is refreshed at REFRESH_AT of its interval, less a jitter; per-point reads are fetched on demand
and bundled data never). "Next in" is that rule's estimate: the scheduler of each worker adds its own jitter."""

from __future__ import annotations

import time
from typing import Any

from adapters.scheduler import JITTER, REFRESH_AT

TIER_NAMES = {60: "1 min", 300: "5 min", 900: "15 min", 3600: "1 h", 21600: "6 h", 86400: "1 day"}
STALE = ("aging", "stale", "critical")


def _mode(row: dict[str, Any]) -> str:
    if row["interval_s"] is None:
        return "bundled"
    return "on_demand" if row.get("point") else "scheduled"


def _tier_name(interval_s: int | None) -> str:
    if interval_s is None:
        return "static"
    return TIER_NAMES.get(interval_s) or (f"{interval_s // 60} min" if interval_s % 60 == 0 else f"{interval_s} s")


def scheduler_view(rows: list[dict[str, Any]], running: bool | None, now: float | None = None) -> dict[str, Any]:
    """`rows`: the matrix's; `running`: whether this gateway runs the scheduler (None: not known here)."""
    now = time.time() if now is None else now
    schedule = []
    tiers: dict[int | None, dict[str, Any]] = {}
    for row in rows:
        mode, interval = _mode(row), row["interval_s"]
        every = round(interval * REFRESH_AT, 1) if mode == "scheduled" else None
        fetched_at = row["fetched_at"]
        elapsed = round(now - fetched_at, 1) if fetched_at else None
        next_in = None
        if every is not None and running:
            next_in = max(0.0, round(every - elapsed, 1)) if elapsed is not None else 0.0
        schedule.append(
            {
                "id": row["id"],
                "source": row["source"],
                "type": row["type"],
                "mode": mode,
                "interval_s": interval,
                "fetch_every_s": every,
                "fetched_at": fetched_at,
                "elapsed_s": elapsed,
                "next_in_s": next_in,
                "freshness": row["freshness"],
                "sharing": row["sharing"],
            }
        )
        tier = tiers.setdefault(
            interval,
            {
                "tier": _tier_name(interval),
                "interval_s": interval,
                "fetch_every_s": round(interval * REFRESH_AT, 1) if interval else None,
                "total": 0,
                "shared": 0,
                "fresh": 0,
                "stale": 0,
                "never": 0,
                "on_demand": 0,
                "bundled": 0,
            },
        )
        tier["total"] += 1
        tier["shared"] += row["sharing"] == "ok"
        if mode == "scheduled":
            tier["fresh"] += row["freshness"] == "fresh"
            tier["stale"] += row["freshness"] in STALE
            tier["never"] += fetched_at is None
        else:
            tier[mode] += 1
    ordered = sorted(tiers.values(), key=lambda t: (t["interval_s"] is None, t["interval_s"] or 0))
    schedule.sort(key=lambda s: (s["next_in_s"] is None, s["next_in_s"] or 0, s["id"]))
    return {
        "running": running,
        "refresh_at": REFRESH_AT,
        "jitter": JITTER,
        "tiers": ordered,
        "streams": schedule,
    }
