"""Answers match the question (issue 14): a paid point read is for that point, replay sells only what was
recorded and says so, and nothing older than its stream's freshness budget is called fresh.

Through real HTTP against gateways in replay mode (the session's replay server), paying on the devnet.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from eth_account import Account

from adapters import STREAMS, ReplayServer, distance_km, recorded_points
from app.runtime.settings import Settings
from payments.devnet.evm import EvmDevnet

from .chain import new_payer, pay_for, usdc_balance
from .conftest import Gateway, running_gateway, with_settings

BY_ID = {s.id: s for s in STREAMS}
TOKYO, PARIS, DELHI, MADRID = (35.68, 139.69), (48.85, 2.35), (28.61, 77.21), (40.42, -3.7)
FORECAST = ("api.open-meteo.com", "/v1/forecast")
MOSCOW_BODY = (Path(__file__).resolve().parents[1] / "adapters/fixtures/api.open-meteo.com").joinpath(
    "forecast_current_moscow.json"
)


@pytest.fixture(autouse=True)
def clean_replay(replay: ReplayServer) -> Iterator[None]:
    replay.reset()
    yield
    replay.reset()


@pytest.fixture
def gateway(settings: Settings) -> Iterator[Gateway]:
    """A gateway with a cache of its own: nothing another test fetched or overrode is served here."""
    with running_gateway(with_settings(settings, cache_prefix=f"wgtest:{secrets.token_hex(4)}:")) as running:
        yield running


def at(path: str, point: tuple[float, float]) -> str:
    return f"{path}?lat={point[0]}&lon={point[1]}"


async def paid_get(gateway: Gateway, devnet: EvmDevnet, key: str, path: str) -> Any:
    return await gateway.get(path, headers={"PAYMENT-SIGNATURE": pay_for(key, devnet, await gateway.offer(path))})


async def rows_of(pool: asyncpg.Pool, key: str) -> list[dict[str, Any]]:
    payer = Account.from_key(key).address.lower()
    return [dict(r) for r in await pool.fetch("SELECT * FROM payments WHERE payer = $1 ORDER BY id", payer)]


def assert_fresh_only_within_budget(stream_id: str, part: dict[str, Any]) -> None:
    """age_seconds is now - observed_at, and `fresh` only within the stream's budget."""
    observed = datetime.fromisoformat(part["observed_at"].replace("Z", "+00:00")).timestamp()
    assert part["age_seconds"] == pytest.approx(time.time() - observed, abs=120), stream_id
    budget = BY_ID[stream_id].budget_s
    assert part["freshness_budget_s"] == budget
    if budget is not None and part["age_seconds"] > budget:
        assert part["freshness"] == "stale" and part["stale"] is True, (stream_id, part)


# ---- refused before the quote where nothing was recorded ----


@pytest.mark.parametrize(
    ("path", "stream_id"),
    [
        (at("/v1/streams/weather.current", TOKYO), "weather.current"),
        (at("/v1/streams/air.quality", PARIS), "air.quality"),
        (at("/v1/world", TOKYO), "weather.current"),
    ],
)
async def test_a_point_with_no_recording_is_refused_before_the_quote(
    path: str, stream_id: str, gateway: Gateway, devnet: EvmDevnet, pool: asyncpg.Pool, replay: ReplayServer
) -> None:
    recorded = recorded_points(stream_id)
    assert recorded
    unpaid = await gateway.get(path)
    assert unpaid.status_code == 404, unpaid.text
    assert "payment-required" not in unpaid.headers
    refusal = unpaid.json()
    assert refusal["error"] == "no_recording" and stream_id in refusal["message"]
    for point in recorded:  # it names every point that can be bought
        assert f"{point.lat:g},{point.lon:g}" in refusal["message"]

    # a valid payment for the route changes nothing: never claimed, never charged, no upstream call
    key = new_payer(devnet)
    offer = await gateway.offer(at(path.split("?")[0], (recorded[0].lat, recorded[0].lon)))
    calls = dict(replay.hits)
    paid = await gateway.get(path, headers={"PAYMENT-SIGNATURE": pay_for(key, devnet, offer)})
    assert paid.status_code == 404 and paid.json()["error"] == "no_recording"
    assert await rows_of(pool, key) == []
    assert usdc_balance(devnet, Account.from_key(key).address) == 10_000_000
    assert dict(replay.hits) == calls


# ---- served within the stated distance, labelled replay, never falsely fresh ----


async def test_a_recorded_point_is_served_within_the_stated_distance(gateway: Gateway, devnet: EvmDevnet) -> None:
    catalog = {s["id"]: s for s in (await gateway.get("/v1/streams")).json()["streams"]}
    assert catalog["weather.current"]["point_within_km"] == 30 and catalog["air.quality"]["point_within_km"] == 40
    assert catalog["quakes.usgs"]["freshness_budget_s"] == 3600 and catalog["quakes.usgs"]["point_within_km"] is None
    key = new_payer(devnet)
    for stream_id, point in (("weather.current", PARIS), ("air.quality", DELHI)):
        answer = await paid_get(gateway, devnet, key, at(f"/v1/streams/{stream_id}", point))
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["source"] == "replay"
        [record] = body["records"]
        assert distance_km(*point, record["lat"], record["lon"]) <= BY_ID[stream_id].point_within_km
        assert_fresh_only_within_budget(stream_id, body)
        assert body["freshness"] == "stale"  # every recording is older than its budget


