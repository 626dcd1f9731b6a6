"""The cold layer: snapshots in Postgres, in month partitions (migrations/0013_history.sql), read by time.

Writes go through `history_record()`, which stores a snapshot only if it differs from the state around
it, under a per-stream lock, so replicas and reruns never store one state twice. Reads are index range
scans on (stream, t) in the partitions the time bounds select.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from .snapshots import Snapshot, utc

GAPS_LISTED_MAX = 50  # coverage lists the newest gaps; it counts them all


@dataclass(frozen=True, slots=True)
class Stored:
    """One snapshot as read back: its times and its records' JSON."""

    t: datetime
    observed_at: datetime | None
    seen_until: datetime
    raw: bytes


@dataclass(frozen=True)
class Coverage:
    stream: str
    earliest: datetime | None
    latest: datetime | None  # the last time the newest snapshot was seen in force
    count: int
    gaps: list[tuple[datetime, datetime]]  # (from, to): no snapshot seen in force for longer than the gap bound
    gap_count: int


_RANGE = """
SELECT t, observed_at, seen_until, records FROM history_snapshots
WHERE stream = $1 AND t >= $2 AND t <= $3 ORDER BY t LIMIT $4
"""
# With a step: the first snapshot of each step-long bucket counted from `from`.
_RANGE_STEPPED = """
SELECT DISTINCT ON (bucket) t, observed_at, seen_until, records FROM (
    SELECT t, observed_at, seen_until, records, floor(extract(epoch FROM t - $2) / $5) AS bucket
    FROM history_snapshots WHERE stream = $1 AND t >= $2 AND t <= $3
) s ORDER BY bucket, t LIMIT $4
"""
_AT = """
SELECT t, observed_at, seen_until, records FROM history_snapshots
WHERE stream = $1 AND t <= $2 ORDER BY t DESC LIMIT 1
"""
_SPAN = """
SELECT min(t) AS earliest, max(seen_until) AS latest, count(*) AS count FROM history_snapshots WHERE stream = $1
"""
_RECORD = "SELECT history_record($1, $2, $3, $4, $5, $6, $7, $8, $9)"
_GAPS = """
SELECT since, until, count(*) OVER () AS total FROM (
    SELECT lag(seen_until) OVER (ORDER BY t) AS since, t AS until FROM history_snapshots WHERE stream = $1
) s WHERE until - since > make_interval(secs => $2) ORDER BY until DESC LIMIT $3
"""
_SEEN = """
UPDATE history_snapshots SET seen_until = greatest(seen_until, $2)
WHERE stream = $1 AND t = (SELECT max(t) FROM history_snapshots WHERE stream = $1 AND t <= $2)
"""


def _stored(row: Any) -> Stored:
    return Stored(*row)  # the statements select (t, observed_at, seen_until, records) in this order


def _month(unix_s: float) -> str:
    return utc(unix_s).strftime("%Y%m")


