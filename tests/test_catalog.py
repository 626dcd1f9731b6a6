"""The catalog served offline: every stream from the replay server, one upstream call per parent fetch however
many children read it (counted on the replay server), the finer grids read in bands and sold by size."""

from __future__ import annotations

import asyncio
import secrets
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from adapters import CacheTier, DataTier, Fetcher, Registry, ReplayServer, Stream, recorded_points
from adapters.sources import all_adapters
from adapters.upstream.base import Point
from adapters.upstream.open_meteo_grids import bands
from payments.devnet.evm import EvmDevnet

from .chain import new_payer, pay_for, unb64
from .conftest import Gateway

GRID = "/v1/streams/weather.grid.temperature"


@pytest.fixture
async def tier(redis_url: str, replay: ReplayServer) -> AsyncIterator[DataTier]:
    """A data tier of its own (nothing another test cached is a hit here) reading the replay server."""
    redis = aioredis.from_url(redis_url)
    async with httpx.AsyncClient() as http:
        cache = CacheTier(redis, Fetcher(http, replay_url=replay.url), prefix=f"wgtest:{secrets.token_hex(4)}:")
        yield DataTier(Registry(), all_adapters(), cache)
    await redis.aclose()


async def read_somewhere(tier: DataTier, stream: Stream) -> int:
    """How many records the stream answers offline: a point stream at the first recorded point that has it."""
    if not stream.point:
        return len((await tier.read(stream)).records)
    for point in recorded_points(stream.id) or []:
        found = len((await tier.read(stream, point=point)).records)
        if found:
            return found
    return 0


async def test_replay_serves_every_stream_offline(tier: DataTier, gateway: Gateway) -> None:
    registry = Registry()
    served = {stream.id: await read_somewhere(tier, stream) for stream in registry.all()}
    assert len(served) >= 40 and all(served.values()), [s for s, n in served.items() if not n]

    catalog = (await gateway.get("/v1/streams")).json()["streams"]
    assert len(catalog) == len(served) >= 40
    parents = {s["id"]: s["parent"] for s in catalog}
    assert parents["weather.wind"] == parents["weather.current"] == "open-meteo.current"
    assert {parents[f"buoys.{c}"] for c in ("wind", "waves", "pressure")} == {"ndbc.latest-obs"}
    assert parents["quakes.usgs"] is None and parents["storms.tropical"] is None  # a fetch of its own
    assert sum(1 for p in parents.values() if p) >= 25
    grid = next(s for s in catalog if s["id"] == "weather.grid.wind")
    assert grid["resolutions_deg"] == [2, 5, 10, 20]

    sources = (await gateway.get("/v1/attribution")).json()["sources"]
    hosts = {s["upstream"] for s in sources} - {"bundled"}
    assert len(hosts) >= 14, sorted(hosts)
    assert all(s["license"] and s["attribution"] for s in sources)


async def test_one_upstream_call_per_parent_however_many_children(tier: DataTier, replay: ReplayServer) -> None:
    registry = Registry()
    shared = {g: ss for g, ss in registry.by_adapter().items() if len(ss) > 1 and not ss[0].point}
    assert len(shared) == 4  # the grid, NDBC, USGS water, carbon intensity: each feeding several streams
    adapters = all_adapters()
    before = Counter(replay.hits)
    children = [s for streams in shared.values() for s in streams]
    await asyncio.gather(*(tier.read(s) for s in children), *(tier.read(s) for s in children))  # all at once, twice
    made = Counter(replay.hits) - before
    assert made == Counter(adapters[group].host for group in shared), made

    # a point fetch is shared the same way, per 0.1-degree cell: six streams at Moscow, one call
    moscow = Point(55.75, 37.625)
    weather = [s for s in registry.all() if s.adapter == "open-meteo.current"]
    before = Counter(replay.hits)
    reads = await asyncio.gather(*(tier.read(s, point=moscow) for s in weather))
    assert Counter(replay.hits) - before == Counter({"api.open-meteo.com": 1}) and len(weather) == 6
    assert {r.stream.id: len(r.records) for r in reads}["weather.conditions"] == 0  # not in Moscow's answer
    assert sum(1 for r in reads if r.records) == 5


