"""The time machine's data side on real Postgres and Redis: recording (dedupe across replicas, hot to cold,
nothing lost when the cold write fails), month partitions and retention, reads by time, and the backfill
from recorded payloads (idempotent, resumable)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
import redis.asyncio as aioredis

from adapters import CacheTier, DataTier, Fetcher, Record, Registry, ReplayServer, Scheduler
from adapters.history import BACKFILLERS, ColdStore, HotLayer, Recorder, Snapshot, for_stream, run
from adapters.history.backfillers import parse_hourly_grid
from adapters.sources import all_adapters

GRID = "weather.grid.temperature"


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Any]:
    client = aioredis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def cold(pool: asyncpg.Pool) -> ColdStore:
    """The cold layer, emptied: history tests own these two tables while they run."""
    await pool.execute("TRUNCATE history_snapshots, history_backfill")
    return ColdStore(pool)


def hot(redis: Any) -> HotLayer:
    return HotLayer(redis, prefix=f"wgtest:{secrets.token_hex(4)}:hist:")


def records(value: float, at: str = "2024-05-20T10:00:00Z") -> tuple[Record, ...]:
    return (Record(GRID, at, 0.0, 30.0, {"temperature_c": value}, "Open-Meteo"),)


def snapshot(value: float, t: float, origin: str = "recorded") -> Snapshot:
    return Snapshot.of(GRID, records(value), t=t, fetched_at=t, origin=origin)


T0 = datetime(2024, 5, 20, 10, tzinfo=UTC).timestamp()


async def rows(pool: asyncpg.Pool, stream: str = GRID) -> list[asyncpg.Record]:
    return await pool.fetch("SELECT * FROM history_snapshots WHERE stream = $1 ORDER BY t", stream)


# ---- snapshots ----


def test_a_snapshot_is_canonical_compressed_and_checksummed() -> None:
    one, same = snapshot(14.6, T0), snapshot(14.6, T0 + 60)
    assert one.checksum == same.checksum  # the same records, whenever fetched
    assert snapshot(14.7, T0).checksum != one.checksum
    assert one.records() == records(14.6) and one.count == 1 and one.observed_at == T0
    assert Snapshot.from_wire(one.to_wire()) == one
    many = Snapshot.of(GRID, records(1.0) * 200, t=T0, fetched_at=T0)
    assert len(many.to_wire()) * 10 < len(many.raw)  # the hot layer keeps it compressed


# ---- recording ----


async def test_an_unchanged_payload_is_stored_once_and_its_sighting_moves(cold: ColdStore, redis: Any) -> None:
    recorder = Recorder(cold, hot(redis), Registry().every())
    assert await recorder.record(snapshot(14.6, T0)) == "new"
    assert await recorder.record(snapshot(14.6, T0 + 900)) == "repeat"
    assert await recorder.record(snapshot(15.1, T0 + 1800)) == "new"
    assert await recorder.record(snapshot(14.6, T0 + 2700)) == "new"  # back to an earlier state: a change
    stored = await rows(cold.pool)
    assert [r["t"].timestamp() for r in stored] == [T0, T0 + 1800, T0 + 2700]
    await recorder.flush()  # the hot layer's last sighting reaches the cold layer
    assert (await rows(cold.pool))[-1]["seen_until"].timestamp() == T0 + 2700
    assert [r["origin"] for r in stored] == ["recorded"] * 3


async def test_two_replicas_sharing_redis_record_a_payload_once(cold: ColdStore, redis: Any) -> None:
    layer = hot(redis)
    replicas = [Recorder(cold, HotLayer(redis, prefix=layer.prefix), Registry().every()) for _ in range(2)]
    outcomes = await asyncio.gather(*(r.record(snapshot(14.6, T0 + i * 0.01)) for i, r in enumerate(replicas)))
    assert sorted(outcomes) == ["new", "repeat"]
    assert len(await rows(cold.pool)) == 1


async def test_replicas_without_a_shared_hot_layer_still_store_once(cold: ColdStore, redis: Any) -> None:
    """Separate Redis prefixes (or Redis down): the cold layer's per-stream lock decides, whatever the order."""
    replicas = [Recorder(cold, hot(redis), Registry().every()) for _ in range(4)]
    late_first = [snapshot(14.6, T0 + 0.3), snapshot(14.6, T0 + 0.1), snapshot(14.6, T0 + 0.2), snapshot(14.6, T0)]
    outcomes = await asyncio.gather(*(r.record(s) for r, s in zip(replicas, late_first, strict=True)))
    assert outcomes.count("new") == 1
    assert len(await rows(cold.pool)) == 1
    blind = Recorder(cold, None, Registry().every())  # no hot layer at all
    assert await blind.record(snapshot(14.6, T0 + 5)) == "repeat"


