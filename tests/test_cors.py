"""CORS for browser payers: preflights answered before the abuse guard (never quoted, never counted, never read
for a payment), every non-admin answer readable cross-origin with the payment headers exposed once, origin lists
echoed with Vary; and a page on another origin paying in headless Chromium."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import asyncpg
import httpx
import pytest
from eth_account import Account
from prometheus_client import REGISTRY

from app.runtime.settings import LimitSettings, Settings
from payments.devnet.evm import EvmDevnet

from .chain import new_payer, pay_for
from .conftest import Gateway, running_gateway, with_settings
from .console_seed import CHROMIUM_ARGS, chromium_path

CAPITALS = "/v1/streams/static.capitals"
EXPOSED = "PAYMENT-REQUIRED, PAYMENT-RESPONSE, X-PAYMENT-RESPONSE"
PAGE_ORIGIN_HOST = "localhost"  # the gateway is on 127.0.0.1: another host and port, another origin


def preflight(origin: str = "https://shop.example", method: str = "GET") -> dict[str, str]:
    return {
        "origin": origin,
        "access-control-request-method": method,
        "access-control-request-headers": "payment-signature",
    }


async def options(gateway: Gateway, path: str, headers: dict[str, str]) -> httpx.Response:
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as client:
        return await client.options(path, headers=headers)


def header_values(answer: httpx.Response, name: str) -> list[str]:
    return answer.headers.get_list(name)


async def test_a_preflight_is_answered_for_any_public_route(gateway: Gateway) -> None:
    for path in (CAPITALS, "/v1/world", "/v1/streams", "/nowhere", "/openapi.json"):
        answer = await options(gateway, path, preflight())
        assert answer.status_code == 204, (path, answer.text)
        assert answer.headers["access-control-allow-origin"] == "*"
        assert answer.headers["access-control-allow-methods"] == "GET, HEAD"
        allowed = {h.strip().lower() for h in answer.headers["access-control-allow-headers"].split(",")}
        assert {"payment-signature", "x-payment", "content-type"} <= allowed
        assert int(answer.headers["access-control-max-age"]) > 0
        assert "payment-required" not in answer.headers and answer.content == b""
    mcp = await options(gateway, "/mcp", preflight(method="POST"))
    assert mcp.status_code == 204 and "POST" in mcp.headers["access-control-allow-methods"]
    # the operator's routes are same-origin only: no preflight answer, no CORS header
    admin = await options(gateway, "/admin/api/reports", preflight())
    assert admin.status_code != 204 and "access-control-allow-origin" not in admin.headers
    whoami = await gateway.get("/admin/api/whoami", headers={"origin": "https://shop.example"})
    assert "access-control-allow-origin" not in whoami.headers


async def test_every_public_answer_is_readable_cross_origin_with_the_payment_headers_exposed_once(
    gateway: Gateway,
) -> None:
    origin = {"origin": "https://shop.example"}
    for path, status in ((CAPITALS, 402), ("/v1/streams", 200), ("/.well-known/x402", 200), ("/nope", 404)):
        answer = await gateway.get(path, headers=origin)
        assert answer.status_code == status, path
        assert header_values(answer, "access-control-allow-origin") == ["*"], path
        assert header_values(answer, "access-control-expose-headers") == [EXPOSED], path  # once, not doubled
    bad = await gateway.get(CAPITALS, headers={**origin, "payment-signature": "bm90IGpzb24="})
    assert bad.status_code == 400 and header_values(bad, "access-control-expose-headers") == [EXPOSED]


async def test_a_preflight_is_never_counted_quoted_or_read(settings: Settings) -> None:
    """With a quote limit of 3 a minute, 20 preflights later the first real request is still the first counted."""
    tight = LimitSettings(free="100000/minute", quote="3/minute", payer="100000/minute")
    mine = with_settings(settings, limits=tight, cache_prefix=f"wgtest:{secrets.token_hex(4)}:")
    labels = {"route": "/v1/streams/{id}", "method": "OPTIONS", "status": "204"}
    before = REGISTRY.get_sample_value("worldgate_quotes_issued_total", {"route": CAPITALS}) or 0.0
    preflights = REGISTRY.get_sample_value("worldgate_http_requests_total", labels) or 0.0
    with running_gateway(mine) as gateway:
        headers = {**preflight(), "payment-signature": "not base64"}  # browsers send none; this one is never read
        for _ in range(20):
            assert (await options(gateway, CAPITALS, headers)).status_code == 204
        first = await gateway.get(CAPITALS)
        assert first.status_code == 402
        assert first.headers["ratelimit-limit"] == "3" and first.headers["ratelimit-remaining"] == "2"
    assert REGISTRY.get_sample_value("worldgate_quotes_issued_total", {"route": CAPITALS}) == before + 1
    assert REGISTRY.get_sample_value("worldgate_http_requests_total", labels) == preflights + 20


async def test_a_list_of_origins_is_echoed_and_varies(settings: Settings) -> None:
    allowed = "https://shop.example"
    mine = with_settings(settings, cors_origins=(allowed, "http://localhost:3000"))
    with running_gateway(mine) as gateway:
        ok = await options(gateway, CAPITALS, preflight(allowed))
        assert ok.status_code == 204 and ok.headers["access-control-allow-origin"] == allowed
        assert "origin" in ok.headers["vary"].lower()
        refused = await options(gateway, CAPITALS, preflight("https://evil.example"))
        assert refused.status_code == 403 and "access-control-allow-origin" not in refused.headers
        quote = await gateway.get(CAPITALS, headers={"origin": allowed})
        assert quote.headers["access-control-allow-origin"] == allowed and "origin" in quote.headers["vary"].lower()
        stranger = await gateway.get(CAPITALS, headers={"origin": "https://evil.example"})
        assert stranger.status_code == 402 and "access-control-allow-origin" not in stranger.headers
    with running_gateway(with_settings(settings, cors_origins=())) as gateway:  # off
        answer = await gateway.get(CAPITALS, headers={"origin": allowed})
        assert "access-control-allow-origin" not in answer.headers
        assert (await options(gateway, CAPITALS, preflight())).status_code == 405  # the gate's: GET and HEAD only


# ---- a page on another origin pays, in Chromium ----

PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>shop</title></head><body>
<script>
window.buy = async (url, signature) => {
  const quote = await fetch(url);
  const required = quote.headers.get('PAYMENT-REQUIRED');
  const offers = required ? JSON.parse(atob(required)).accepts : [];
  const paid = await fetch(url, { headers: { 'PAYMENT-SIGNATURE': signature } });
  const receipt = paid.headers.get('PAYMENT-RESPONSE');
  return {
    origin: location.origin,
    quoteStatus: quote.status,
    amount: offers.length ? offers[0].amount : null,
    paidStatus: paid.status,
    body: await paid.json(),
    receipt: receipt ? JSON.parse(atob(receipt)) : null,
  };
};
</script></body></html>"""


