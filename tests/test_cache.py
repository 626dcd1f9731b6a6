"""The cache tier against real Redis and the replay server (the real httpx path), fault by fault."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import redis.asyncio as aioredis

from adapters import CacheTier, Fetcher, ReplayServer, Unavailable
from adapters.errors import UpstreamError
from adapters.fetcher import BODY_BYTES_MAX
from adapters.upstream.usgs import UsgsEarthquakes

from .services import TcpProxy, free_port

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


def tier(
    redis: Any, http: httpx.AsyncClient, replay: ReplayServer, prefix: str | None = None, **options: Any
) -> CacheTier:
    """A cache tier with its own Redis key prefix: one test's keys never meet another's."""
    return CacheTier(
        redis, Fetcher(http, replay_url=replay.url), prefix=prefix or f"wgtest:{secrets.token_hex(4)}:", **options
    )


async def read(cache: CacheTier, interval_s: float = 300, stale_cap_s: float = 3600, **kwargs: Any) -> Any:
    return await cache.read(USGS, None, interval_s=interval_s, stale_cap_s=stale_cap_s, **kwargs)


async def test_fresh_values_come_from_memory_then_redis(
    redis: Any, http: httpx.AsyncClient, replay: ReplayServer
) -> None:
    prefix = f"wgtest:{secrets.token_hex(4)}:"
    first, second = tier(redis, http, replay, prefix), tier(redis, http, replay, prefix)  # two processes
    calls = replay.hits[HOST]
    miss = await read(first)
    assert miss.status == "MISS"
    assert miss.entry.records["quakes.usgs"][0].fields["id"] == "ci40529976"
    assert (await read(first)).status == "HIT"
    shared = await read(second)
    assert shared.status == "REDIS-HIT" and shared.entry.fetched_at_unix_s == miss.entry.fetched_at_unix_s
    assert replay.hits[HOST] == calls + 1


async def test_fifty_concurrent_misses_make_one_upstream_call(
    redis: Any, http: httpx.AsyncClient, replay: ReplayServer
) -> None:
    cache = tier(redis, http, replay)
    replay.fault(HOST, "slow")  # the fetch takes a while: everyone else arrives while it is in flight
    calls = replay.hits[HOST]
    reads = await asyncio.gather(*(read(cache) for _ in range(50)))
    assert replay.hits[HOST] == calls + 1
    statuses = sorted(r.status for r in reads)
    assert statuses == ["DEDUP"] * 49 + ["MISS"]
    assert len({r.entry.fetched_at_unix_s for r in reads}) == 1


async def test_concurrent_misses_across_processes_make_one_upstream_call(
    redis: Any, http: httpx.AsyncClient, replay: ReplayServer
) -> None:
    prefix = f"wgtest:{secrets.token_hex(4)}:"
    processes = [tier(redis, http, replay, prefix) for _ in range(4)]  # separate memory, shared Redis
    replay.fault(HOST, "slow")
    calls = replay.hits[HOST]
    reads = await asyncio.gather(*(read(p) for p in processes for _ in range(5)))
    assert replay.hits[HOST] == calls + 1
    assert sorted({r.status for r in reads}) == ["DEDUP", "MISS"]


@pytest.mark.parametrize("fault", ["status_500", "hang", "html", "truncated"])
async def test_upstream_failure_serves_the_last_good_value_stale(
    fault: str, redis: Any, http: httpx.AsyncClient, replay: ReplayServer
) -> None:
    cache = tier(redis, http, replay, fetch_cap_s=0.5)
    good = await read(cache, interval_s=0.05)
    await asyncio.sleep(0.1)  # older than its interval: the next read goes upstream
    replay.fault(HOST, fault)
    calls = replay.hits[HOST]
    stale = await read(cache, interval_s=0.05)
    assert replay.hits[HOST] == calls + 1
    assert stale.status == "STALE"
    assert stale.entry.fetched_at_unix_s == good.entry.fetched_at_unix_s
    assert stale.entry.records == good.entry.records
    status = await cache.source_status(USGS.name)
    assert status.last_error and status.consecutive_failures == 1


async def test_failure_with_nothing_cached_is_unavailable(
    redis: Any, http: httpx.AsyncClient, replay: ReplayServer
) -> None:
    replay.fault(HOST, "status_500")
    with pytest.raises(Unavailable, match="HTTP 500"):
        await read(tier(redis, http, replay))


async def test_stale_cap_bounds_stale_on_error(redis: Any, http: httpx.AsyncClient, replay: ReplayServer) -> None:
    cache = tier(redis, http, replay)
    await read(cache, interval_s=0.05, stale_cap_s=0.2)
    await asyncio.sleep(0.3)  # older than the stale cap: too old to sell even as stale
    replay.fault(HOST, "status_500")
    with pytest.raises(Unavailable):
        await read(cache, interval_s=0.05, stale_cap_s=0.2)


async def test_errors_are_negatively_cached(redis: Any, http: httpx.AsyncClient, replay: ReplayServer) -> None:
    cache = tier(redis, http, replay, breaker_failures=99)
    await read(cache, interval_s=0.05)
    await asyncio.sleep(0.1)
    replay.fault(HOST, "status_500")
    calls = replay.hits[HOST]
    for _ in range(5):  # within 30 s of a failure: no new attempt, the stale value instead
        assert (await read(cache, interval_s=0.05)).status == "STALE"
    assert replay.hits[HOST] == calls + 1


async def test_empty_results_are_negatively_cached(redis: Any, http: httpx.AsyncClient, replay: ReplayServer) -> None:
    replay.serve(HOST, PATH, b'{"type": "FeatureCollection", "features": []}')
    prefix = f"wgtest:{secrets.token_hex(4)}:"
    cache = tier(redis, http, replay, prefix)
    calls = replay.hits[HOST]
    first = await read(cache)
    assert first.status == "MISS" and first.entry.records == {"quakes.usgs": ()}
    again = await read(tier(redis, http, replay, prefix))  # another process, through Redis
    assert again.status == "NEG" and again.entry.records == {"quakes.usgs": ()}
    assert replay.hits[HOST] == calls + 1


async def test_two_failures_open_the_circuit_for_every_process(
    redis: Any, http: httpx.AsyncClient, replay: ReplayServer
) -> None:
    prefix = f"wgtest:{secrets.token_hex(4)}:"
    cache = tier(redis, http, replay, prefix, negative_error_s=0.01)
    good = await read(cache, interval_s=0.01)
    replay.fault(HOST, "status_500")
    for _ in range(2):
        await asyncio.sleep(0.05)
        assert (await read(cache, interval_s=0.01)).status == "STALE"
    calls = replay.hits[HOST]
    other = tier(redis, http, replay, prefix, negative_error_s=0.01)  # a second process, same Redis
    for process in (cache, other):
        await asyncio.sleep(0.05)
        served = await read(process, interval_s=0.01)
        assert served.status == "STALE" and served.entry.records == good.entry.records
        assert (await process.source_status(USGS.name)).circuit(time.time()) == "open"
    assert replay.hits[HOST] == calls  # while open, nobody calls upstream


async def test_an_open_circuit_closes_after_a_success(
    redis: Any, http: httpx.AsyncClient, replay: ReplayServer
) -> None:
    cache = tier(redis, http, replay, negative_error_s=0.01, breaker_open_s=0.2)
    replay.fault(HOST, "status_500")
    for _ in range(2):
        with pytest.raises(Unavailable):
            await read(cache)
        await asyncio.sleep(0.05)
    with pytest.raises(Unavailable, match="circuit is open"):
        await read(cache)
    replay.reset()
    await asyncio.sleep(0.25)  # the circuit's time is up: one trial call is let through
    assert (await read(cache)).status == "MISS"
    assert (await cache.source_status(USGS.name)).circuit(time.time()) == "closed"


async def test_max_age_forces_a_fresher_read(redis: Any, http: httpx.AsyncClient, replay: ReplayServer) -> None:
    cache = tier(redis, http, replay)
    first = await read(cache)
    await asyncio.sleep(0.1)
    assert (await read(cache, max_age_s=60)).status == "HIT"
    refreshed = await read(cache, max_age_s=0.05)
    assert refreshed.status == "MISS" and refreshed.entry.fetched_at_unix_s > first.entry.fetched_at_unix_s


async def test_without_redis_reads_still_work_from_memory(
    redis_url: str, http: httpx.AsyncClient, replay: ReplayServer
) -> None:
    parts = urlsplit(redis_url)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 6379).start()
    client = aioredis.from_url(
        f"redis://127.0.0.1:{proxy.port}{parts.path}", socket_timeout=1, socket_connect_timeout=1
    )
    try:
        cache = tier(client, http, replay)
        assert (await read(cache, interval_s=0.2)).status == "MISS"
        proxy.down()  # Redis is gone
        assert (await read(cache, interval_s=0.2)).status == "HIT"  # fresh in memory: Redis is not asked
        await asyncio.sleep(0.25)
        refetched = await read(cache, interval_s=0.2)  # expired: fetched again, with no Redis at all
        assert refetched.status == "MISS" and refetched.entry.records["quakes.usgs"]
        assert not cache.redis_ok  # it noticed, and stops asking Redis for a while
        replay.fault(HOST, "status_500")
        await asyncio.sleep(0.25)
        assert (await read(cache, interval_s=0.2)).status == "STALE"  # stale-on-error from memory
    finally:
        await client.aclose()
        proxy.stop()


async def test_the_fetcher_refuses_runaway_bodies_and_dead_hosts(http: httpx.AsyncClient, replay: ReplayServer) -> None:
    request = USGS.request(None)
    replay.serve(HOST, PATH, b"[" + b"0," * (BODY_BYTES_MAX // 2) + b"0]")
    with pytest.raises(UpstreamError) as too_large:
        await Fetcher(http, replay_url=replay.url).get(USGS.name, request)
    assert too_large.value.kind == "too_large"
    with pytest.raises(UpstreamError) as dead:
        await Fetcher(http, replay_url=f"http://127.0.0.1:{free_port()}").get(USGS.name, request)
    assert dead.value.kind == "unreachable"
    assert Fetcher(http).url(request) == f"https://{HOST}{PATH}"  # live: the adapter's fixed host, over TLS


async def test_a_corrupt_value_in_redis_costs_a_refetch_not_an_error(
    redis: Any, http: httpx.AsyncClient, replay: ReplayServer
) -> None:
    prefix = f"wgtest:{secrets.token_hex(4)}:"
    await redis.set(f"{prefix}cache:{USGS.name}", b'{"fetched_at": "yesterday", "records": 7}')
    await redis.set(f"{prefix}neg:{USGS.name}", b"error:not-a-time")
    calls = replay.hits[HOST]
    served = await read(tier(redis, http, replay, prefix))
    assert served.status == "MISS" and served.entry.records["quakes.usgs"][0].fields["id"] == "ci40529976"
    assert replay.hits[HOST] == calls + 1
    assert (await read(tier(redis, http, replay, prefix))).status == "REDIS-HIT"  # overwritten with a good value