async def test_a_failed_cold_write_stays_pending_in_redis_until_a_flush(
    cold: ColdStore, redis: Any, database: Any
) -> None:
    dead = await asyncpg.create_pool(database.url, min_size=1, max_size=1)
    await dead.close()  # every call on it fails, as when Postgres is down
    layer = hot(redis)
    crashed = Recorder(ColdStore(dead), layer, Registry().every())
    assert await crashed.record(snapshot(14.6, T0)) == "pending"
    assert await crashed.record(snapshot(15.0, T0 + 900)) == "pending"
    assert rows and await rows(cold.pool) == []
    assert len(await layer.pending()) == 2
    # another replica (or this one restarted) flushes: the cold layer gets both, and nothing stays pending
    survivor = Recorder(cold, HotLayer(redis, prefix=layer.prefix), Registry().every())
    assert await survivor.flush() == 2
    assert [r["t"].timestamp() for r in await rows(cold.pool)] == [T0, T0 + 900]
    assert await layer.pending() == []
    assert await survivor.flush() == 0


async def test_the_cache_tier_records_each_upstream_fetch_once(
    cold: ColdStore, redis: Any, replay: ReplayServer
) -> None:
    """Four workers sharing Redis keep every source warm: one fetch per source, one snapshot per stream."""
    replay.reset()
    prefix = f"wgtest:{secrets.token_hex(4)}:"
    registry = Registry()
    async with httpx.AsyncClient() as http:
        recorders = [Recorder(cold, HotLayer(redis, prefix=prefix + "hist:"), registry.every()) for _ in range(4)]
        tiers = [
            DataTier(
                registry,
                all_adapters(),
                CacheTier(redis, Fetcher(http, replay_url=replay.url), prefix=prefix, on_fetch=r.on_fetch),
            )
            for r in recorders
        ]
        schedulers = [Scheduler(tier) for tier in tiers]
        for scheduler in schedulers:
            scheduler.start()
        try:
            recorded = set(recorders[0].streams)
            for _ in range(150):
                found = {r["stream"] for r in await cold.pool.fetch("SELECT DISTINCT stream FROM history_snapshots")}
                if found == recorded:
                    break
                await asyncio.sleep(0.1)
            await asyncio.sleep(0.5)
        finally:
            for scheduler in schedulers:
                await scheduler.stop()
    counts = dict(await cold.pool.fetch("SELECT stream, count(*) FROM history_snapshots GROUP BY stream"))
    assert counts == dict.fromkeys(recorded, 1)
    assert "weather.current" not in counts and "static.capitals" not in counts  # per point, bundled: not recorded
    assert sum(sum(r.counts.values()) for r in recorders) == len(recorded)  # one recording per fetched stream


# ---- partitions, retention, reads ----


async def test_writers_racing_into_a_new_month_all_land(cold: ColdStore) -> None:
    """Forty writers (one store each, as replicas have) open a month no partition holds yet, some of them in
    multi-month transactions: one creates each partition, nobody fails or deadlocks, each state is stored once."""
    start = datetime(2031, 1, 31, 23, tzinfo=UTC).timestamp()  # the next month begins an hour later

    async def write(stream: str, k: int) -> None:
        first = Snapshot.of(stream, records(1.0), t=start + k * 0.001, fetched_at=start)
        later = Snapshot.of(stream, records(2.0), t=start + 7200 + k, fetched_at=start)
        store = ColdStore(cold.pool)
        await (store.record_many([first, later]) if k % 2 else store.record(first))

    await asyncio.gather(*(write(f"race.{i}", k) for i in range(10) for k in range(4)))
    per_stream = await cold.pool.fetch(
        "SELECT stream, count(*) AS n, count(DISTINCT tableoid) AS parts FROM history_snapshots GROUP BY stream"
    )
    assert {(r["n"], r["parts"]) for r in per_stream} == {(2, 2)} and len(per_stream) == 10


async def test_snapshots_land_in_month_partitions_and_retention_drops_whole_months(cold: ColdStore) -> None:
    old = datetime(2019, 3, 15, tzinfo=UTC).timestamp()
    for t, value in ((old, 1.0), (T0, 2.0), (datetime(2024, 6, 1, tzinfo=UTC).timestamp(), 3.0)):
        assert await cold.record(snapshot(value, t))
    placed = await cold.pool.fetch("SELECT tableoid::regclass::text AS part FROM history_snapshots ORDER BY t")
    assert [r["part"] for r in placed] == [
        "history_snapshots_201903",
        "history_snapshots_202405",
        "history_snapshots_202406",
    ]
    recorder = Recorder(cold, None, Registry().every(), retention_days=365 * 5)
    dropped = await recorder.retain()
    assert "history_snapshots_201903" in dropped and "history_snapshots_202405" not in dropped
    assert [v["t"].timestamp() for v in await rows(cold.pool)] == [T0, datetime(2024, 6, 1, tzinfo=UTC).timestamp()]