async def test_world_at_a_recorded_point_is_that_points_weather_and_says_what_it_lacks(
    gateway: Gateway, devnet: EvmDevnet
) -> None:
    answer = await paid_get(gateway, devnet, new_payer(devnet), at("/v1/world", PARIS) + "&radius_km=2000")
    assert answer.status_code == 200, answer.text
    world = answer.json()
    assert world["source"] == "replay"
    weather = world["weather"]["record"]
    assert distance_km(*PARIS, weather["lat"], weather["lon"]) <= BY_ID["weather.current"].point_within_km
    assert world["air_quality"]["available"] is False  # recorded only at Delhi: the part says so
    assert "recorded points: 28.6,77.2; 40.4,-3.7" in world["air_quality"]["reason"]
    parts = {"weather": "weather.current", "iss": "iss.position", "space_weather": "space.kp"}
    parts |= {"earthquakes": "quakes.usgs", "disasters": "disasters.gdacs", "natural_events": "events.eonet"}
    for name, stream_id in parts.items():
        assert world[name]["available"] is True, (name, world[name])
        assert_fresh_only_within_budget(stream_id, world[name])
    assert world["iss"]["record"]["observed_at"].startswith("2022-") and world["iss"]["freshness"] == "stale"


async def test_world_where_both_point_parts_are_recorded_has_both(gateway: Gateway, devnet: EvmDevnet) -> None:
    answer = await paid_get(gateway, devnet, new_payer(devnet), at("/v1/world", MADRID))
    assert answer.status_code == 200, answer.text
    world = answer.json()
    for name, stream_id in (("weather", "weather.current"), ("air_quality", "air.quality")):
        record = world[name]["record"]
        assert distance_km(*MADRID, record["lat"], record["lon"]) <= BY_ID[stream_id].point_within_km
        assert_fresh_only_within_budget(stream_id, world[name])
    assert world["air_quality"]["record"]["fields"]["european_aqi"] == 51


@pytest.mark.parametrize("stream", [s for s in STREAMS if not s.point], ids=lambda s: s.id)
async def test_no_stream_calls_a_record_older_than_its_budget_fresh(
    stream: Any, gateway: Gateway, devnet: EvmDevnet
) -> None:
    answer = await paid_get(gateway, devnet, new_payer(devnet), f"/v1/streams/{stream.id}")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["source"] == "replay" and body["count"] > 0  # no filter asked: never an empty sale
    assert_fresh_only_within_budget(stream.id, body)
    if stream.budget_s is None:
        assert body["freshness"] == "fresh"  # curated static sets do not age


# ---- a record for another place is never sold; empty only when the caller's filter matched nothing ----


async def test_a_record_for_another_place_is_not_sold(
    gateway: Gateway, devnet: EvmDevnet, pool: asyncpg.Pool, replay: ReplayServer
) -> None:
    replay.serve(*FORECAST, MOSCOW_BODY.read_bytes())  # the upstream answers Moscow, whatever was asked
    key = new_payer(devnet)
    answer = await paid_get(gateway, devnet, key, at("/v1/streams/weather.current", PARIS))
    assert answer.status_code == 404, answer.text
    assert answer.json()["error"] == "no_data_for_point" and "55.75,37.625" in answer.json()["reason"]
    assert "payment-response" not in answer.headers
    world = await paid_get(gateway, devnet, key, at("/v1/world", PARIS))
    assert world.status_code == 404 and world.json()["error"] == "no_data_for_point"
    rows = await rows_of(pool, key)
    assert [r["state"] for r in rows] == ["released", "released"]
    assert usdc_balance(devnet, Account.from_key(key).address) == 10_000_000


async def test_an_empty_answer_only_for_a_filter_that_matched_nothing(
    gateway: Gateway, devnet: EvmDevnet, pool: asyncpg.Pool, replay: ReplayServer
) -> None:
    key = new_payer(devnet)
    near = await paid_get(gateway, devnet, key, "/v1/streams/quakes.usgs?lat=34&lon=-117.2&radius_km=100")
    assert near.status_code == 200 and near.json()["count"] == 1
    nothing_there = await paid_get(gateway, devnet, key, "/v1/streams/quakes.usgs?bbox=0,0,10,10")
    assert nothing_there.status_code == 200 and nothing_there.json()["count"] == 0  # the caller's box: sold

    replay.serve("services.swpc.noaa.gov", "/json/planetary_k_index_1m.json", b"[]")  # an empty feed
    empty = await paid_get(gateway, devnet, key, "/v1/streams/space.kp")
    assert empty.status_code == 503 and "no records" in empty.json()["reason"]
    assert [r["state"] for r in await rows_of(pool, key)] == ["settled", "settled", "released"]


async def test_llms_txt_says_it_is_a_replay(gateway: Gateway) -> None:
    text = (await gateway.get("/llms.txt")).text
    assert "REPLAY MODE" in text and '"source": "replay"' in text
