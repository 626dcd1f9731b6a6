"""Strict queries on the paid routes: an unknown or repeated query parameter (or MCP argument) is a 400
`invalid_query` naming it and what the route accepts, with a suggestion when one is close, before any quote,
claim or charge; and every declaration (the 402's bazaar, /openapi.json, the MCP tools) says no other is taken."""

from __future__ import annotations

from typing import Any

import asyncpg
import jsonschema
import pytest
from eth_account import Account

from adapters import Registry
from app.runtime.settings import DEFAULT_PRICE_TIERS
from app.usecases.params import STREAM_PARAMS, did_you_mean, strict_query
from app.usecases.pricing import Pricing
from app.usecases.queries import Problem
from payments import NetworkTerms
from payments.devnet.evm import EvmDevnet

from .chain import new_payer, pay_for, usdc_balance
from .conftest import Gateway
from .test_mcp import connected, text_of

QUAKES = "/v1/streams/quakes.usgs"
CAPITALS = "/v1/streams/static.capitals"
TERMS = [NetworkTerms("eip155:84532", "0x" + "22" * 20, "0x" + "11" * 20, 6, {"name": "USDC", "version": "2"}, 300)]


# ---- the rule itself ----


def test_unknown_and_repeated_names_are_refused_with_what_is_accepted() -> None:
    accepted = tuple(p.name for p in STREAM_PARAMS)
    assert strict_query([("lat", "1"), ("lon", "2")], accepted) == {"lat": "1", "lon": "2"}
    unknown = strict_query([("lat", "1"), ("lng", "2")], accepted)
    assert isinstance(unknown, Problem) and unknown.status == 400 and unknown.error == "invalid_query"
    assert "'lng'" in unknown.message and "did you mean 'lon'?" in unknown.message
    assert "bbox, lat, lon, radius_km, limit, max_age" in unknown.message
    repeated = strict_query([("lat", "1"), ("lat", "2")], accepted)
    assert isinstance(repeated, Problem) and "'lat'" in repeated.message and "more than once" in repeated.message
    far = strict_query([("zzzz", "1")], accepted)
    assert isinstance(far, Problem) and "did you mean" not in far.message  # nothing close: no guess
    assert did_you_mean("MaxAge", accepted) == " (did you mean 'max_age'?)"  # case aside
    assert did_you_mean("radius", accepted) == " (did you mean 'radius_km'?)"
    # a name the route knows but refuses goes on to its rules, which say why in their own words
    pricing = Pricing(Registry(), TERMS, DEFAULT_PRICE_TIERS, {})
    weather = pricing.lookup("/v1/streams/weather.current")
    assert weather is not None
    refused = weather.query([("lat", "48.85"), ("lon", "2.35"), ("radius_km", "10")])
    assert isinstance(refused, Problem) and "bbox and radius_km do not apply" in refused.message
    blank = weather.query_string(b"lat=48.85&lon=2.35&lat=1")
    assert isinstance(blank, Problem) and "more than once" in blank.message


def test_every_declaration_allows_no_other_parameter() -> None:
    pricing = Pricing(Registry(), TERMS, DEFAULT_PRICE_TIERS, {})
    for paid in pricing.routes():
        schema = paid.extensions["bazaar"]["schema"]["properties"]["input"]
        assert schema["properties"]["method"]["enum"] == ["GET", "HEAD"], paid.path  # no DELETE on a paid GET
        query = schema["properties"]["queryParams"]
        assert query["additionalProperties"] is False, paid.path
        example = paid.extensions["bazaar"]["info"]["input"]["queryParams"]
        jsonschema.validate(example, query, cls=jsonschema.Draft202012Validator)
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({**example, "lng": 2}, query, cls=jsonschema.Draft202012Validator)


# ---- over HTTP ----


async def test_an_unknown_or_repeated_parameter_is_refused_before_any_quote_or_claim(
    gateway: Gateway, devnet: EvmDevnet, pool: asyncpg.Pool
) -> None:
    typo = await gateway.get(QUAKES, params={"lat": "35", "lng": "139"})
    assert typo.status_code == 400 and "payment-required" not in typo.headers
    document = typo.json()
    assert document["error"] == "invalid_query"
    assert "'lng'" in document["message"] and "did you mean 'lon'?" in document["message"]
    assert "lat, lon" in document["message"]
    twice = await gateway.get(QUAKES + "?lat=35&lon=139&lat=36")
    assert twice.status_code == 400 and "'lat'" in twice.json()["message"]
    assert "payment-required" not in twice.headers
    stray = await gateway.get(CAPITALS + "?x=1")
    assert stray.status_code == 400 and "no query parameters" not in stray.json()["message"]
    assert (await gateway.get(CAPITALS + "?limit=5")).status_code == 402  # a declared one is still quoted

    # with a good payment attached: refused all the same, nothing claimed, nothing moved
    key = new_payer(devnet)
    payer = Account.from_key(key).address
    offer = await gateway.offer(CAPITALS)
    header = pay_for(key, devnet, offer)
    for query in ("?limit=5&limit=6", "?limitt=5"):
        refused = await gateway.get(CAPITALS + query, headers={"PAYMENT-SIGNATURE": header})
        assert refused.status_code == 400 and refused.json()["error"] == "invalid_query", query
        assert "payment-response" not in refused.headers
    assert await pool.fetchval("SELECT count(*) FROM payments WHERE payer = $1", payer.lower()) == 0
    assert usdc_balance(devnet, payer) == 10_000_000
    served = await gateway.get(CAPITALS + "?limit=5", headers={"PAYMENT-SIGNATURE": header})  # still unspent
    assert served.status_code == 200 and served.json()["count"] == 5


async def test_openapi_says_no_other_parameter(gateway: Gateway) -> None:
    spec = (await gateway.get("/openapi.json")).json()
    for path, item in spec["paths"].items():
        operation = item["get"]
        if "x-402-price" not in operation:
            continue
        query = operation["x-query-schema"]
        assert query["additionalProperties"] is False, path
        assert set(query["properties"]) == {p["name"] for p in operation["parameters"]}, path
        assert "given twice" in operation["description"]


# ---- over MCP ----


async def test_an_unknown_argument_is_a_tool_error_before_any_quote(gateway: Gateway) -> None:
    async with connected(gateway) as client:
        typo = await client.call_tool("get_world_state", {"lat": 48.85, "lng": 2.35})
        stream = await client.call_tool("get_stream", {"id": "quakes.usgs", "radius": 100})
        free = await client.call_tool("list_streams", {"categry": "space"})
        listed = {tool.name: tool for tool in (await client.list_tools()).tools}
    for result, name, close in ((typo, "lng", "lon"), (stream, "radius", "radius_km"), (free, "categry", "category")):
        assert result.is_error
        document: dict[str, Any] = result.structured_content
        assert text_of(result) == document and "accepts" not in document  # no PaymentRequired: not quoted
        assert document["error"] == "invalid_query"
        assert f"'{name}'" in document["message"] and f"did you mean '{close}'?" in document["message"]
    for tool in listed.values():
        assert tool.input_schema["additionalProperties"] is False, tool.name


async def test_mcp_quote_still_comes_for_declared_arguments(gateway: Gateway) -> None:
    async with connected(gateway) as client:
        unpaid = await client.call_tool("get_stream", {"id": "static.capitals", "limit": 3})
    assert unpaid.is_error and unpaid.structured_content["accepts"]