class ColdStore:
    def __init__(self, pool: Any) -> None:
        self.pool = pool  # asyncpg.Pool
        self._months: set[str] = set()  # month partitions known to exist

    async def _partitions(self, times: Iterable[float]) -> None:
        """Create the month partitions these times fall in, each in a transaction of its own, before any write
        (creating one locks the parent table, which a writing transaction holds: see history_partition)."""
        for month, at in {_month(t): t for t in times}.items():
            if month not in self._months:
                await self.pool.execute("SELECT history_partition($1)", utc(at))
                self._months.add(month)

    async def record(self, snapshot: Snapshot) -> bool:
        """Store one snapshot unless it repeats the state around it; True when stored."""
        await self._partitions([snapshot.t])
        return bool(await self.pool.fetchval(_RECORD, *snapshot.row()))

    async def record_many(self, snapshots: Iterable[Snapshot]) -> int:
        """Store snapshots in time order in one transaction; how many were new."""
        ordered = sorted(snapshots, key=lambda s: (s.stream, s.t))
        await self._partitions(s.t for s in ordered)
        stored = 0
        async with self.pool.acquire() as connection, connection.transaction():
            for snapshot in ordered:
                stored += bool(await connection.fetchval(_RECORD, *snapshot.row()))
        return stored

    async def seen(self, stream: str, at_unix_s: float) -> None:
        """The snapshot in force at `at` was fetched again then, unchanged."""
        await self.pool.execute(_SEEN, stream, utc(at_unix_s))

    async def between(
        self, stream: str, start: datetime, end: datetime, *, limit: int, step_s: float | None = None
    ) -> list[Stored]:
        """The snapshots with start <= t <= end, oldest first, at most `limit`; with `step_s`, the first of each
        step counted from `start`."""
        if step_s:
            rows = await self.pool.fetch(_RANGE_STEPPED, stream, start, end, limit, float(step_s))
        else:
            rows = await self.pool.fetch(_RANGE, stream, start, end, limit)
        return [_stored(row) for row in rows]

    async def at(self, stream: str, moment: datetime) -> Stored | None:
        """The snapshot in force at `moment`: the newest with t <= moment."""
        row = await self.pool.fetchrow(_AT, stream, moment)
        return None if row is None else _stored(row)

    async def coverage(self, stream: str, gap_s: float) -> Coverage:
        """Earliest and latest times, how many snapshots, and the gaps: stretches longer than `gap_s` between
        one snapshot's last sighting and the next snapshot."""
        async with self.pool.acquire() as connection:
            span = await connection.fetchrow(_SPAN, stream)
            gaps = await connection.fetch(_GAPS, stream, float(gap_s), GAPS_LISTED_MAX)
        return Coverage(
            stream=stream,
            earliest=span["earliest"],
            latest=span["latest"],
            count=int(span["count"]),
            gaps=[(row["since"], row["until"]) for row in reversed(gaps)],
            gap_count=int(gaps[0]["total"]) if gaps else 0,
        )

    async def drop_before(self, cutoff: datetime) -> list[str]:
        """Drop every month partition that ends at or before `cutoff` (retention); the partitions dropped."""
        dropped = [row[0] for row in await self.pool.fetch("SELECT history_drop_before($1)", cutoff)]
        self._months -= {name.rsplit("_", 1)[1] for name in dropped}
        return dropped

    # ---- the backfill's progress ----

    async def days_done(self, source: str) -> set[date]:
        rows = await self.pool.fetch("SELECT day FROM history_backfill WHERE source = $1", source)
        return {row["day"] for row in rows}

    async def day_done(self, source: str, day: date, snapshots: int) -> None:
        await self.pool.execute(
            "INSERT INTO history_backfill (source, day, snapshots) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            source,
            day,
            snapshots,
        )

    async def backfilled(self) -> dict[str, dict[str, Any]]:
        """Per fetch group: how many days a backfill finished, the first and last, and what they stored."""
        rows = await self.pool.fetch(
            "SELECT source, count(*) AS days, min(day) AS first_day, max(day) AS last_day,"
            " sum(snapshots) AS snapshots FROM history_backfill GROUP BY source"
        )
        return {row["source"]: dict(row) for row in rows}

    async def timeline(self, stream: str, limit: int) -> list[tuple[float, int]]:
        """The newest `limit` snapshots' (unix time, record count), oldest first: what a timeline draws."""
        rows = await self.pool.fetch(
            "SELECT extract(epoch FROM t)::float AS t, count FROM history_snapshots WHERE stream = $1"
            " ORDER BY t DESC LIMIT $2",
            stream,
            limit,
        )
        return [(row["t"], row["count"]) for row in reversed(rows)]

    # ---- sizes (docs/time-machine.md, the dashboard) ----

    async def sizes(self) -> list[dict[str, Any]]:
        """Per stream: snapshots, times, and bytes per snapshot before and after compression."""
        rows = await self.pool.fetch(
            "SELECT stream, count(*) AS snapshots, min(t) AS earliest, max(seen_until) AS latest,"
            " avg(raw_bytes)::float AS raw_bytes, avg(pg_column_size(records))::float AS stored_bytes,"
            " count(*) FILTER (WHERE origin = 'backfill') AS backfilled"
            " FROM history_snapshots GROUP BY stream ORDER BY stream"
        )
        return [dict(row) for row in rows]
