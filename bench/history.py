"""The time machine's read path against the bare rows: `history_vs_raw=`, and the size figures of docs/time-machine.md.

`make bench` runs it last; alone: `.venv/bin/python bench/history.py [--rounds N] [--days D]`.

1. A fresh Postgres database (tests/services.py picks the server, as the suite does), the migrations applied.
2. D days (default 30) of recorded history at each stream's cadence, at the size the live upstreams answer
   (the 60-cell grid, a day of quakes, 24 Kp readings, ...; built from the recorded payloads' record shapes
   with varied values; a stream without such a generator as its replay recording parses), written through
   `history_record()` in time order, streams interleaved as the recorder interleaves them.
3. Timed, in ABBA order, one request at a time: R answers of `GET /v1/streams/weather.grid.temperature/history`
   for the whole range at the stream's cadence (hourly: D*24+1 snapshots), as the route builds them
   (`HistoryReads.history_answer` then the JSON bytes it sends, without HTTP and payment), against R reads
   of the same rows by a bare asyncpg SELECT (the store's own statement, rows fetched, nothing built).
4. Prints per stream the bytes per snapshot (JSON, and stored by Postgres), the 5-year projection, the time of
   a point-in-time read and of coverage, then the two rates and `history_vs_raw=` (history answers/s over
   bare reads/s). The paid size cap is lifted here: at the live grid's size a 30-day answer is about 6 MB,
   more than WORLDGATE_RESPONSE_BYTES_MAX's default 4 MiB, which a real sale would refuse uncharged.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import functools
import json
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402

import ledger  # noqa: E402
from adapters import Record, Registry  # noqa: E402
from adapters.history import ColdStore, Snapshot, recorded  # noqa: E402
from adapters.replay import FIXTURES, variant  # noqa: E402
from adapters.sources import all_adapters  # noqa: E402
from app.usecases.history_queries import HistoryBounds  # noqa: E402
from app.usecases.history_reads import HistoryReads, history_json  # noqa: E402
from app.usecases.services import Services  # noqa: E402
from app.wiring import MIGRATIONS_DIR  # noqa: E402
from payments import encode_json  # noqa: E402
from tests.services import postgres  # noqa: E402

STREAM = "weather.grid.temperature"
YEAR_S = 365.25 * 86400
REFRESH_AT = 0.8  # the scheduler refetches at 80% of a stream's interval (adapters/scheduler.py)
_RAW = "SELECT t, observed_at, seen_until, records FROM history_snapshots WHERE stream = $1 AND t >= $2 AND t <= $3"
RAW_SQL = _RAW + " ORDER BY t LIMIT $4"  # the store's own range read (adapters/history/store.py)
FILLER_MAX = 300
CELLS = [(lat, lon) for lat in (-60, -30, 0, 30, 60) for lon in range(-180, 180, 30)]


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def live_records(stream: str, at: float, rng: random.Random) -> tuple[Record, ...]:
    """One snapshot's records at the size its live upstream answers, in the recorded payloads' shapes."""
    when = _iso(at)
    if stream.startswith("weather.grid."):
        fields: Any = {
            "weather.grid.temperature": lambda: {"temperature_c": round(rng.uniform(-40, 45), 1)},
            "weather.grid.wind": lambda: {
                "wind_speed_kmh": round(rng.uniform(0, 80), 1),
                "wind_direction_deg": rng.randrange(360),
            },
            "weather.grid.precipitation": lambda: {
                "precipitation_mm": round(rng.choice([0, 0, 0, rng.uniform(0, 9)]), 1)
            },
        }[stream]
        return tuple(Record(stream, when, lat, lon, fields(), "Open-Meteo") for lat, lon in CELLS)
    if stream == "quakes.usgs":  # the past day's feed: about 250 quakes
        return tuple(
            Record(
                stream,
                _iso(at - rng.uniform(0, 86400)),
                round(rng.uniform(-60, 70), 4),
                round(rng.uniform(-180, 180), 4),
                {
                    "id": f"us7000{rng.randrange(16**4):04x}",
                    "magnitude": round(rng.uniform(0.5, 6), 2),
                    "magnitude_type": rng.choice(["ml", "md", "mb", "mww"]),
                    "place": f"{rng.randrange(1, 99)} km {rng.choice(['N', 'SW', 'ESE'])} of Somewhere, Region",
                    "depth_km": round(rng.uniform(0, 600), 2),
                    "tsunami": False,
                    "alert": None,
                    "url": f"https://earthquake.usgs.gov/earthquakes/eventpage/us7000{rng.randrange(16**4):04x}",
                },
                "USGS Earthquake Hazards Program",
            )
            for _ in range(250)
        )
    if stream == "iss.position":
        fields = {"altitude_km": round(rng.uniform(410, 425), 2), "velocity_kmh": round(rng.uniform(27550, 27620), 2)}
        fields |= {"visibility": rng.choice(["daylight", "eclipsed"]), "footprint_km": 4500.1}
        return (Record(stream, when, rng.uniform(-51, 51), rng.uniform(-180, 180), fields, "wheretheiss.at"),)
    if stream == "space.kp":
        return tuple(
            Record(
                stream,
                _iso(at - 60 * i),
                None,
                None,
                {"kp": round(rng.uniform(0, 5), 2), "kp_index": 2, "storm_level": None},
                "NOAA SWPC",
            )
            for i in range(24)
        )
    if stream == "space.solar_wind":
        return tuple(
            Record(
                stream,
                _iso(at - 60 * i),
                None,
                None,
                {
                    "density_cm3": round(rng.uniform(1, 20), 2),
                    "speed_km_s": round(rng.uniform(300, 700), 1),
                    "temperature_k": rng.randrange(10_000, 300_000),
                    "spacecraft": "SOLAR1",
                },
                "NOAA SWPC",
            )
            for i in range(60)
        )
    if stream == "disasters.gdacs":  # the MAP list: about 100 current alerts
        return tuple(
            Record(
                stream,
                _iso(at - rng.uniform(0, 7 * 86400)),
                rng.uniform(-60, 70),
                rng.uniform(-180, 180),
                {
                    "event_type": rng.choice(["EQ", "TC", "FL", "VO", "DR", "WF"]),
                    "event_id": str(rng.randrange(10**6)),
                    "name": "Green earthquake alert in Somewhere",
                    "alert_level": "Green",
                    "country": "Somewhere",
                    "severity": "Magnitude 4.6M, Depth:10km",
                    "url": "https://www.gdacs.org/report.aspx?eventid=1&eventtype=EQ",
                },
                "GDACS",
            )
            for _ in range(100)
        )
    if stream == "events.eonet":  # open events: about 150
        return tuple(
            Record(
                stream,
                _iso(at - rng.uniform(0, 30 * 86400)),
                rng.uniform(-60, 70),
                rng.uniform(-180, 180),
                {
                    "id": f"EONET_{rng.randrange(10**5)}",
                    "title": "Wildfire near Somewhere, Region",
                    "category": "wildfires",
                    "magnitude": None,
                    "magnitude_unit": None,
                    "link": "https://eonet.gsfc.nasa.gov/api/v3/events/EONET_1",
                    "sources": ["IRWIN"],
                },
                "NASA EONET",
            )
            for _ in range(150)
        )
    return _as_recorded(stream, when)


def _as_recorded(stream: str, when: str) -> tuple[Record, ...]:
    """A stream without a generator above: its records as its recorded upstream payload gives them (the replay
    server's answer to its adapter's request, parsed by the adapter), stamped `when`."""
    records = _recorded_records().get(stream)
    if records is None:
        raise ValueError(f"{stream}: no generator and no recorded payload")
    return tuple(dataclasses.replace(r, observed_at=when) for r in records)


@functools.cache
def _recorded_records() -> dict[str, tuple[Record, ...]]:
    manifest = json.loads((FIXTURES / "manifest.json").read_text())
    found: dict[str, tuple[Record, ...]] = {}
    for adapter in all_adapters().values():
        if adapter.point:
            continue  # not recorded by the time machine (per point, on demand)
        request = adapter.request(None)
        entry = variant(manifest.get(request.host, {}).get(request.path), urlencode(request.params))
        if entry is None:
            continue
        parsed = adapter.parse((FIXTURES / entry["file"]).read_bytes(), None)
        found.update({stream: tuple(records) for stream, records in parsed.items()})
    return found


async def seed(pool: asyncpg.Pool, days: int, end: float) -> dict[str, int]:
    """`days` days before `end`: the measured stream at its cadence (hourly, as backfilled and recorded), the other
    recorded streams beside it, at their cadence or, to keep the bench to seconds, at most FILLER_MAX snapshots
    each (enough to measure their sizes); all written through history_record() in time order, interleaved."""
    rng = random.Random(16)
    span = days * 86400
    streams = {
        s.id: float(s.interval_s or 3600) if s.id == STREAM else max(float(s.interval_s or 3600), span / FILLER_MAX)
        for s in Registry().all()
        if recorded(s)
    }
    events = sorted(
        (end - k * cadence, stream)
        for stream, cadence in streams.items()
        for k in range(int(days * 86400 / cadence) + 1)
    )
    store, counts = ColdStore(pool), dict.fromkeys(streams, 0)
    for start in range(0, len(events), 500):
        batch = [Snapshot.of(s, live_records(s, t, rng), t=t, fetched_at=t) for t, s in events[start : start + 500]]
        await store.record_many(batch)
        for snapshot in batch:
            counts[snapshot.stream] += 1
    return counts


async def timed(label: str, call: Any, rounds: int) -> list[float]:
    took = []
    for _ in range(rounds):
        started = time.perf_counter()
        await call()
        took.append(time.perf_counter() - started)
    return took


async def bench(dsn: str, rounds: int, days: int) -> float:
    await ledger.migrate(dsn, MIGRATIONS_DIR)
    pool = await ledger.create_pool(dsn, size_min=1, size_max=4)
    try:
        end = datetime(2026, 6, 30, 23, tzinfo=UTC).timestamp()
        started = time.perf_counter()
        counts = await seed(pool, days, end)
        print(
            f"seeded {sum(counts.values())} snapshots of {len(counts)} streams over {days} days"
            f" in {time.perf_counter() - started:.1f} s"
        )
        store = ColdStore(pool)
        print("\nstream                      snapshots  JSON B/snap  stored B/snap  snapshots/day*  5 years, stored*")
        sizes = {row["stream"]: row for row in await store.sizes()}
        registry = Registry()
        for stream in sorted(counts):
            row = sizes[stream]
            interval = float(registry.get(stream).interval_s or 3600)  # type: ignore[union-attr]
            per_day = 86400 / (interval * REFRESH_AT)
            five_years = row["stored_bytes"] * per_day * 5 * 365.25
            print(
                f"{stream:27} {row['snapshots']:9} {row['raw_bytes']:12.0f} {row['stored_bytes']:14.0f} "
                f"{per_day:15.0f} {five_years / 1e9:13.2f} GB"
            )
        total = await pool.fetchval(
            "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c WHERE c.relname LIKE 'history_snapshots_2%'"
        )
        snapshots = sum(counts.values())
        print("* if every fetch changed the payload: an upper bound (a fetch that changes nothing stores nothing)")
        print(
            f"on disk: {total / 1e6:.1f} MB for {snapshots} snapshots with indexes and TOAST,"
            f" {total / snapshots:.0f} B a snapshot on average"
        )

        reads = HistoryReads(
            Registry, Services(), HistoryBounds(range_days_max=days + 1, snapshots_max=days * 24 + 1, bytes_max=1 << 30)
        )
        reads.store = store
        stream = registry.get(STREAM)
        assert stream is not None
        start, stop = datetime.fromtimestamp(end, UTC) - timedelta(days=days), datetime.fromtimestamp(end, UTC)
        params = {"from": start.isoformat(), "to": stop.isoformat()}
        probe = await reads.history_answer(stream, params)
        assert probe.ok, probe.document
        body = history_json(probe.document)
        assert body == encode_json(probe.document)  # the same bytes as the plain encoder's
        rows = await pool.fetch(RAW_SQL, STREAM, start, stop, days * 24 + 2)
        assert len(rows) == probe.document["count"] == days * 24 + 1, (len(rows), probe.document["count"])
        print(f"\n{STREAM}: {len(rows)} snapshots in {days} days; answer {len(body) / 1e6:.2f} MB of JSON")

        async def answer() -> None:
            done = await reads.history_answer(stream, params)
            history_json(done.document)

        async def raw() -> None:
            await pool.fetch(RAW_SQL, STREAM, start, stop, days * 24 + 2)

        moments = [start + timedelta(seconds=random.Random(k).uniform(0, days * 86400)) for k in range(200)]
        at_took = [await timed("at", lambda m=m: store.at(STREAM, m), 1) for m in moments]
        cov = await timed("coverage", lambda: store.coverage(STREAM, 7200.0), 5)
        print(
            f"point-in-time read (at): p50 {statistics.median(t[0] for t in at_took) * 1000:.2f} ms"
            f" over {len(moments)} moments"
        )
        print(f"coverage of {STREAM} ({counts[STREAM]} snapshots): p50 {statistics.median(cov) * 1000:.1f} ms")

        await timed("warm", answer, 3)
        await timed("warm", raw, 3)
        history_took: list[float] = []
        raw_took: list[float] = []
        quarter = max(1, rounds // 2)
        for first, second in ((answer, raw), (raw, answer)):  # ABBA: A B, then B A
            for call in (first, second):
                (history_took if call is answer else raw_took).extend(await timed("", call, quarter))
        history_rps, raw_rps = len(history_took) / sum(history_took), len(raw_took) / sum(raw_took)
        print(f"history answers/s  {history_rps:8.1f}   p50 {statistics.median(history_took) * 1000:7.2f} ms")
        print(f"bare SELECT/s      {raw_rps:8.1f}   p50 {statistics.median(raw_took) * 1000:7.2f} ms")
        return history_rps / raw_rps
    finally:
        await pool.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=40, help="answers timed per side (default 40)")
    parser.add_argument("--days", type=int, default=30, help="the range read, in days (default 30)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as state, postgres(Path(state), prefix="bench") as database:
        print(f"history bench on {database.kind}")
        ratio = asyncio.run(bench(database.url, args.rounds, args.days))
    print(f"history_vs_raw={ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
