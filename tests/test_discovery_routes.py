"""Discovery covers every route: each HTTP and WebSocket route the app serves is in /openapi.json, the time machine's
and live feeds' paid routes with their 402, the answers every route may give first, and the prices their 402s
quote; /llms.txt names those routes and their real prices. (tests/test_discovery.py checks the data routes.)"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from typing import Any

import httpx
import jsonschema
import pytest
from openapi_spec_validator import validate as validate_openapi
from openapi_spec_validator.validation import OpenAPIV31SpecValidator
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles

from .chain import unb64
from .conftest import Gateway

ALWAYS = {"405": "MethodNotAllowed", "413": "BodyTooLarge", "429": "RateLimited", "431": "HeadersTooLarge"}
TIMED = re.compile(r"^/v1/streams/([^/{}]+)/(history|at|live|live/ticket|live/renew)$")
DAY = ("2024-05-20T00:00:00Z", "2024-05-21T00:00:00Z")


@pytest.fixture
async def client(gateway: Gateway) -> Any:
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as http:
        yield http


def served(routes: list[BaseRoute], prefix: str = "") -> Iterator[tuple[str, set[str] | None]]:
    """Every route's path template (OpenAPI's spelling) and its methods (None: any, an ASGI app's; WebSocket: GET)."""
    for route in routes:
        if isinstance(route, Mount):
            if not isinstance(route.app, StaticFiles):  # files are not API
                yield from served(route.routes, prefix + route.path)
        elif isinstance(route, Route | WebSocketRoute):
            path = re.sub(r"\{(\w+):\w+\}", r"{\1}", prefix + route.path)  # {payer:path} -> {payer}
            methods = {"GET"} if isinstance(route, WebSocketRoute) else route.methods
            yield path, None if methods is None else methods - {"HEAD"}


def documented(spec: dict[str, Any], path: str, literal: set[str]) -> list[str]:
    """The document's paths for a route: its template itself, or (a paid route, documented per stream) the
    concrete paths it serves that are not routes of their own (/v1/streams/search is not a stream)."""
    if path in spec["paths"]:
        return [path]
    pattern = re.compile("^" + re.sub(r"\\\{\w+\\\}", "[^/{}]+", re.escape(path)) + "$")
    return [p for p in spec["paths"] if pattern.match(p) and p not in literal]


async def test_every_route_the_app_serves_is_documented(client: httpx.AsyncClient, gateway: Gateway) -> None:
    spec = (await client.get("/openapi.json")).json()
    validate_openapi(spec, cls=OpenAPIV31SpecValidator)
    routes = list(served(gateway.app.routes))
    assert len(routes) > 50 and ("/v1/streams/{id}/ws", {"GET"}) in routes  # the walk sees the live routes
    literal = {path for path, _ in routes if "{" not in path}
    for path, methods in routes:
        paths = documented(spec, path, literal)
        assert paths, f"{path} is served but not in /openapi.json"
        for found in paths:
            declared = {m.upper() for m in spec["paths"][found] if m != "parameters"}
            assert "GET" in declared, found  # every path has its GET (a 405 one when it takes none)
            assert methods is None or methods <= declared, (path, found, methods - declared)
    ws = spec["paths"]["/v1/streams/{id}/ws"]["get"]
    assert "101" in ws["responses"] and "WebSocket" in ws["description"] and "x-websocket" in ws
    assert "ticket" in {p["name"] for p in ws["parameters"]}


async def test_history_and_live_operations_are_paid_like_every_paid_route(
    client: httpx.AsyncClient, gateway: Gateway
) -> None:
    spec = (await client.get("/openapi.json")).json()
    manifest = (await client.get("/.well-known/x402")).json()
    sold = {item["url"].removeprefix(gateway.url) for item in manifest["resources"]}
    timed = {p for p in spec["paths"] if TIMED.match(p)}
    assert timed == {p for p in sold if TIMED.match(p)}  # every history and live route on sale, nothing else
    kinds = {TIMED.match(p).group(2) for p in timed}  # type: ignore[union-attr]
    assert kinds == {"history", "at", "live", "live/ticket"}  # renew: this gateway offers no batch-settlement
    assert "get" in spec["paths"]["/v1/streams/{id}/live/renew"]  # the route is still served, and documented
    for path in sorted(timed):
        operation = spec["paths"][path]["get"]
        responses = operation["responses"]
        assert operation["security"] == [{"x402": []}], path
        assert "PAYMENT-REQUIRED" in responses["402"]["headers"], path
        for status, name in ALWAYS.items():  # before the gate, as on every route
            assert responses[status] == {"$ref": f"#/components/responses/{name}"}, (path, status)
        assert {"200", "400", "403", "404", "409", "503"} <= set(responses), path
        assert set(operation["x-query-schema"]["properties"]) == {p["name"] for p in operation["parameters"]}, path
        kind = TIMED.match(path).group(2)  # type: ignore[union-attr]
        if kind == "history":
            assert "x-402-price" not in operation  # no one price: the range decides
            await check_history_pricing(client, path, operation)
        else:
            quoted = await client.get(path, params={"t": DAY[0]} if kind == "at" else None)
            assert quoted.status_code == 402, (path, quoted.text)
            amounts = {o["amount"] for o in unb64(quoted.headers["payment-required"])["accepts"]}
            assert amounts == {operation["x-402-price"]["amount_atomic"]}, path
            assert operation["x-402-price"]["usd"] in operation["description"]
        ok = operation["responses"]["200"]["content"]
        if "application/json" in ok and "example" in ok["application/json"]:
            media = ok["application/json"]
            jsonschema.validate(media["example"], {**media["schema"], "components": spec["components"]})
    live = spec["paths"][next(p for p in timed if p.endswith("/live"))]["get"]
    assert "text/event-stream" in live["responses"]["200"]["content"]
    coverage = spec["paths"]["/v1/streams/{id}/coverage"]
    assert "quakes.usgs" in coverage["parameters"][0]["schema"]["enum"]
    assert "static.capitals" not in coverage["parameters"][0]["schema"]["enum"]  # bundled: nothing recorded


async def check_history_pricing(client: httpx.AsyncClient, path: str, operation: dict[str, Any]) -> None:
    """What `x-402-pricing` says a range costs is what the 402 quotes for it."""
    pricing = operation["x-402-pricing"]
    block, unit = pricing["block_snapshots"], int(pricing["block_price"]["amount_atomic"])
    assert block >= 1 and unit > 0
    limit_max = next(p["schema"]["maximum"] for p in operation["parameters"] if p["name"] == "limit")
    for step, limit in ((None, None), (3600, None), (3600, 30), (600, 1000)):
        span_s = 86_400.0
        n = math.floor(span_s / (step or pricing["interval_s"])) + 1
        if limit is None and n > limit_max:
            continue  # refused with 400: too many snapshots for one ask
        n = min(n, limit) if limit is not None else n
        params = {"from": DAY[0], "to": DAY[1]}
        params |= {"step": str(step)} if step else {}
        params |= {"limit": str(limit)} if limit else {}
        quoted = await client.get(path, params=params)
        assert quoted.status_code == 402, (path, params, quoted.text)
        required = unb64(quoted.headers["payment-required"])
        assert {o["amount"] for o in required["accepts"]} == {str(unit * math.ceil(n / block))}, (path, params)
    assert pricing["block_price"]["usd"] in operation["description"]


async def test_llms_txt_names_the_history_and_live_routes_at_their_prices(
    client: httpx.AsyncClient, gateway: Gateway
) -> None:
    text = (await client.get("/llms.txt")).text
    for route in (
        "/v1/streams/{id}/history?from=&to=",
        "/v1/streams/{id}/at?t=",
        "/v1/streams/{id}/coverage",
        "/v1/streams/{id}/live`",
        "/v1/streams/{id}/live/ticket",
        "/v1/streams/{id}/ws?ticket=",
        "/v1/streams/{id}/live/events?ticket=",
        "get_history",
    ):
        assert route in text, route
    section = text.split("## History and live feeds", 1)[1].split("\n## ", 1)[0]
    assert "static.capitals" not in section and "weather.current" not in section  # bundled, or read at a point
    window_line = re.compile(r"^- \$[0-9.]+ a window \((\d+) atomic units\): (.*)$", re.MULTILINE)
    windows = {m.group(1): m.group(2).split(", ") for m in window_line.finditer(section)}
    assert windows
    for amount, streams in windows.items():  # each stream on the line of the price its /live quotes
        for stream in streams:
            quoted = await client.get(f"/v1/streams/{stream}/live")
            assert quoted.status_code == 402, quoted.text
            assert {o["amount"] for o in unb64(quoted.headers["payment-required"])["accepts"]} == {amount}, stream
    block = re.search(r"per started block of (\d+) snapshots", section)
    assert block is not None
    history = (await client.get("/openapi.json")).json()["paths"]["/v1/streams/quakes.usgs/history"]["get"]
    assert int(block.group(1)) == history["x-402-pricing"]["block_snapshots"]