async def test_a_finer_grid_is_read_in_bands_and_shared_by_the_grid_streams(
    tier: DataTier, replay: ReplayServer
) -> None:
    registry = Registry()
    temperature, wind = registry.get("weather.grid.temperature"), registry.get("weather.grid.wind")
    assert temperature is not None and wind is not None
    before = Counter(replay.hits)
    read = await tier.read(temperature, resolution=2)
    assert replay.hits["api.open-meteo.com"] - before["api.open-meteo.com"] == len(bands(2)) == 17
    assert {(r.lat, r.lon) for r in read.records} >= {(41.0, 1.0), (45.0, 5.0), (-23.0, -47.0)}
    assert all(r.stream == "weather.grid.temperature" and "temperature_c" in r.fields for r in read.records)
    before = Counter(replay.hits)
    again = await tier.read(wind, resolution=2)  # the same bands: no call
    assert Counter(replay.hits) == before and len(again.records) == len(read.records) and again.cache == "HIT"
    ten = await tier.read(wind, resolution=10)
    assert replay.hits["api.open-meteo.com"] - before["api.open-meteo.com"] == 1
    assert {(r.lat, r.lon) for r in ten.records} == {(45.0, 5.0), (35.0, -5.0), (-5.0, 25.0), (25.0, 55.0)}
    with pytest.raises(ValueError):
        await tier.read(temperature, resolution=3)


async def test_a_finer_grid_is_quoted_by_size_and_sold(gateway: Gateway, devnet: EvmDevnet) -> None:
    refused = await gateway.get(GRID, params={"resolution": "3"})
    assert refused.status_code == 400 and "2, 5, 10, 20" in refused.json()["message"]
    assert "payment-required" not in refused.headers
    elsewhere = await gateway.get("/v1/streams/quakes.usgs", params={"resolution": "10"})
    assert elsewhere.status_code == 400 and "resolution" in elsewhere.json()["message"]

    base = unb64((await gateway.get(GRID)).headers["payment-required"])["accepts"][0]["amount"]
    query = {"resolution": "2", "bbox": "-10,35,30,60", "limit": "1000"}  # 13 rows x 20 columns = 260 cells
    quote = await gateway.get(GRID, params=query)
    required = unb64(quote.headers["payment-required"])
    assert {o["amount"] for o in required["accepts"]} == {str(3 * int(base))}
    assert "up to 260 cells" in required["resource"]["description"]
    [offer] = [o for o in required["accepts"] if o["network"].startswith("eip155:")]
    paid = await gateway.get(
        GRID, params=query, headers={"PAYMENT-SIGNATURE": pay_for(new_payer(devnet), devnet, offer)}
    )
    assert paid.status_code == 200, paid.text
    answer: dict[str, Any] = paid.json()
    assert answer["resolution_deg"] == 2 and answer["count"] == len(answer["records"]) >= 3
    assert all(-10 <= r["lon"] <= 30 and 35 <= r["lat"] <= 60 for r in answer["records"])
    assert {(r["lat"], r["lon"]) for r in answer["records"]} >= {(41.0, 1.0), (39.0, -3.0), (51.0, 7.0)}


async def test_a_field_split_point_child_is_sold_at_a_recorded_point(gateway: Gateway, devnet: EvmDevnet) -> None:
    query = {"lat": "45.54", "lon": "-3.04"}  # the Bay of Biscay recording
    quote = await gateway.get("/v1/streams/marine.waves", params=query)
    [offer] = [o for o in unb64(quote.headers["payment-required"])["accepts"] if o["network"].startswith("eip155:")]
    key = new_payer(devnet)
    paid = await gateway.get(
        "/v1/streams/marine.waves", params=query, headers={"PAYMENT-SIGNATURE": pay_for(key, devnet, offer)}
    )
    assert paid.status_code == 200, paid.text
    (record,) = paid.json()["records"]
    assert record["fields"] == {"wave_height_m": 3.12, "wave_direction_deg": 291.0, "wave_period_s": 10.35}
    assert paid.json()["license"] == "CC-BY-4.0" and "Open-Meteo" in paid.json()["attribution"]
