"""Small edge behaviours: JSON 404/405s, the landing page, GET /mcp answered at once, no method but GET/HEAD
declared on a paid route, and a payment naming another resource refused before any claim."""

from __future__ import annotations

import time
from typing import Any

import asyncpg
import httpx
from eth_account import Account

from payments.devnet.evm import EvmDevnet

from .chain import b64, new_payer, payment_document, unb64, usdc_balance
from .conftest import Gateway
from .test_mcp import connected

CAPITALS = "/v1/streams/static.capitals"
VOLCANOES = "/v1/streams/static.volcanoes"


async def test_unknown_paths_and_methods_answer_json(gateway: Gateway) -> None:
    for path in ("/nope", "/v1/streams/static.capitals/extra", "/v2/world"):
        answer = await gateway.get(path)
        assert answer.status_code == 404 and answer.headers["content-type"] == "application/json", path
        assert answer.json()["error"] == "not_found" and path in answer.json()["message"]
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as client:
        posted = await client.post("/v1/streams", json={})
        paid_post = await client.post(CAPITALS)
    assert posted.status_code == 405 and posted.json()["error"] == "method_not_allowed"
    assert "GET" in posted.headers["allow"]
    assert paid_post.status_code == 405 and paid_post.json()["error"] == "method_not_allowed"  # the gate's, as before


async def test_the_landing_page_links_what_is_here(gateway: Gateway) -> None:
    wanted = ("/llms.txt", "/openapi.json", "/v1/streams", "/.well-known/x402")
    as_json = await gateway.get("/", headers={"accept": "application/json"})
    assert as_json.status_code == 200 and as_json.headers["content-type"] == "application/json"
    links = as_json.json()["links"]
    assert set(wanted) <= set(links.values())
    for link in links.values():  # every link answers (GET /mcp with its hint)
        assert (await gateway.get(link)).status_code in (200, 405), link
    as_html = await gateway.get("/", headers={"accept": "text/html"})
    assert as_html.status_code == 200 and as_html.headers["content-type"].startswith("text/html")
    for link in wanted:
        assert f'href="{link}"' in as_html.text


async def test_get_mcp_without_an_event_stream_is_answered_at_once(gateway: Gateway) -> None:
    started = time.monotonic()
    async with httpx.AsyncClient(base_url=gateway.url, timeout=5) as client:
        answer = await client.get("/mcp")
        head = await client.head("/mcp", headers={"accept": "text/html"})
    assert time.monotonic() - started < 5
    assert answer.status_code == 405 and answer.headers["allow"] == "POST"
    assert answer.json() == {
        "error": "method_not_allowed",
        "message": "POST JSON-RPC to /mcp (streamable HTTP); see /llms.txt",
    }
    assert head.status_code == 405 and head.content == b""
    async with connected(gateway) as client:  # POST, as MCP clients do, is unchanged
        assert len((await client.list_tools()).tools) == 8  # six, and the time machine's get_history and get_coverage


async def test_no_paid_route_declares_a_method_it_does_not_answer(gateway: Gateway) -> None:
    spec = (await gateway.get("/openapi.json")).json()
    for path, item in spec["paths"].items():
        if "x-402-price" in item.get("get", {}):
            assert set(item) == {"get"}, path
    assert "DELETE" not in (await gateway.get("/openapi.json")).text
    assert "DELETE" not in (await gateway.get("/.well-known/x402")).text
    quote = await gateway.get(CAPITALS)
    declared = unb64(quote.headers["payment-required"])["extensions"]["bazaar"]
    assert declared["schema"]["properties"]["input"]["properties"]["method"]["enum"] == ["GET", "HEAD"]


def _paying_for(document: dict[str, Any], url: str) -> str:
    return b64({**document, "resource": {"url": url, "mimeType": "application/json"}})


async def test_a_payment_for_another_resource_is_refused_before_any_claim(
    gateway: Gateway, devnet: EvmDevnet, pool: asyncpg.Pool
) -> None:
    key = new_payer(devnet)
    payer = Account.from_key(key).address
    offer = await gateway.offer(CAPITALS)
    document = payment_document(key, devnet, offer)
    for elsewhere in (gateway.url + VOLCANOES, gateway.url + "/v1/world", "mcp://tool/get_stream", "not a url"):
        refused = await gateway.get(CAPITALS, headers={"PAYMENT-SIGNATURE": _paying_for(document, elsewhere)})
        assert refused.status_code == 402, (elsewhere, refused.text)
        assert refused.json()["error"] == "resource_mismatch" and "payment-response" not in refused.headers
        assert unb64(refused.headers["payment-required"])["error"] == "resource_mismatch"
    assert await pool.fetchval("SELECT count(*) FROM payments WHERE payer = $1", payer.lower()) == 0
    assert usdc_balance(devnet, payer) == 10_000_000
    # the same payment naming this route, under another host and a proxy's prefix (a public URL), is sold
    proxied = "https://public.example/api" + CAPITALS
    served = await gateway.get(CAPITALS, headers={"PAYMENT-SIGNATURE": _paying_for(document, proxied)})
    assert served.status_code == 200, served.text
    assert usdc_balance(devnet, payer) == 10_000_000 - int(offer["amount"])


async def test_an_mcp_payment_for_another_tool_is_refused_before_any_claim(
    gateway: Gateway, devnet: EvmDevnet, pool: asyncpg.Pool
) -> None:
    key = new_payer(devnet)
    payer = Account.from_key(key).address.lower()
    async with connected(gateway) as client:
        unpaid = await client.call_tool("get_stream", {"id": "static.capitals"})
        [offer] = [o for o in unpaid.structured_content["accepts"] if o["network"].startswith("eip155:")]
        document = payment_document(key, devnet, offer)
        wrong = {**document, "resource": {"url": "mcp://tool/get_world_state"}}
        refused = await client.call_tool("get_stream", {"id": "static.capitals"}, meta={"x402/payment": wrong})
    assert refused.is_error and refused.structured_content["error"] == "resource_mismatch"
    assert refused.structured_content["accepts"]  # a fresh PaymentRequired to pay again from
    assert await pool.fetchval("SELECT count(*) FROM payments WHERE payer = $1", payer) == 0
