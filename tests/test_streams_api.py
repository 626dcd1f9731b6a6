"""API v1 over the data tier: the free catalog, search, attribution and health; the paid reads, their
freshness and their 503s; validation before payment; sharing; the registry driving everything.

Upstreams are the replay server's recorded payloads over real HTTP; chains are the session devnets.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import secrets
import time
from collections.abc import Iterator
from typing import Any

import asyncpg
import httpx
import pytest
import redis.asyncio as aioredis
from eth_account import Account
from x402 import x402Client
from x402.http.clients import x402HttpxClient
from x402.mechanisms.evm import EthAccountSigner
from x402.mechanisms.evm.exact.register import register_exact_evm_client

from adapters import STREAMS, CacheTier, Fetcher, Record, Registry, ReplayServer, Stream, StreamType, Unavailable
from adapters.sources import all_adapters
from adapters.upstream.base import Point, UpstreamRequest, load_json
from adapters.upstream.iss import IssPosition
from app.runtime.settings import Settings
from payments.devnet.evm import EvmDevnet

from .chain import new_payer, pay_for, receipt, unb64, usdc_balance
from .conftest import Gateway, running_gateway, with_settings

QUAKES = "/v1/streams/quakes.usgs"
QUAKES_STREAM = next(s for s in STREAMS if s.id == "quakes.usgs")
USGS_HOST = "earthquake.usgs.gov"
ISS_HOST = "api.wheretheiss.at"
CLOVIS = (36.83, -119.69)  # a recorded weather point, ~387 km from the recorded earthquake ci40529976
MOSCOW = "lat=55.75&lon=37.62"  # a recorded weather point


@pytest.fixture(autouse=True)
def clean_replay(replay: ReplayServer) -> Iterator[None]:
    replay.reset()
    yield
    replay.reset()


def isolated(settings: Settings, **changes: Any) -> Settings:
    """Settings with a cache of their own: nothing another test fetched is a hit here."""
    return with_settings(settings, cache_prefix=f"wgtest:{secrets.token_hex(4)}:", **changes)


async def paid_get(gateway: Gateway, devnet: EvmDevnet, key: str, path: str) -> Any:
    return await gateway.get(path, headers={"PAYMENT-SIGNATURE": pay_for(key, devnet, await gateway.offer(path))})


async def rows_of(pool: asyncpg.Pool, payer_key: str) -> list[dict[str, Any]]:
    payer = Account.from_key(payer_key).address.lower()
    return [dict(r) for r in await pool.fetch("SELECT * FROM payments WHERE payer = $1 ORDER BY id", payer)]


# ---- free routes ----


async def test_catalog_lists_every_shared_stream_with_price_type_interval_and_freshness(gateway: Gateway) -> None:
    catalog = (await gateway.get("/v1/streams")).json()
    by_id = {s["id"]: s for s in catalog["streams"]}
    assert set(by_id) == {s.id for s in STREAMS} and catalog["count"] == len(STREAMS)
    quakes = by_id["quakes.usgs"]
    assert quakes["type"] == "realtime" and quakes["interval_s"] == 300 and quakes["category"] == "hazards"
    assert quakes["price"]["tier"] == "standard" and quakes["price"]["amount_atomic"] == "2000"
    assert quakes["price"]["usdc"] == "0.002"
    assert len(quakes["price"]["networks"]) == 2  # Base and Solana, both configured
    assert quakes["freshness"] in {"unknown", "fresh", "aging", "stale", "critical"}
    assert by_id["static.capitals"]["freshness"] == "static" and by_id["static.capitals"]["interval_s"] is None
    assert by_id["weather.current"]["point"] is True and by_id["weather.current"]["freshness"] == "per_point"
    assert {by_id[f"weather.grid.{f}"]["type"] for f in ("temperature", "wind", "precipitation")} == {"grid"}

    space = (await gateway.get("/v1/streams?category=space")).json()
    assert {s["id"] for s in space["streams"]} == {"iss.position", "space.kp", "space.solar_wind"}
    unknown = await gateway.get("/v1/streams?category=gossip")
    assert unknown.status_code == 404
    assert unknown.json()["error"] == "unknown_category" and "hazards" in unknown.json()["message"]


async def test_search_matches_id_name_and_description(gateway: Gateway) -> None:
    by_name = (await gateway.get("/v1/streams/search", params={"q": "Space Station"})).json()
    assert [s["id"] for s in by_name["streams"]] == ["iss.position"]
    by_description = {s["id"] for s in (await gateway.get("/v1/streams/search?q=tsunami")).json()["streams"]}
    assert by_description == {"quakes.usgs"}
    by_id = {s["id"] for s in (await gateway.get("/v1/streams/search?q=weather.grid")).json()["streams"]}
    assert by_id == {"weather.grid.temperature", "weather.grid.wind", "weather.grid.precipitation"}
    assert (await gateway.get("/v1/streams/search?q=zzzz")).json()["count"] == 0
    empty = await gateway.get("/v1/streams/search?q=")
    assert empty.status_code == 400 and empty.json()["error"] == "invalid_query"


async def test_attribution_names_every_source_and_license(gateway: Gateway) -> None:
    sources = {s["stream"]: s for s in (await gateway.get("/v1/attribution")).json()["sources"]}
    assert set(sources) == {s.id for s in STREAMS}
    assert sources["weather.current"]["attribution"].startswith("Weather data by Open-Meteo.com")
    assert sources["quakes.usgs"]["upstream"] == USGS_HOST and "Public domain" in sources["quakes.usgs"]["license"]


async def test_health_reports_sources_circuits_and_replay_mode(
    settings: Settings, devnet: EvmDevnet, replay: ReplayServer
) -> None:
    mine = isolated(settings)
    with running_gateway(mine) as gateway:
        before = (await gateway.get("/v1/health")).json()
        assert before["version"] and before["uptime_s"] >= 0
        assert before["upstreams"] == "replay (recorded payloads)"
        assert before["streams"] == before["shared"] == len(STREAMS)
        assert before["sources_fetched"] == 0
        sources = {s["source"]: s for s in before["sources"]}
        assert set(sources) == {s.adapter for s in STREAMS if s.adapter}
        grid = ["weather.grid.temperature", "weather.grid.wind", "weather.grid.precipitation"]
        assert sources["open-meteo.grid"]["streams"] == grid  # one fetch, split into a stream per field
        assert {s["circuit"] for s in sources.values()} == {"closed"}

        key = new_payer(devnet)
        assert (await paid_get(gateway, devnet, key, QUAKES)).status_code == 200
        replay.fault(ISS_HOST, "status_500")
        calls = replay.hits[ISS_HOST]
        for reason in ("answered HTTP 500", "s ago (answered HTTP 500)"):  # the second is negatively cached
            answer = await paid_get(gateway, devnet, key, "/v1/streams/iss.position")
            assert answer.status_code == 503 and reason in answer.json()["reason"]
        assert replay.hits[ISS_HOST] == calls + 1

        after = (await gateway.get("/v1/health")).json()
        by_source = {s["source"]: s for s in after["sources"]}
        assert by_source["usgs.earthquakes"]["fetched_at"] and by_source["usgs.earthquakes"]["freshness"] == "fresh"
        assert by_source["iss.position"]["circuit"] == "closed"
        assert "HTTP 500" in by_source["iss.position"]["last_error"]
        assert after["sources_fetched"] == 1

        # Another process whose errors are cached briefly fails too: the second failure opens the circuit
        # for everyone, through Redis.
        redis = aioredis.from_url(mine.redis_url)
        try:
            async with httpx.AsyncClient() as http:
                fetcher = Fetcher(http, replay_url=replay.url)
                other = CacheTier(redis, fetcher, prefix=mine.cache_prefix, negative_error_s=0.01)
                with pytest.raises(Unavailable, match="HTTP 500"):
                    await other.read(IssPosition(), None, interval_s=60, stale_cap_s=600)
        finally:
            await redis.aclose()
        opened = {s["source"]: s for s in (await gateway.get("/v1/health")).json()["sources"]}
        assert opened["iss.position"]["circuit"] == "open"
        calls = replay.hits[ISS_HOST]
        await asyncio.sleep(0.1)
        answer = await paid_get(gateway, devnet, key, "/v1/streams/iss.position")
        assert answer.status_code == 503 and replay.hits[ISS_HOST] == calls


# ---- paid reads ----


async def test_paid_read_carries_freshness_and_x_cache(settings: Settings, devnet: EvmDevnet) -> None:
    with running_gateway(isolated(settings)) as gateway:
        key = new_payer(devnet)
        first = await paid_get(gateway, devnet, key, QUAKES + "?lat=34&lon=-117.2&radius_km=50")
        assert first.status_code == 200, first.text
        assert first.headers["x-cache"] == "MISS"
        body = first.json()
        assert body["source"] == "replay" and body["observed_at"] == "2023-08-05T01:29:30Z"
        # age is measured from when the quake happened, not from the fetch: a 2023 record is stale
        assert body["stale"] is True and body["freshness"] == "stale" and body["freshness_budget_s"] == 3600
        assert body["age_seconds"] == pytest.approx(time.time() - 1691198970, abs=60)
        assert body["fetched_at"].endswith("Z")
        [quake] = body["records"]
        assert quake["fields"]["id"] == "ci40529976" and quake["fields"]["magnitude"] == 0.9
        assert quake["lat"] == pytest.approx(33.9893333) and quake["observed_at"] == "2023-08-05T01:29:30Z"
        assert body["attribution"].startswith("U.S. Geological Survey")

        second = await paid_get(gateway, devnet, key, QUAKES + "?bbox=0,0,10,10")
        assert second.status_code == 200 and second.headers["x-cache"] == "HIT"
        assert second.json()["count"] == 0 and second.json()["fetched_at"] == body["fetched_at"]


@pytest.mark.parametrize("fault", ["status_500", "hang", "html", "truncated"])
async def test_an_upstream_fault_sells_the_last_good_value_marked_stale(
    fault: str, settings: Settings, devnet: EvmDevnet, replay: ReplayServer
) -> None:
    quick = dataclasses.replace(QUAKES_STREAM, interval_s=1)  # old after a second, so the next read refetches
    registry = Registry([quick if s.id == quick.id else s for s in STREAMS])
    with running_gateway(isolated(settings, upstream_timeout_s=0.5), registry=registry) as gateway:
        key = new_payer(devnet)
        good = await paid_get(gateway, devnet, key, QUAKES)
        assert good.status_code == 200 and good.headers["x-cache"] == "MISS"
        replay.fault(USGS_HOST, fault)
        await asyncio.sleep(1.2)
        served = await paid_get(gateway, devnet, key, QUAKES)
        assert served.status_code == 200, served.text
        assert served.headers["x-cache"] == "STALE"
        body = served.json()
        assert body["stale"] is True and body["fetched_at"] == good.json()["fetched_at"]
        assert body["records"] == good.json()["records"] and body["observed_at"] == good.json()["observed_at"]
        assert unb64(served.headers["payment-response"])["success"] is True  # honest data, marked stale, is sold


async def test_max_age_older_than_the_data_is_503_and_never_settled(
    settings: Settings, devnet: EvmDevnet, replay: ReplayServer, pool: asyncpg.Pool
) -> None:
    with running_gateway(isolated(settings)) as gateway:
        key = new_payer(devnet)
        payer = Account.from_key(key).address
        assert (await paid_get(gateway, devnet, key, QUAKES)).status_code == 200
        replay.fault(USGS_HOST, "status_500")  # nothing fresher can be had
        await asyncio.sleep(1.2)
        pay_to_before = usdc_balance(devnet, devnet.pay_to)

        refused = await paid_get(gateway, devnet, key, QUAKES + "?max_age=1")

        assert refused.status_code == 503, refused.text
        assert refused.json()["error"] == "stream_unavailable" and "max_age" in refused.json()["reason"]
        assert "payment-response" not in refused.headers
        assert usdc_balance(devnet, payer) == 10_000_000 - 2000  # only the first read was charged
        assert usdc_balance(devnet, devnet.pay_to) == pay_to_before
        settled, released = await rows_of(pool, key)
        assert settled["state"] == "settled" and receipt(devnet, settled["tx_hash"]) is not None
        assert released["state"] == "released" and released["tx_hash"] is None
        assert released["error_reason"] == "handler_status_503"

        # Without the bound, the cached value (well within its interval) is sold.
        served = await paid_get(gateway, devnet, key, QUAKES)
        assert served.status_code == 200 and served.headers["x-cache"] == "HIT" and served.json()["age_seconds"] >= 1


async def test_a_point_stream_is_read_at_the_point(settings: Settings, devnet: EvmDevnet) -> None:
    with running_gateway(isolated(settings)) as gateway:
        key = new_payer(devnet)
        answer = await paid_get(gateway, devnet, key, "/v1/streams/weather.current?lat=55.75&lon=37.62")
        assert answer.status_code == 200, answer.text
        [record] = answer.json()["records"]
        assert record["stream"] == "weather.current" and isinstance(record["fields"]["temperature_c"], float)
        assert answer.headers["x-cache"] == "MISS"
        nearby = await paid_get(gateway, devnet, key, "/v1/streams/weather.current?lat=55.76&lon=37.64")
        assert nearby.headers["x-cache"] == "HIT"  # the same 0.1-degree cell shares one upstream call


async def test_world_through_the_official_client_returns_the_combined_picture(
    settings: Settings, devnet: EvmDevnet, pool: asyncpg.Pool
) -> None:
    key = new_payer(devnet)
    client = x402Client()
    register_exact_evm_client(client, EthAccountSigner(Account.from_key(key)))
    lat, lon = CLOVIS
    with running_gateway(isolated(settings)) as gateway:
        async with x402HttpxClient(client) as http:
            answer = await http.get(f"{gateway.url}/v1/world", params={"lat": lat, "lon": lon, "radius_km": 500})

    assert answer.status_code == 200, answer.text
    world = answer.json()
    assert (world["lat"], world["lon"], world["radius_km"], world["source"]) == (lat, lon, 500, "replay")
    sections = ("weather", "earthquakes", "disasters", "natural_events", "iss", "space_weather")
    for name in sections:
        section = world[name]
        assert section["available"] is True, (name, section)
        assert section["fetched_at"].endswith("Z") and section["stale"] is True and section["age_seconds"] > 0
    assert world["weather"]["record"]["fields"]["temperature_c"] == 7.7
    # air quality is recorded only at Delhi: that part says so, and no upstream call is made for it
    assert world["air_quality"]["available"] is False and "28.6,77.2" in world["air_quality"]["reason"]
    [quake] = world["earthquakes"]["records"]
    assert quake["fields"]["id"] == "ci40529976" and 300 < quake["distance_km"] < 400
    assert world["iss"]["distance_km"] > 0 and world["iss"]["record"]["stream"] == "iss.position"
    assert world["space_weather"]["record"]["stream"] == "space.kp"

    settle = json.loads(base64.b64decode(answer.headers["payment-response"]))
    assert settle["success"] is True
    [row] = await rows_of(pool, key)
    assert row["state"] == "settled" and row["amount_atomic"] == 10_000 and row["tx_hash"] == settle["transaction"]


async def test_world_without_weather_is_503_and_not_charged(
    settings: Settings, devnet: EvmDevnet, replay: ReplayServer, pool: asyncpg.Pool
) -> None:
    replay.fault("api.open-meteo.com", "status_500")
    with running_gateway(isolated(settings)) as gateway:
        key = new_payer(devnet)
        answer = await paid_get(gateway, devnet, key, f"/v1/world?{MOSCOW}")
    assert answer.status_code == 503 and answer.json()["stream"] == "weather.current"
    assert usdc_balance(devnet, Account.from_key(key).address) == 10_000_000
    [row] = await rows_of(pool, key)
    assert row["state"] == "released" and row["tx_hash"] is None


# ---- validation, before any payment ----

MALFORMED = [
    (QUAKES + "?lat=91&lon=0", 400),
    (QUAKES + "?lat=10", 400),
    (QUAKES + "?lat=0&lon=0&radius_km=-5", 400),
    (QUAKES + "?bbox=1,2,3", 400),
    (QUAKES + "?bbox=0,50,10,40", 400),
    (QUAKES + "?limit=0", 400),
    (QUAKES + "?limit=abc", 400),
    (QUAKES + "?max_age=-1", 400),
    (QUAKES + "?max_age=0", 400),
    (QUAKES + "?lat=nan&lon=0", 400),
    ("/v1/streams/weather.current", 400),
    ("/v1/streams/weather.current?lat=1&lon=2&bbox=0,0,1,1", 400),
    ("/v1/world", 400),
    ("/v1/world?lat=0&lon=0&radius_km=99999", 400),
    ("/v1/streams/no.such.stream", 404),
]


@pytest.mark.parametrize(("path", "status"), MALFORMED)
async def test_malformed_requests_are_refused_before_any_payment(
    path: str, status: int, gateway: Gateway, devnet: EvmDevnet, pool: asyncpg.Pool
) -> None:
    key = new_payer(devnet)
    unpaid = await gateway.get(path)
    assert unpaid.status_code == status, unpaid.text
    assert "payment-required" not in unpaid.headers
    assert unpaid.json()["error"] in {"invalid_query", "unknown_stream"} and unpaid.json()["message"]
    # A valid payment for the same route's offer changes nothing: it is never claimed, never charged.
    offer = await gateway.offer(QUAKES if path.startswith(QUAKES) or "no.such" in path else f"/v1/world?{MOSCOW}")
    paid = await gateway.get(path, headers={"PAYMENT-SIGNATURE": pay_for(key, devnet, offer)})
    assert paid.status_code == status
    assert await rows_of(pool, key) == []
    assert usdc_balance(devnet, Account.from_key(key).address) == 10_000_000


# ---- sharing ----


async def test_unshared_streams_are_invisible_and_maintenance_is_not_sold(
    settings: Settings, devnet: EvmDevnet, pool: asyncpg.Pool
) -> None:
    sharing = {"iss.position": "not_shared", "space.kp": "maintenance"}
    with running_gateway(isolated(settings, stream_sharing=sharing)) as gateway:
        catalog = {s["id"]: s for s in (await gateway.get("/v1/streams")).json()["streams"]}
        assert "iss.position" not in catalog and catalog["space.kp"]["sharing"] == "maintenance"
        assert (await gateway.get("/v1/streams/search?q=space station")).json()["count"] == 0
        attributed = {s["stream"] for s in (await gateway.get("/v1/attribution")).json()["sources"]}
        assert "iss.position" not in attributed
        health = (await gateway.get("/v1/health")).json()
        assert "iss.position" not in {s["source"] for s in health["sources"]}
        assert health["streams"] == len(STREAMS) - 1 and health["shared"] == len(STREAMS) - 2

        key = new_payer(devnet)
        hidden = await gateway.get("/v1/streams/iss.position")
        assert hidden.status_code == 404 and "payment-required" not in hidden.headers
        kp = await gateway.get("/v1/streams/space.kp")
        assert kp.status_code == 503 and kp.json()["error"] == "stream_in_maintenance"
        assert "payment-required" not in kp.headers
        offer = await gateway.offer(QUAKES)  # a valid payment; neither path may take it
        for path in ("/v1/streams/iss.position", "/v1/streams/space.kp"):
            tried = await gateway.get(path, headers={"PAYMENT-SIGNATURE": pay_for(key, devnet, offer)})
            assert tried.status_code in {404, 503}
        assert await rows_of(pool, key) == []

        world = await paid_get(gateway, devnet, key, f"/v1/world?{MOSCOW}")
        assert world.status_code == 200 and world.json()["iss"] == {
            "stream": "iss.position",
            "available": False,
            "reason": "not offered",
        }


# ---- the registry drives everything ----

TIDES_HOST = "tides.example.org"
TIDES_PATH = "/v2/stations.json"


class Tides:
    """A new upstream, written the way every adapter is: a fixed host, a request, a parser."""

    name = "test.tides"
    host = TIDES_HOST
    point = False
    streams = ("ocean.tides",)

    def request(self, point: Point | None) -> UpstreamRequest:
        return UpstreamRequest(self.host, TIDES_PATH)

    def parse(self, body: bytes, point: Point | None) -> dict[str, list[Record]]:
        stations = load_json(body)["stations"]
        return {
            "ocean.tides": [
                Record("ocean.tides", s["t"], s["lat"], s["lon"], {"station": s["name"], "height_m": s["h"]}, "tides")
                for s in stations
            ]
        }


TIDES = Stream(
    id="ocean.tides",
    name="Tide gauges",
    description="Sea level at coastal tide gauges, latest reading.",
    category="ocean",
    type=StreamType.REALTIME,
    price_tier="premium",
    upstream=TIDES_HOST,
    license="CC0-1.0",
    attribution="Example Tide Service",
    interval_s=600,
    stale_cap_s=3600,
    adapter="test.tides",
)


async def test_a_new_registry_entry_appears_everywhere(
    settings: Settings, devnet: EvmDevnet, replay: ReplayServer
) -> None:
    station = {"name": "Brest", "lat": 48.38, "lon": -4.5, "h": 4.21, "t": "2026-11-22T12:00:00Z"}
    replay.serve(TIDES_HOST, TIDES_PATH, json.dumps({"stations": [station]}).encode())
    registry = Registry([*STREAMS, TIDES])
    with running_gateway(
        isolated(settings), registry=registry, adapters={**all_adapters(), "test.tides": Tides()}
    ) as gw:
        catalog = {s["id"]: s for s in (await gw.get("/v1/streams?category=ocean")).json()["streams"]}
        assert catalog["ocean.tides"]["price"]["amount_atomic"] == "10000"  # the premium tier
        assert [s["id"] for s in (await gw.get("/v1/streams/search?q=tide gauges")).json()["streams"]] == [
            "ocean.tides"
        ]
        health = {s["source"]: s for s in (await gw.get("/v1/health")).json()["sources"]}
        assert health["test.tides"]["streams"] == ["ocean.tides"] and health["test.tides"]["upstream"] == TIDES_HOST
        quote = unb64((await gw.get("/v1/streams/ocean.tides")).headers["payment-required"])
        assert {o["amount"] for o in quote["accepts"]} == {"10000"}

        answer = await paid_get(gw, devnet, new_payer(devnet), "/v1/streams/ocean.tides")
        assert answer.status_code == 200, answer.text
        [record] = answer.json()["records"]
        assert record["fields"] == {"station": "Brest", "height_m": 4.21} and record["lat"] == 48.38


# ---- the scheduler ----


async def test_the_scheduler_prewarms_so_paid_reads_are_hits(
    settings: Settings, devnet: EvmDevnet, replay: ReplayServer
) -> None:
    shared_groups = {s.adapter for s in STREAMS if s.adapter and not s.point}
    with running_gateway(isolated(settings, scheduler=True)) as gateway:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            health = (await gateway.get("/v1/health")).json()
            if health["sources_fetched"] == len(shared_groups):
                break
            await asyncio.sleep(0.2)
        assert health["sources_fetched"] == len(shared_groups)
        calls = replay.hits[USGS_HOST]
        answer = await paid_get(gateway, devnet, new_payer(devnet), QUAKES)
        assert answer.status_code == 200 and answer.headers["x-cache"] == "HIT"
        assert replay.hits[USGS_HOST] == calls