@pytest.fixture
def shop() -> Iterator[str]:
    """A tiny site on another origin serving the page above."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = PAGE.encode()
            self.send_response(200)
            self.send_header("content-type", "text/html; charset=utf-8")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{PAGE_ORIGIN_HOST}:{server.server_address[1]}/shop.html"
    finally:
        server.shutdown()
        server.server_close()


async def test_a_page_on_another_origin_pays_in_chromium(
    gateway: Gateway, devnet: EvmDevnet, pool: asyncpg.Pool, shop: str
) -> None:
    from playwright.async_api import async_playwright

    key = new_payer(devnet)
    payer = Account.from_key(key).address.lower()
    offer = await gateway.offer(CAPITALS)
    signature = pay_for(key, devnet, offer)  # signed here, handed to the page
    url = gateway.url + CAPITALS
    problems: list[str] = []
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS, headless=True)
        try:
            page = await browser.new_page()
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            await page.goto(shop)
            result = await page.evaluate("([url, signature]) => window.buy(url, signature)", [url, signature])
        finally:
            await browser.close()
    assert result["origin"] != gateway.url and result["origin"].startswith(f"http://{PAGE_ORIGIN_HOST}:")
    assert result["quoteStatus"] == 402 and result["amount"] == offer["amount"]  # PAYMENT-REQUIRED read from JS
    assert result["paidStatus"] == 200, result["body"]
    assert result["body"]["stream"] == "static.capitals" and result["body"]["count"] > 0
    receipt = result["receipt"]  # PAYMENT-RESPONSE read from JS
    assert receipt is not None and receipt["success"] is True and receipt["transaction"].startswith("0x")
    assert receipt["payer"].lower() == payer
    row = await pool.fetchrow("SELECT state, tx_hash FROM payments WHERE payer = $1", payer)
    assert row["state"] == "settled" and row["tx_hash"] == receipt["transaction"]
    assert not any("CORS" in p for p in problems), problems
