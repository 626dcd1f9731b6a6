"""The scheduler: pre-warming every shared source, once per interval across several workers."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from adapters import CacheTier, DataTier, Fetcher, Registry, ReplayServer, Scheduler
from adapters.scheduler import BACKOFF_FIRST_S, retry_delay_s
from adapters.sources import all_adapters
from adapters.upstream.open_meteo_grids import bands


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Any]:
    client = aioredis.from_url(redis_url)
    yield client
    await client.aclose()


def shared_groups(registry: Registry) -> dict[str, str]:
    """Fetch group → host, for every group the scheduler keeps warm (not per-point, not static)."""
    adapters = all_adapters()
    return {
        name: adapters[name].host
        for name, streams in registry.by_adapter().items()
        if not streams[0].point and streams[0].interval_s
    }


async def test_several_workers_make_one_fetch_per_source(redis: Any, replay: ReplayServer) -> None:
    replay.reset()
    registry = Registry()
    prefix = f"wgtest:{secrets.token_hex(4)}:"
    groups = shared_groups(registry)
    expected = Counter(groups.values())  # two NOAA feeds share a host: two calls there
    before = Counter(replay.hits)
    async with httpx.AsyncClient() as http:
        workers = [
            DataTier(registry, all_adapters(), CacheTier(redis, Fetcher(http, replay_url=replay.url), prefix=prefix))
            for _ in range(4)
        ]
        schedulers = [Scheduler(tier) for tier in workers]
        for scheduler in schedulers:
            scheduler.start()
        try:
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                fetched = await workers[0].cache.fetched_at(sorted(groups))
                if len(fetched) == len(groups):
                    break
                await asyncio.sleep(0.1)
            await asyncio.sleep(0.5)  # give any duplicate fetch time to land
        finally:
            for scheduler in schedulers:
                await scheduler.stop()
    assert set(fetched) == set(groups)
    made = Counter({host: replay.hits[host] - before[host] for host in expected})
    assert made == expected


def test_backoff_doubles_and_is_capped_by_the_interval() -> None:
    delays = [retry_delay_s(n, 3600) for n in range(1, 10)]
    assert delays[:4] == [BACKOFF_FIRST_S, 2 * BACKOFF_FIRST_S, 4 * BACKOFF_FIRST_S, 8 * BACKOFF_FIRST_S]
    assert max(delays) == 3600 and delays == sorted(delays)
    assert retry_delay_s(1, 10) == 10  # a one-minute source never waits longer than its own interval


async def test_finer_grids_stay_on_demand_unless_asked_and_static_data_loads_at_start(
    redis: Any, replay: ReplayServer
) -> None:
    """The static tier is read once at start; the finer grids are kept warm only at the resolutions asked for,
    each band once (the 5-degree grid is three Open-Meteo calls, the 20-degree one), the 2 and 10 not at all."""
    registry = Registry()
    groups = shared_groups(registry)
    finer = [band.name for resolution in (20, 5) for band in bands(resolution)]
    before = Counter(replay.hits)
    async with httpx.AsyncClient() as http:
        cache = CacheTier(redis, Fetcher(http, replay_url=replay.url), prefix=f"wgtest:{secrets.token_hex(4)}:")
        tier = DataTier(registry, all_adapters(), cache)
        scheduler = Scheduler(tier, grid_prewarm=(20, 5))
        assert sorted((s.adapter, r) for s, r in scheduler.grids()) == [("open-meteo.grid", 5), ("open-meteo.grid", 20)]
        scheduler.start()
        try:
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                if len(await cache.fetched_at([*groups, *finer])) == len(groups) + len(finer):
                    break
                await asyncio.sleep(0.1)
            await asyncio.sleep(0.5)
        finally:
            await scheduler.stop()
    made = Counter(replay.hits) - before
    assert set(await cache.fetched_at([*groups, *finer])) == {*groups, *finer}
    assert made["api.open-meteo.com"] == 1 + len(bands(20)) + len(bands(5)) == 5  # the 30-degree grid, 1 + 3 bands
    assert set(tier._bundled) == {"static.capitals", "static.volcanoes"}  # read once at start, before any sale
