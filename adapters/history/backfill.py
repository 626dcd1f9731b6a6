"""Backfill: fill the cold layer with an upstream's own past, one UTC day per request, resumably.

`run` plans the days from `days` ago through today, skips the days a previous run finished
(history_backfill), and for each other day asks the upstream once, picks the snapshots at the
backfiller's ticks (adapters/history/backfillers.py) and stores them through the same dedupe as live
recording, so a rerun stores nothing. A finished day is marked done; today stays open (it is not over).

Replayed upstreams answer the same recording whatever the dates asked, so in replay mode the clock is
the recording's: "now" is the newest time the recording holds, and the days before it are filled from it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as day_start

from ..records import Record
from ..upstream.base import UpstreamRequest
from .backfillers import Backfiller
from .snapshots import Snapshot, unix
from .store import ColdStore

Fetch = Callable[[str, UpstreamRequest], Awaitable[bytes]]  # Fetcher.get: (source, request) → body
Report = Callable[["DayDone"], None]


@dataclass(frozen=True)
class DayDone:
    """One day of a run, for a progress bar: which, how far along, what it stored."""

    day: date
    index: int  # 1-based among the planned days
    total: int
    stored: int
    skipped: bool  # finished by an earlier run: not fetched again
    stored_total: int


@dataclass(frozen=True)
class Result:
    source: str
    streams: tuple[str, ...]
    anchor: datetime  # "now" for this run (the recording's time in replay mode)
    days_planned: int
    days_fetched: int
    days_skipped: int
    stored: int


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def snapshots_of_day(
    backfiller: Backfiller, parsed: dict[str, list[Record]], start: datetime, upto: datetime, fetched_at: float
) -> list[Snapshot]:
    """The day's snapshots at each tick in [start, upto], and at `upto` itself when the day is not over (today's
    state now). A repeat of the state before it is kept too: storing it only moves that state's last sighting,
    which is what tells a steady feed from a gap."""
    ticks = []
    tick = start
    while tick <= upto and tick < start + timedelta(days=1):
        ticks.append(tick)
        tick += timedelta(seconds=backfiller.tick_s)
    if upto < start + timedelta(days=1, seconds=-1) and (not ticks or ticks[-1] != upto):
        ticks.append(upto)
    snapshots = []
    for stream in backfiller.streams:
        records = sorted(parsed.get(stream, []), key=lambda r: r.observed_at)
        for tick in ticks:
            picked = backfiller.pick(records, _iso(tick), _iso(tick - timedelta(seconds=backfiller.lookback_s)))
            if picked:
                snapshots.append(
                    Snapshot.of(stream, picked, t=tick.timestamp(), fetched_at=fetched_at, origin="backfill")
                )
    return snapshots


async def recording_time(backfiller: Backfiller, fetch: Fetch, now: datetime) -> datetime:
    """The newest time a replayed recording holds (its "now"); `now` if it holds none."""
    body = await fetch(backfiller.source, backfiller.request(now - timedelta(days=1), now))
    newest = max((r.observed_at for records in backfiller.parse(body).values() for r in records), default=None)
    return datetime.fromtimestamp(unix(newest), UTC) if newest else now


async def run(
    backfiller: Backfiller,
    store: ColdStore,
    fetch: Fetch,
    *,
    days: int,
    now: datetime | None = None,
    replayed: bool = False,
    report: Report | None = None,
    pause_s: float = 0.0,
) -> Result:
    """Backfill `days` days before today and today so far; see the module docstring."""
    anchor = now or datetime.now(UTC)
    if replayed:
        anchor = await recording_time(backfiller, fetch, anchor)
    today = anchor.date()
    plan = [today - timedelta(days=back) for back in range(min(days, backfiller.max_days), -1, -1)]
    done = await store.days_done(backfiller.source)
    fetched = stored_total = 0
    for index, day in enumerate(plan, start=1):
        if day in done:
            if report:
                report(DayDone(day, index, len(plan), 0, True, stored_total))
            continue
        start = datetime.combine(day, day_start(0), UTC)
        end = start + timedelta(days=1)
        upto = min(end - timedelta(seconds=1), anchor)
        body = await fetch(backfiller.source, backfiller.request(start - timedelta(seconds=backfiller.lookback_s), end))
        snapshots = snapshots_of_day(backfiller, backfiller.parse(body), start, upto, time.time())
        stored = await store.record_many(snapshots)
        fetched += 1
        stored_total += stored
        if end <= anchor:  # the whole day is past: a rerun need not ask again
            await store.day_done(backfiller.source, day, stored)
        if report:
            report(DayDone(day, index, len(plan), stored, False, stored_total))
        if pause_s and index < len(plan):
            await asyncio.sleep(pause_s)  # politeness to a live upstream between days
    return Result(backfiller.source, backfiller.streams, anchor, len(plan), fetched, len(plan) - fetched, stored_total)
