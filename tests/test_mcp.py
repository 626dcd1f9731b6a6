"""The MCP server at /mcp, driven by the official `mcp` client over streamable HTTP: the six tools, the free
ones answering like their HTTP routes, and the paid ones sold through x402's MCP transport on the same
checkout as HTTP (one settlement per payment, nothing charged without data, payment-identifier replays).

Chains are the session devnets; upstreams the replay server's recordings.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import secrets
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import httpx2
import pytest
from eth_account import Account
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp_types import CallToolResult

from adapters import STREAMS, ReplayServer
from app.runtime.settings import Settings, replace
from payments.devnet.evm import EvmDevnet

from .chain import b64, new_payer, payment_document, receipt, unb64, usdc_balance
from .conftest import Gateway, running_gateway, with_settings
from .test_abuse import fresh_window

TOOLS = {"get_world_state", "list_streams", "get_stream", "search_streams", "attribution", "health"}
TOOLS |= {"get_history", "get_coverage"}  # the time machine's (tests/test_history_api.py)
CAPITALS = "static.capitals"
QUAKES = "quakes.usgs"
USGS_HOST = "earthquake.usgs.gov"
PAYMENT = "x402/payment"
PAYMENT_RESPONSE = "x402/payment-response"
FUNDED = 10_000_000  # new_payer's USDC
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def clean_replay(replay: ReplayServer) -> Iterator[None]:
    replay.reset()
    yield
    replay.reset()


@asynccontextmanager
async def connected(gateway: Gateway, *, mode: str = "auto", request_id: str | None = None) -> AsyncIterator[Client]:
    """The official MCP client on the gateway's /mcp; `auto` negotiates the 2026-07-28 protocol, `legacy` the
    initialize handshake (2025-11-25). A request id goes out as X-Request-Id on every HTTP request."""
    headers = {"x-request-id": request_id} if request_id else {}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(60)) as http,
        Client(streamable_http_client(gateway.url + "/mcp", http_client=http), mode=mode) as client,
    ):
        yield client


def evm_offer(required: dict[str, Any]) -> dict[str, Any]:
    [offer] = [o for o in required["accepts"] if o["network"].startswith("eip155:")]
    return offer


def payment(key: str, devnet: EvmDevnet, offer: dict[str, Any], payment_id: str | None = None) -> dict[str, Any]:
    """A PaymentPayload as the MCP transport carries it: a JSON object, not base64."""
    return payment_document(key, devnet, offer, payment_id)


def text_of(result: CallToolResult) -> Any:
    [content] = result.content
    assert content.type == "text"
    return json.loads(content.text)


async def quote(client: Client, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """The PaymentRequired an unpaid call answers with."""
    unpaid = await client.call_tool(tool, arguments)
    assert unpaid.is_error, unpaid
    required: dict[str, Any] = unpaid.structured_content
    assert text_of(unpaid) == required
    return required


async def rows_of(pool: asyncpg.Pool, payer_key: str) -> list[dict[str, Any]]:
    payer = Account.from_key(payer_key).address.lower()
    return [dict(r) for r in await pool.fetch("SELECT * FROM payments WHERE payer = $1 ORDER BY id", payer)]


# ---- the tools ----


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_the_six_tools_are_listed_with_typed_bounded_input_schemas(gateway: Gateway, mode: str) -> None:
    async with connected(gateway, mode=mode) as client:
        listed = {tool.name: tool for tool in (await client.list_tools()).tools}
    assert set(listed) == TOOLS
    for tool in listed.values():
        assert tool.input_schema["type"] == "object" and tool.description
        assert tool.annotations is not None and tool.annotations.read_only_hint is True
    world = listed["get_world_state"].input_schema
    assert world["required"] == ["lat", "lon"]
    assert world["properties"]["lat"] == {**world["properties"]["lat"], "type": "number", "minimum": -90, "maximum": 90}
    assert world["properties"]["radius_km"]["maximum"] == 5000
    stream = listed["get_stream"].input_schema
    assert stream["required"] == ["id"] and stream["properties"]["id"]["type"] == "string"
    assert stream["properties"]["limit"]["type"] == "integer" and stream["properties"]["limit"]["maximum"] == 1000
    assert stream["properties"]["max_age"]["minimum"] == 1 and stream["properties"]["max_age"]["maximum"] == 2592000
    assert listed["search_streams"].input_schema["properties"]["q"]["maxLength"] == 100
    assert listed["health"].input_schema["properties"] == {} and listed["attribution"].input_schema["properties"] == {}


async def test_free_tools_answer_what_their_http_routes_answer(gateway: Gateway) -> None:
    async with connected(gateway) as client:
        catalog = await client.call_tool("list_streams", {})
        space = await client.call_tool("list_streams", {"category": "space"})
        nowhere = await client.call_tool("list_streams", {"category": "nowhere"})
        health = await client.call_tool("health", {})
        found = await client.call_tool("search_streams", {"q": "earthquake"})
        attribution = await client.call_tool("attribution", {})

    assert not catalog.is_error and text_of(catalog) == catalog.structured_content
    streams = catalog.structured_content["streams"]
    assert {s["id"] for s in streams} == {s.id for s in STREAMS} and catalog.structured_content["count"] == len(STREAMS)
    assert all("fetched_at" in s and "freshness" in s for s in streams)
    http_catalog = (await gateway.get("/v1/streams")).json()
    assert [s["price"] for s in streams] == [s["price"] for s in http_catalog["streams"]]
    assert {s["category"] for s in space.structured_content["streams"]} == {"space"}
    assert nowhere.is_error and nowhere.structured_content["error"] == "unknown_category"
    assert nowhere.structured_content == (await gateway.get("/v1/streams?category=nowhere")).json()

    assert not health.is_error and text_of(health) == health.structured_content
    assert health.structured_content["status"] == "ok" and health.structured_content["checks"]["database"] == "ok"
    assert health.structured_content["upstreams"] == "replay (recorded payloads)"
    assert QUAKES in {s["id"] for s in found.structured_content["streams"]}
    assert attribution.structured_content == (await gateway.get("/v1/attribution")).json()


async def test_bad_arguments_and_unknown_streams_are_tool_errors_before_any_quote(gateway: Gateway) -> None:
    async with connected(gateway) as client:
        unknown = await client.call_tool("get_stream", {"id": "no.such.stream"})
        bad_lat = await client.call_tool("get_stream", {"id": QUAKES, "lat": 100, "lon": 0})
        point_without_lat = await client.call_tool("get_stream", {"id": "weather.current"})
        world_radius = await client.call_tool("get_world_state", {"lat": 1, "lon": 2, "radius_km": 6000})
        wrong_type = await client.call_tool("get_stream", {"id": QUAKES, "limit": "ten"})
        stray = await client.call_tool("health", {"verbose": True})
        short_query = await client.call_tool("search_streams", {"q": " "})

    http_unknown = await gateway.get("/v1/streams/no.such.stream")
    assert unknown.is_error and unknown.structured_content == http_unknown.json()
    assert unknown.structured_content == {"error": "unknown_stream", "message": "no such stream; see GET /v1/streams"}
    assert bad_lat.structured_content == (await gateway.get(f"/v1/streams/{QUAKES}?lat=100&lon=0")).json()
    assert point_without_lat.structured_content == (await gateway.get("/v1/streams/weather.current")).json()
    assert world_radius.structured_content == (await gateway.get("/v1/world?lat=1&lon=2&radius_km=6000")).json()
    for refused in (bad_lat, point_without_lat, world_radius, wrong_type, stray, short_query):
        assert refused.is_error and refused.structured_content["error"] == "invalid_query", refused
        assert "accepts" not in refused.structured_content  # refused before any quote


async def test_an_unpaid_paid_tool_answers_the_routes_payment_required(gateway: Gateway) -> None:
    async with connected(gateway) as client:
        unpaid = await client.call_tool("get_stream", {"id": CAPITALS})
        world = await quote(client, "get_world_state", {"lat": 48.85, "lon": 2.35})

    assert unpaid.is_error and unpaid.meta is not None and PAYMENT_RESPONSE not in unpaid.meta
    required = unpaid.structured_content
    assert text_of(unpaid) == required  # content[0].text is the same JSON
    http_required = unb64((await gateway.get(f"/v1/streams/{CAPITALS}")).headers["payment-required"])
    assert required["x402Version"] == 2 and required["error"] == "Payment required"
    assert required["accepts"] == http_required["accepts"]  # the same offers as the HTTP 402
    assert {o["network"].split(":")[0] for o in required["accepts"]} == {"eip155", "solana"}
    assert required["resource"]["url"] == "mcp://tool/get_stream"
    assert required["resource"]["description"] == http_required["resource"]["description"]
    http_world = unb64((await gateway.get("/v1/world?lat=48.85&lon=2.35")).headers["payment-required"])
    assert world["accepts"] == http_world["accepts"] and world["resource"]["url"] == "mcp://tool/get_world_state"


# ---- paying ----


async def test_a_paid_get_stream_is_served_settled_and_booked_once(
    gateway: Gateway, devnet: EvmDevnet, pool: asyncpg.Pool
) -> None:
    key = new_payer(devnet)
    payer = Account.from_key(key).address
    pay_to_before = usdc_balance(devnet, devnet.pay_to)
    async with connected(gateway) as client:
        offer = evm_offer(await quote(client, "get_stream", {"id": CAPITALS}))
        paid = payment(key, devnet, offer)
        served = await client.call_tool("get_stream", {"id": CAPITALS, "limit": 5}, meta={PAYMENT: paid})
        again = await client.call_tool("get_stream", {"id": CAPITALS, "limit": 5}, meta={PAYMENT: paid})

    assert not served.is_error, served
    data = served.structured_content
    assert text_of(served) == data
    assert data["stream"] == CAPITALS and data["count"] == 5 and len(data["records"]) == 5
    assert {"fetched_at", "stale", "freshness", "age_seconds"} <= set(data)
    assert served.meta is not None
    settled = served.meta[PAYMENT_RESPONSE]
    assert settled["success"] is True and settled["network"] == devnet.network
    assert settled["payer"].lower() == payer.lower()
    mined = receipt(devnet, settled["transaction"])
    assert mined is not None and int(mined["status"], 16) == 1
    price = int(offer["amount"])
    assert price == 1000
    assert usdc_balance(devnet, payer) == FUNDED - price
    assert usdc_balance(devnet, devnet.pay_to) == pay_to_before + price

    [row] = await rows_of(pool, key)
    assert row["state"] == "settled" and row["stream"] == CAPITALS and row["tx_hash"] == settled["transaction"]
    assert row["resource"] == f"/v1/streams/{CAPITALS}" and int(row["amount_atomic"]) == price

    # The same payment again: refused with a fresh quote, no data, no second transfer.
    assert again.is_error and again.structured_content["error"] == "payment_already_claimed"
    assert "already used" in again.structured_content["message"] and "records" not in again.structured_content
    assert again.structured_content["accepts"] == (await quote_http(gateway, f"/v1/streams/{CAPITALS}"))
    assert usdc_balance(devnet, payer) == FUNDED - price
    assert len(await rows_of(pool, key)) == 1


async def quote_http(gateway: Gateway, path: str) -> list[dict[str, Any]]:
    accepts: list[dict[str, Any]] = unb64((await gateway.get(path)).headers["payment-required"])["accepts"]
    return accepts


async def test_a_paid_get_world_state_returns_the_combined_picture(
    gateway: Gateway, devnet: EvmDevnet, pool: asyncpg.Pool
) -> None:
    key = new_payer(devnet)
    arguments = {"lat": 36.83, "lon": -119.69, "radius_km": 500}  # a point the replay has recordings for
    async with connected(gateway) as client:
        offer = evm_offer(await quote(client, "get_world_state", arguments))
        served = await client.call_tool("get_world_state", arguments, meta={PAYMENT: payment(key, devnet, offer)})

    assert not served.is_error, served
    picture = served.structured_content
    assert picture["lat"] == 36.83 and picture["radius_km"] == 500
    parts = ("weather", "air_quality", "earthquakes", "disasters", "natural_events", "iss", "space_weather")
    assert set(parts) <= set(picture)
    assert picture["weather"]["available"] is True and picture["weather"]["record"]["stream"] == "weather.current"
    for name in parts:
        if picture[name]["available"]:
            assert {"fetched_at", "stale", "freshness"} <= set(picture[name]), name
    assert picture["earthquakes"]["count"] >= 1  # the recorded quake 7 km N of Moreno Valley
    assert served.meta is not None and served.meta[PAYMENT_RESPONSE]["success"] is True
    assert served.meta["worldgate/cache"].startswith("weather=")
    assert usdc_balance(devnet, Account.from_key(key).address) == FUNDED - int(offer["amount"]) == FUNDED - 10_000
    [row] = await rows_of(pool, key)
    assert row["state"] == "settled" and row["resource"] == "/v1/world" and row["stream"] is None


async def test_a_finer_grid_over_mcp_is_quoted_and_sold_as_over_http(
    gateway: Gateway, devnet: EvmDevnet, pool: asyncpg.Pool
) -> None:
    """`resolution` on get_stream: the same rules and the same price by size as GET /v1/streams/{id}?resolution=."""
    grid = "weather.grid.temperature"
    query = {"resolution": 2, "bbox": "-10,35,30,60", "limit": 1000}  # 260 cells of the 2-degree grid: 3 units
    key = new_payer(devnet)
    async with connected(gateway) as client:
        listed = {tool.name: tool for tool in (await client.list_tools()).tools}
        base = await quote(client, "get_stream", {"id": grid})
        required = await quote(client, "get_stream", {"id": grid, **query})
        refused = await client.call_tool("get_stream", {"id": grid, "resolution": 3})
        elsewhere = await client.call_tool("get_stream", {"id": QUAKES, "resolution": 10})
        served = await client.call_tool(
            "get_stream", {"id": grid, **query}, meta={PAYMENT: payment(key, devnet, evm_offer(required))}
        )

    resolution = listed["get_stream"].input_schema["properties"]["resolution"]
    assert resolution["type"] == "integer" and resolution["enum"] == [2, 5, 10, 20]
    http = unb64((await gateway.get(f"/v1/streams/{grid}", params=query)).headers["payment-required"])
    assert required["accepts"] == http["accepts"]  # the same offers, at the same price, as the HTTP 402
    assert required["resource"]["description"] == http["resource"]["description"]
    assert "up to 260 cells" in required["resource"]["description"]
    price = int(evm_offer(base)["amount"])
    assert int(evm_offer(required)["amount"]) == 3 * price
    http_refused = (await gateway.get(f"/v1/streams/{grid}", params={"resolution": "3"})).json()
    assert refused.is_error and refused.structured_content == http_refused  # refused before any quote
    http_elsewhere = (await gateway.get(f"/v1/streams/{QUAKES}", params={"resolution": "10"})).json()
    assert elsewhere.is_error and elsewhere.structured_content == http_elsewhere
    assert not served.is_error, served
    assert served.structured_content["resolution_deg"] == 2 and served.structured_content["count"] >= 3
    assert usdc_balance(devnet, Account.from_key(key).address) == FUNDED - 3 * price
    [row] = await rows_of(pool, key)
    assert row["state"] == "settled" and int(row["amount_atomic"]) == 3 * price


@pytest.mark.parametrize(
    "garbage",
    ["garbage", "eyJ4NDAyVmVyc2lvbiI6Mn0=", {"x402Version": 2, "accepted": "nope", "payload": {}}, {"hello": 1}],
    ids=["text", "base64", "bad-accepted", "not-a-payload"],
)
async def test_a_malformed_payment_is_invalid_payload_and_never_reaches_the_ledger(
    gateway: Gateway, pool: asyncpg.Pool, garbage: Any
) -> None:
    before = await pool.fetchval("SELECT count(*) FROM payments")
    async with connected(gateway) as client:
        refused = await client.call_tool("get_stream", {"id": CAPITALS}, meta={PAYMENT: garbage})
    assert refused.is_error and text_of(refused) == refused.structured_content
    required = refused.structured_content
    assert required["error"] == "invalid_payload" and required["x402Version"] == 2 and required["message"]
    assert required["accepts"] == await quote_http(gateway, f"/v1/streams/{CAPITALS}")  # a fresh quote
    assert await pool.fetchval("SELECT count(*) FROM payments") == before


async def test_a_payment_for_another_price_is_refused_unclaimed(
    gateway: Gateway, devnet: EvmDevnet, pool: asyncpg.Pool
) -> None:
    key = new_payer(devnet)
    async with connected(gateway) as client:
        cheap = evm_offer(await quote(client, "get_stream", {"id": CAPITALS}))
        refused = await client.call_tool(
            "get_world_state", {"lat": 40.42, "lon": -3.7}, meta={PAYMENT: payment(key, devnet, cheap)}
        )
    assert refused.is_error and refused.structured_content["error"] == "offer_mismatch"
    assert await rows_of(pool, key) == [] and usdc_balance(devnet, Account.from_key(key).address) == FUNDED


async def test_a_paid_call_without_data_is_released_and_never_charged(
    settings: Settings, devnet: EvmDevnet, replay: ReplayServer, pool: asyncpg.Pool
) -> None:
    isolated = with_settings(settings, cache_prefix=f"wgtest:{secrets.token_hex(4)}:")
    with running_gateway(isolated) as gateway:
        key = new_payer(devnet)
        payer = Account.from_key(key).address
        async with connected(gateway) as client:
            offer = evm_offer(await quote(client, "get_stream", {"id": QUAKES}))
            first = await client.call_tool("get_stream", {"id": QUAKES}, meta={PAYMENT: payment(key, devnet, offer)})
            assert not first.is_error, first  # the quakes are cached now
            replay.fault(USGS_HOST, "status_500")  # nothing fresher can be had
            await asyncio.sleep(1.2)
            pay_to_before = usdc_balance(devnet, devnet.pay_to)

            arguments = {"id": QUAKES, "max_age": 1}
            refused = await client.call_tool("get_stream", arguments, meta={PAYMENT: payment(key, devnet, offer)})

    assert refused.is_error and text_of(refused) == refused.structured_content
    assert (
        refused.structured_content["error"] == "stream_unavailable"
        and "max_age" in refused.structured_content["reason"]
    )
    assert "records" not in refused.structured_content
    assert refused.meta is None or PAYMENT_RESPONSE not in refused.meta
    assert usdc_balance(devnet, payer) == FUNDED - int(offer["amount"])  # only the first read was charged
    assert usdc_balance(devnet, devnet.pay_to) == pay_to_before
    settled, released = await rows_of(pool, key)
    assert settled["state"] == "settled" and receipt(devnet, settled["tx_hash"]) is not None
    assert released["state"] == "released" and released["tx_hash"] is None
    assert released["error_reason"] == "handler_status_503"


async def test_a_payer_over_its_limit_is_told_when_to_retry_and_never_claimed(
    settings: Settings, devnet: EvmDevnet, pool: asyncpg.Pool
) -> None:
    """The per-payer limit counts MCP payments as it counts HTTP ones (one checkout): over it, a tool error
    `rate_limited` with `retry_after`, before any claim."""
    await fresh_window()  # both calls in one clock-aligned window
    key = new_payer(devnet)
    limited = with_settings(settings, limits=replace(settings.limits, payer="1/hour"))
    with running_gateway(limited) as tight:
        offer = evm_offer(await quote_of(tight))
        async with connected(tight) as client:
            first = await client.call_tool("get_stream", {"id": CAPITALS}, meta={PAYMENT: payment(key, devnet, offer)})
            second = await client.call_tool("get_stream", {"id": CAPITALS}, meta={PAYMENT: payment(key, devnet, offer)})
    assert not first.is_error, first
    assert second.is_error and second.structured_content["error"] == "rate_limited", second
    assert 1 <= second.structured_content["retry_after"] <= 3600
    assert [r["state"] for r in await rows_of(pool, key)] == ["settled"]  # the second was never claimed
    assert usdc_balance(devnet, Account.from_key(key).address) == FUNDED - 1000


async def quote_of(gateway: Gateway) -> dict[str, Any]:
    async with connected(gateway) as client:
        return await quote(client, "get_stream", {"id": CAPITALS})


async def test_a_payment_identifier_retry_replays_the_tool_result_without_a_second_charge(
    gateway: Gateway, devnet: EvmDevnet, pool: asyncpg.Pool
) -> None:
    key = new_payer(devnet)
    payment_id = f"mcp-retry-{secrets.token_hex(12)}"
    async with connected(gateway) as client:
        offer = evm_offer(await quote(client, "get_stream", {"id": CAPITALS}))
        paid = payment(key, devnet, offer, payment_id)
        first = await client.call_tool("get_stream", {"id": CAPITALS}, meta={PAYMENT: paid})
        retry = await client.call_tool("get_stream", {"id": CAPITALS}, meta={PAYMENT: paid})
        # The same id on another payment: a conflict, nothing served.
        conflict = await client.call_tool(
            "get_stream", {"id": CAPITALS}, meta={PAYMENT: payment(key, devnet, offer, payment_id)}
        )

    assert not first.is_error and not retry.is_error
    assert retry.structured_content == first.structured_content and retry.content == first.content
    assert retry.meta is not None and first.meta is not None
    assert retry.meta[PAYMENT_RESPONSE] == first.meta[PAYMENT_RESPONSE]
    assert conflict.is_error and conflict.structured_content["error"] == "payment_identifier_conflict"
    assert usdc_balance(devnet, Account.from_key(key).address) == FUNDED - int(offer["amount"])
    assert [r["state"] for r in await rows_of(pool, key)] == ["settled"]

    # An id first used over HTTP is not replayed to MCP (nor the other way round).
    http_id = f"http-first-{secrets.token_hex(12)}"
    document = payment(key, devnet, await gateway.offer(f"/v1/streams/{CAPITALS}"), http_id)
    over_http = await gateway.get(f"/v1/streams/{CAPITALS}", headers={"PAYMENT-SIGNATURE": b64(document)})
    assert over_http.status_code == 200
    async with connected(gateway) as client:
        crossed = await client.call_tool("get_stream", {"id": CAPITALS}, meta={PAYMENT: document})
    assert crossed.is_error and crossed.structured_content["error"] == "payment_identifier_conflict"


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_every_log_line_of_a_paid_tool_call_names_its_request_and_payment(
    gateway: Gateway, devnet: EvmDevnet, log_lines: io.StringIO, mode: str
) -> None:
    key = new_payer(devnet)
    request_id = f"mcp-trace-{secrets.token_hex(4)}"
    async with connected(gateway) as client:
        offer = evm_offer(await quote(client, "get_stream", {"id": CAPITALS}))
    paid = payment(key, devnet, offer)
    async with connected(gateway, mode=mode, request_id=request_id) as client:
        served = await client.call_tool("get_stream", {"id": CAPITALS}, meta={PAYMENT: paid})
    assert not served.is_error, served
    mine = [json.loads(line) for line in log_lines.getvalue().splitlines() if f'"{request_id}"' in line]
    assert mine, "the paid tool call logged nothing under its request id"
    authorization = paid["payload"]["authorization"]
    payment_key = f"{devnet.network}:{devnet.asset.lower()}:{authorization['from'].lower()}:{authorization['nonce']}"
    assert all(line["payment_key"] == payment_key.lower() and line["mcp_tool"] == "get_stream" for line in mine)
    assert any(line["msg"] == "payment settled" for line in mine)
    assert paid["payload"]["signature"] not in log_lines.getvalue()


# ---- the official x402 MCP client helper ----

# x402 2.25.0's x402.mcp is written for the mcp 1.x client API, so it runs from the official clients' venv.
OFFICIAL_CLIENTS_PYTHON = ROOT / ".venv-x402-svm" / "bin" / "python"


async def test_the_official_x402_mcp_helper_pays_for_a_tool(
    gateway: Gateway, devnet: EvmDevnet, pool: asyncpg.Pool
) -> None:
    if not OFFICIAL_CLIENTS_PYTHON.exists():
        pytest.skip("the .venv-x402-svm interpreter is not installed here: run `make install`")
    key = new_payer(devnet)
    payer = Account.from_key(key).address
    env = {
        **os.environ,
        "MCP_URL": gateway.url + "/mcp",
        "PAYER_KEY": key,
        "TOOL": "get_stream",
        "ARGUMENTS": json.dumps({"id": CAPITALS}),
    }

    result = await asyncio.to_thread(
        subprocess.run,
        [str(OFFICIAL_CLIENTS_PYTHON), "tests/clients/pay_mcp.py"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    paid = json.loads(result.stdout.strip().splitlines()[-1])
    assert paid["paymentMade"] is True and paid["isError"] is False, paid
    assert paid["protocolVersion"] == "2025-11-25"  # mcp 1.x's initialize handshake, accepted by the mcp 2.x server
    data = paid["structuredContent"]
    assert data["stream"] == CAPITALS and data["count"] == len(data["records"]) > 0
    settled = paid["paymentResponse"]
    assert settled["success"] is True and settled["network"] == devnet.network
    assert settled["payer"].lower() == payer.lower()
    mined = receipt(devnet, settled["transaction"])
    assert mined is not None and int(mined["status"], 16) == 1
    assert usdc_balance(devnet, payer) == FUNDED - 1000  # static.capitals' price, paid once
    [row] = await rows_of(pool, key)
    assert row["state"] == "settled" and row["tx_hash"] == settled["transaction"] and row["amount_atomic"] == 1000
