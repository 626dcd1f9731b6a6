"""The cache tier's hygiene: bounded per-point memory, a single flight that outlives its leader, redis-py's lock."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from redis.asyncio.lock import Lock

from adapters import CacheTier, Fetcher, Point, Record, ReplayServer, Unavailable
from adapters.cache import KEY_MARKERS_MAX, MEMORY_ENTRIES_MAX
from adapters.expiring_lru import ExpiringLRU
from adapters.upstream.base import UpstreamRequest
from adapters.upstream.usgs import UsgsEarthquakes

HOST = "earthquake.usgs.gov"
PATH = "/earthquakes/feed/v1.0/summary/all_day.geojson"
USGS = UsgsEarthquakes()


@pytest.fixture(autouse=True)
def clean_replay(replay: ReplayServer) -> Iterator[None]:
    replay.reset()
    yield
    replay.reset()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Any]:
    client = aioredis.from_url(redis_url)
    yield client
    await client.aclose()


def new_prefix() -> str:
    return f"wgtest:{secrets.token_hex(4)}:"


def tier(redis: Any, http: httpx.AsyncClient, replay: ReplayServer, prefix: str, **options: Any) -> CacheTier:
    return CacheTier(redis, Fetcher(http, replay_url=replay.url), prefix=prefix, **options)


async def read(cache: CacheTier, **kwargs: Any) -> Any:
    return await cache.read(USGS, None, interval_s=300, stale_cap_s=3600, **kwargs)


async def until(condition: Any, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition never met"
        await asyncio.sleep(0.005)


def flight_tasks() -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() if t.get_name().startswith("single-flight")]


# ---- bounded per-point memory ----


class PointAdapter:
    """A point adapter answered without HTTP: even latitudes have a record, odd ones an empty result."""

    name = "test.points"
    host = "points.invalid"
    point = True
    streams = ("test.points",)

    def request(self, point: Point | None) -> UpstreamRequest:
        assert point is not None
        return UpstreamRequest(self.host, "/", (("at", point.key()),))

    def parse(self, body: bytes, point: Point | None) -> dict[str, list[Record]]:
        assert point is not None
        if round(point.lat * 10) % 2:
            return {"test.points": []}
        return {"test.points": [Record("test.points", "2026-01-01T00:00:00Z", point.lat, point.lon, {}, self.name)]}


class CountingFetcher:
    def __init__(self) -> None:
        self.calls = 0

    async def get(self, source: str, request: UpstreamRequest) -> bytes:
        self.calls += 1
        return b"{}"


async def test_per_point_markers_stay_bounded_after_many_distinct_points() -> None:
    fetcher = CountingFetcher()
    cache = CacheTier(None, fetcher)  # no Redis: memory is all there is
    adapter = PointAdapter()
    points = [Point((i % 1000) / 10, (i // 1000) / 10) for i in range(2 * KEY_MARKERS_MAX + 500)]
    for point in points:
        await cache.read(adapter, point, interval_s=300, stale_cap_s=3600)
    assert fetcher.calls == len(points)
    assert len(cache._negative) == KEY_MARKERS_MAX  # one empty marker per odd point, capped
    assert len(cache._fetched_at) == KEY_MARKERS_MAX  # one fetch time per even point, capped
    assert len(cache._memory) == MEMORY_ENTRIES_MAX
    # The newest markers are kept (no upstream call), the oldest were dropped (fetched again).
    newest_empty = next(p for p in reversed(points) if round(p.lat * 10) % 2)
    assert (await cache.read(adapter, newest_empty, interval_s=300, stale_cap_s=3600)).status == "NEG"
    assert fetcher.calls == len(points)
    assert (await cache.read(adapter, points[1], interval_s=300, stale_cap_s=3600)).status == "MISS"
    assert fetcher.calls == len(points) + 1
    assert len(cache._negative) == KEY_MARKERS_MAX


async def test_markers_past_their_time_are_dropped_when_read() -> None:
    fetcher = CountingFetcher()
    cache = CacheTier(None, fetcher, negative_empty_s=0.05)
    adapter, empty = PointAdapter(), Point(0.1, 0.0)
    assert (await cache.read(adapter, empty, interval_s=300, stale_cap_s=3600)).status == "MISS"
    assert (await cache.read(adapter, empty, interval_s=300, stale_cap_s=3600)).status == "NEG"
    assert len(cache._negative) == 1
    await asyncio.sleep(0.1)
    assert cache._negative.get(adapter.name + "@" + empty.key()) is None
    assert len(cache._negative) == 0
    assert (await cache.read(adapter, empty, interval_s=300, stale_cap_s=3600)).status == "MISS"
    assert fetcher.calls == 2


def test_expiring_lru_drops_the_least_recently_used_and_the_expired() -> None:
    lru: ExpiringLRU[int] = ExpiringLRU(3)
    for i, key in enumerate("abc"):
        lru.put(key, i, ttl_s=60)
    assert lru.get("a") == 0  # now the most recently used
    lru.put("d", 3, ttl_s=60)
    assert (lru.get("b"), lru.get("a"), lru.get("c"), lru.get("d"), len(lru)) == (None, 0, 2, 3, 3)
    lru.put("e", 4, ttl_s=-1)  # already past its time
    assert lru.get("e") is None and len(lru) == 2


# ---- the single flight outlives its leader ----


async def test_cancelling_the_leader_still_gives_its_waiters_the_value(
    redis: Any, http: httpx.AsyncClient, replay: ReplayServer
) -> None:
    cache = tier(redis, http, replay, new_prefix())
    replay.fault(HOST, "slow")
    calls = replay.hits[HOST]
    leader = asyncio.create_task(read(cache))
    await until(lambda: len(cache._inflight) == 1)
    waiters = [asyncio.create_task(read(cache)) for _ in range(3)]
    await asyncio.sleep(0.02)  # the waiters are waiting on the leader's fetch
    leader.cancel()  # its client hung up
    reads = await asyncio.gather(*waiters)
    assert [r.status for r in reads] == ["DEDUP"] * 3
    assert reads[0].entry.records["quakes.usgs"][0].fields["id"] == "ci40529976"
    with pytest.raises(asyncio.CancelledError):
        await leader
    assert replay.hits[HOST] == calls + 1
    assert len(cache._inflight) == 0 and flight_tasks() == []


async def test_a_fetch_whose_callers_all_left_still_stores_its_value(
    redis: Any, http: httpx.AsyncClient, replay: ReplayServer
) -> None:
    prefix = new_prefix()
    cache = tier(redis, http, replay, prefix)
    replay.fault(HOST, "slow")
    calls = replay.hits[HOST]
    only = asyncio.create_task(read(cache))
    await until(lambda: len(cache._inflight) == 1)
    only.cancel()
    with pytest.raises(asyncio.CancelledError):
        await only
    await until(lambda: len(cache._inflight) == 0)  # the fetch finished on its own, and its task is gone
    assert flight_tasks() == []
    assert (await read(cache)).status == "HIT"
    assert (await read(tier(redis, http, replay, prefix))).status == "REDIS-HIT"
    assert replay.hits[HOST] == calls + 1
    assert not await redis.exists(f"{prefix}lock:{USGS.name}")  # and it let go of the lock


async def test_a_failure_reaches_every_waiter_after_the_leader_left(
    redis: Any, http: httpx.AsyncClient, replay: ReplayServer
) -> None:
    cache = tier(redis, http, replay, new_prefix(), fetch_cap_s=0.3)
    replay.fault(HOST, "hang")
    calls = replay.hits[HOST]
    leader = asyncio.create_task(read(cache))
    await until(lambda: len(cache._inflight) == 1)
    waiters = [asyncio.create_task(read(cache)) for _ in range(3)]
    await asyncio.sleep(0.02)
    leader.cancel()
    outcomes = await asyncio.gather(*waiters, return_exceptions=True)
    assert all(isinstance(o, Unavailable) and "no answer within 0.3 s" in str(o) for o in outcomes), outcomes
    assert replay.hits[HOST] == calls + 1
    assert len(cache._inflight) == 0 and flight_tasks() == []


# ---- the cross-process lock is redis-py's ----


async def test_processes_share_one_fetch_through_a_redis_py_lock(
    redis: Any, http: httpx.AsyncClient, replay: ReplayServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[Any] = []
    real_lock = aioredis.Redis.lock

    def spy(self: Any, *args: Any, **kwargs: Any) -> Any:
        made.append(real_lock(self, *args, **kwargs))
        return made[-1]

    monkeypatch.setattr(aioredis.Redis, "lock", spy)
    prefix = new_prefix()
    processes = [tier(redis, http, replay, prefix) for _ in range(3)]  # separate memory, one Redis
    replay.fault(HOST, "slow")
    calls = replay.hits[HOST]
    reads = await asyncio.gather(*(read(p) for p in processes))
    assert replay.hits[HOST] == calls + 1
    assert sorted(r.status for r in reads) == ["DEDUP", "DEDUP", "MISS"]
    assert len(made) == 3 and all(isinstance(lock, Lock) for lock in made)
    assert {lock.name for lock in made} == {f"{prefix}lock:{USGS.name}"}
    assert not await redis.exists(f"{prefix}lock:{USGS.name}")


async def test_a_lock_held_past_the_cap_is_waited_out_then_fetched_without_it(
    redis: Any, http: httpx.AsyncClient, replay: ReplayServer
) -> None:
    prefix = new_prefix()
    stuck = redis.lock(f"{prefix}lock:{USGS.name}", timeout=60)  # a holder that never finishes
    assert await stuck.acquire(blocking=False)
    calls = replay.hits[HOST]
    started = time.monotonic()
    served = await read(tier(redis, http, replay, prefix, fetch_cap_s=0.3))
    assert served.status == "MISS" and time.monotonic() - started >= 0.2  # it waited (about the cap)
    assert replay.hits[HOST] == calls + 1
    assert (await read(tier(redis, http, replay, prefix))).status == "REDIS-HIT"  # stored for everyone
    assert await stuck.owned()  # someone else's lock is left alone
    await stuck.release()


async def test_a_lock_lost_during_the_fetch_keeps_the_value_and_redis(
    redis: Any, http: httpx.AsyncClient, replay: ReplayServer
) -> None:
    prefix = new_prefix()
    lock_key = f"{prefix}lock:{USGS.name}"
    cache = tier(redis, http, replay, prefix)
    replay.fault(HOST, "slow")
    fetch = asyncio.create_task(read(cache))
    await until(lambda: len(cache._inflight) == 1)
    await asyncio.sleep(0.1)
    assert await redis.exists(lock_key)
    await redis.set(lock_key, b"another-process")  # ours expired and someone else took it
    served = await fetch
    assert served.status == "MISS"
    assert cache.redis_ok  # a lost lock is not a Redis outage
    assert await redis.get(lock_key) == b"another-process"  # not ours to release
    assert (await read(tier(redis, http, replay, prefix))).status == "REDIS-HIT"


async def test_a_failure_marker_left_under_the_lock_spares_the_other_processes(
    redis: Any, http: httpx.AsyncClient, replay: ReplayServer
) -> None:
    prefix = new_prefix()
    processes = [tier(redis, http, replay, prefix) for _ in range(3)]
    replay.serve(HOST, PATH, b"<html>not json</html>")
    replay.fault(HOST, "slow")  # the others arrive while the first holds the lock
    calls = replay.hits[HOST]
    outcomes = await asyncio.gather(*(read(p) for p in processes), return_exceptions=True)
    assert all(isinstance(o, Unavailable) for o in outcomes), outcomes
    assert replay.hits[HOST] == calls + 1