async def test_the_records_column_is_compressed_by_postgres(cold: ColdStore) -> None:
    grid = tuple(
        Record(GRID, "2024-05-20T10:00:00Z", lat, lon, {"temperature_c": round(lat / 7 + lon / 11, 1)}, "Open-Meteo")
        for lat in (-60, -30, 0, 30, 60)
        for lon in range(-180, 180, 30)
    )  # the live grid's 60 cells
    await cold.record(Snapshot.of(GRID, grid, t=T0, fetched_at=T0))
    await cold.record(Snapshot.of(GRID, grid[:4], t=T0 + 3600, fetched_at=T0))  # four cells, as replayed
    await cold.record(Snapshot.of(GRID, grid * 3, t=T0 + 7200, fetched_at=T0))
    sizes = await cold.pool.fetch(
        "SELECT raw_bytes, pg_column_size(records) AS stored FROM history_snapshots WHERE stream = $1 ORDER BY t", GRID
    )
    assert sizes[0]["stored"] * 4 < sizes[0]["raw_bytes"]  # lz4 (or pglz) on the JSON
    assert sizes[1]["stored"] == sizes[1]["raw_bytes"] + 4  # under the TOAST threshold: kept as is (+ its header)
    assert sizes[2]["stored"] < sizes[0]["stored"] * 3  # a bigger snapshot compresses at least as well
    [measured] = await cold.sizes()
    assert measured["snapshots"] == 3 and measured["stored_bytes"] < measured["raw_bytes"]


async def test_reads_by_range_step_and_moment(cold: ColdStore) -> None:
    for hour in range(6):
        await cold.record(snapshot(10.0 + hour, T0 + hour * 3600))
    start, end = datetime.fromtimestamp(T0, UTC), datetime.fromtimestamp(T0 + 5 * 3600, UTC)
    assert len(await cold.between(GRID, start, end, limit=100)) == 6
    assert len(await cold.between(GRID, start, end, limit=4)) == 4
    stepped = await cold.between(GRID, start, end, limit=100, step_s=7200)
    assert [s.t.timestamp() for s in stepped] == [T0, T0 + 7200, T0 + 14400]
    at = await cold.at(GRID, datetime.fromtimestamp(T0 + 3600 + 1799, UTC))
    assert at is not None and at.t.timestamp() == T0 + 3600
    assert await cold.at(GRID, datetime.fromtimestamp(T0 - 1, UTC)) is None
    coverage = await cold.coverage(GRID, gap_s=7200)
    assert (coverage.count, coverage.gap_count) == (6, 0)
    await cold.record(snapshot(99.0, T0 + 10 * 3600))  # four hours after the last: one gap
    coverage = await cold.coverage(GRID, gap_s=7200)
    assert coverage.gap_count == 1
    assert [(a.timestamp(), b.timestamp()) for a, b in coverage.gaps] == [(T0 + 5 * 3600, T0 + 10 * 3600)]


# ---- backfill ----


async def fetch_with(http: httpx.AsyncClient, replay: ReplayServer) -> Any:
    return Fetcher(http, replay_url=replay.url).get


async def test_backfill_from_the_recording_is_idempotent_and_resumable(cold: ColdStore, replay: ReplayServer) -> None:
    replay.reset()
    backfiller = for_stream(GRID)
    assert backfiller is BACKFILLERS["open-meteo.grid"]
    seen: list[Any] = []
    async with httpx.AsyncClient() as http:
        fetch = await fetch_with(http, replay)
        first = await run(backfiller, cold, fetch, days=2, replayed=True, report=seen.append)
        assert first.anchor == datetime(2024, 5, 21, 23, tzinfo=UTC)  # the recording's newest hour is "now"
        assert first.days_planned == 3 and first.days_fetched == 3
        assert first.stored == 3 * 48  # three streams, 48 hours each
        assert [d.index for d in seen] == [1, 2, 3] and seen[-1].stored_total == first.stored
        times = {r["t"] for r in await rows(cold.pool)}
        assert len(times) == 48
        again = await run(backfiller, cold, fetch, days=2, replayed=True)
    assert again.stored == 0
    assert again.days_skipped == 2 and again.days_fetched == 1  # finished days are not asked again; today is
    assert await cold.days_done("open-meteo.grid") == {date(2024, 5, 19), date(2024, 5, 20)}
    assert {r["origin"] for r in await rows(cold.pool)} == {"backfill"}
    coverage = await cold.coverage(GRID, gap_s=7200)
    assert coverage.count == 48 and coverage.gap_count == 0


def test_the_hourly_grid_parser_reads_every_cell_and_hour() -> None:
    body = (replay_fixtures() / "api.open-meteo.com" / "grid_hourly_2_days.json").read_bytes()
    parsed = parse_hourly_grid(body)
    temperature = parsed[GRID]
    assert len(temperature) == 4 * 48
    assert temperature[0].observed_at == "2024-05-20T00:00:00Z" and temperature[0].lat == 23.75
    assert set(parsed) == {GRID, "weather.grid.wind", "weather.grid.precipitation"}
    assert all(set(r.fields) == {"wind_speed_kmh", "wind_direction_deg"} for r in parsed["weather.grid.wind"])


def replay_fixtures() -> Any:
    from adapters.replay import FIXTURES

    return FIXTURES


async def test_every_backfiller_fills_from_its_recording(cold: ColdStore, replay: ReplayServer) -> None:
    """Each upstream's history request reaches a recording, parses, and stores at least one snapshot."""
    replay.reset()
    async with httpx.AsyncClient() as http:
        fetch = await fetch_with(http, replay)
        for backfiller in BACKFILLERS.values():
            result = await run(backfiller, cold, fetch, days=min(2, backfiller.max_days), replayed=True)
            assert result.stored >= 1, backfiller.source
            request = backfiller.request(result.anchor - timedelta(days=1), result.anchor)
            assert request.host in {s.upstream for s in Registry().all() if s.adapter == backfiller.source}


@pytest.mark.parametrize("stream", ["space.kp", "space.solar_wind"])
async def test_swpc_backfills_days_from_its_7_day_products(cold: ColdStore, replay: ReplayServer, stream: str) -> None:
    """SWPC's 7-day products reach back days, not the hours its live products hold; a rerun stores nothing."""
    replay.reset()
    backfiller = for_stream(stream)
    assert backfiller is not None and backfiller.max_days == 7
    async with httpx.AsyncClient() as http:
        fetch = await fetch_with(http, replay)
        first = await run(backfiller, cold, fetch, days=3, replayed=True)
        again = await run(backfiller, cold, fetch, days=3, replayed=True)
    assert first.days_planned == 4 and first.stored > 0
    stored = await rows(cold.pool, stream)
    times = sorted({r["t"] for r in stored})
    assert len(stored) == first.stored and times[-1] - times[0] > timedelta(hours=48)
    assert times[-1] <= first.anchor
    assert again.stored == 0 and again.days_skipped == 3


def test_swpc_7_day_records_are_the_live_streams_records() -> None:
    """History answers look like live ones: the same fields, units and kinds of value as the live parsers give."""
    from adapters.upstream.noaa_swpc import NoaaKp, NoaaSolarWind, parse_kp_7_day, parse_plasma_7_day

    swpc = replay_fixtures() / "services.swpc.noaa.gov"
    kp = parse_kp_7_day((swpc / "noaa-planetary-k-index.json").read_bytes())["space.kp"]
    live_kp = NoaaKp().parse((swpc / "planetary_k_index_1m.json").read_bytes(), None)["space.kp"]
    assert len(kp) == 56 and {tuple(r.fields) for r in kp} == {tuple(live_kp[0].fields)}
    assert [r.observed_at for r in kp] == sorted(r.observed_at for r in kp)
    storm = max(kp, key=lambda r: r.fields["kp"])
    assert storm.fields == {"kp": 4.67, "kp_index": 5, "storm_level": "G1"}  # 5-, judged rounded as SWPC does

    wind = parse_plasma_7_day((swpc / "plasma-7-day.json").read_bytes())["space.solar_wind"]
    live = NoaaSolarWind().parse((swpc / "rtsw_wind_1m.json").read_bytes(), None)["space.solar_wind"]
    assert {tuple(r.fields) for r in wind} == {tuple(live[0].fields)} and wind[0].source == live[0].source
    assert all(r.fields["spacecraft"] is None for r in wind)
    assert any(r.fields["temperature_k"] is None and r.fields["speed_km_s"] is not None for r in wind)
    overlap = {r.observed_at: r.fields for r in wind}
    for record in live:  # the minutes both hold agree in value and unit
        assert {k: overlap[record.observed_at][k] for k in ("density_cm3", "speed_km_s", "temperature_k")} == {
            k: record.fields[k] for k in ("density_cm3", "speed_km_s", "temperature_k")
        }
