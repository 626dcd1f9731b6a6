"""Discovery as agents look for it: the bazaar's /discovery/resources and /discovery/search read by the official
x402 SDK's bazaar client, their filters and refusals, and the well-known manifest they agree with."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from adapters import Registry

from .conftest import Gateway

pytest.importorskip("x402.extensions.bazaar")
from x402.extensions.bazaar import (
    ListDiscoveryResourcesParams,
    SearchDiscoveryResourcesParams,
    with_bazaar,
)
from x402.extensions.bazaar.facilitator import _is_valid_service_name, _sanitize_tags
from x402.http import FacilitatorConfig, HTTPFacilitatorClientSync


def bazaar(gateway: Gateway) -> Any:
    """The SDK's bazaar client, pointed at the gateway as it would be at a facilitator."""
    return with_bazaar(HTTPFacilitatorClientSync(FacilitatorConfig(url=gateway.url, timeout=30)))


async def manifest(gateway: Gateway) -> dict[str, dict[str, Any]]:
    document = (await gateway.get("/.well-known/x402")).json()
    return {item["url"]: item for item in document["resources"]}


async def test_the_sdk_pages_through_every_paid_resource(gateway: Gateway) -> None:
    client = bazaar(gateway)
    listed: list[Any] = []
    offset, total = 0, None
    while total is None or offset < total:
        page = await asyncio.to_thread(
            client.extensions.bazaar.list_resources, ListDiscoveryResourcesParams(type="http", limit=7, offset=offset)
        )
        assert page.x402_version == 2 and page.pagination.limit == 7 and page.pagination.offset == offset
        total = page.pagination.total
        assert len(page.items) == min(7, total - offset)
        listed += page.items
        offset += 7
    known = await manifest(gateway)
    assert [item.resource for item in listed] == list(known)  # every paid resource, in the manifest's order
    assert total == len(known) > 3 * len(Registry().all())  # data, history and live routes
    for item in listed:
        assert item.accepts == known[item.resource]["accepts"] and item.x402_version == 2 and item.type == "http"
        assert item.description == known[item.resource]["description"]
        assert item.mime_type == known[item.resource]["mimeType"] in ("application/json", "text/event-stream")
        # within the bazaar's limits: what its own sanitizers keep is everything we sent
        assert _is_valid_service_name(item.service_name) and _sanitize_tags(item.tags) == item.tags
        assert item.last_updated and "bazaar" in (item.extensions or {})


async def test_the_sdk_searches_and_finds_the_quake_streams_first(gateway: Gateway) -> None:
    client = bazaar(gateway)
    found = await asyncio.to_thread(
        client.extensions.bazaar.search, SearchDiscoveryResourcesParams(query="earthquake", limit=5)
    )
    assert found.x402_version == 2 and len(found.resources) == 5 and found.partial_results is True
    assert found.resources[0].resource == gateway.url + "/v1/streams/quakes.usgs"
    assert all("/quakes.usgs" in r.resource for r in found.resources)  # the stream named for it ranks first
    assert found.pagination is not None and found.pagination.cursor == "5"
    rest = await asyncio.to_thread(
        client.extensions.bazaar.search, SearchDiscoveryResourcesParams(query="earthquake", cursor="5", limit=50)
    )
    urls = [r.resource for r in found.resources + rest.resources]
    assert len(urls) == len(set(urls)) and rest.partial_results is False
    assert gateway.url + "/v1/streams/disasters.gdacs" in urls  # GDACS alerts include earthquakes too

    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as http:
        plain = (await http.get("/discovery/search", params={"q": "Earthquakes"})).json()
        assert plain["resources"][0]["resource"].endswith("/v1/streams/quakes.usgs")
        buoys = (await http.get("/discovery/search", params={"q": "buoy waves", "limit": 100})).json()
        assert {r["metadata"]["stream"] for r in buoys["resources"]} == {"buoys.waves"}
        for refused in ({}, {"q": ""}, {"q": "x" * 101}, {"q": "quake", "limit": "0"}, {"q": "quake", "cursor": "-1"}):
            answer = await http.get("/discovery/search", params=refused)
            assert answer.status_code == 400 and answer.json()["error"] == "invalid_query", refused


async def test_the_list_filters_and_refuses_a_malformed_page(gateway: Gateway) -> None:
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as http:

        async def page(**params: Any) -> dict[str, Any]:
            answer = await http.get("/discovery/resources", params=params)
            assert answer.status_code == 200, answer.text
            assert answer.headers["cache-control"].startswith("public")
            return answer.json()  # type: ignore[no-any-return]

        everything = await page(limit=100)
        assert everything["pagination"] == {"limit": 100, "offset": 0, "total": everything["pagination"]["total"]}
        assert len(everything["items"]) == 100 < everything["pagination"]["total"]
        assert len((await page())["items"]) == 20  # the bazaar's default page
        hazards = await page(category="hazards", limit=100)
        assert hazards["items"] and {i["metadata"]["category"] for i in hazards["items"]} == {"hazards"}
        assert (await page(type="mcp"))["pagination"]["total"] == 0
        some = everything["items"][0]
        offer = some["accepts"][0]
        total = everything["pagination"]["total"]
        assert (await page(network=offer["network"]))["pagination"]["total"] == total  # every offer on both chains
        assert (await page(payTo=offer["payTo"].upper(), network=offer["network"]))["pagination"]["total"] == total
        assert (await page(scheme="upto"))["pagination"]["total"] == 0
        assert (await page(extensions="bazaar"))["pagination"]["total"] == total
        beyond = await page(offset=total)
        assert beyond["items"] == [] and beyond["pagination"]["total"] == total
        for refused in ({"limit": "0"}, {"limit": "101"}, {"limit": "ten"}, {"offset": "-1"}, {"offset": "1e3"}):
            answer = await http.get("/discovery/resources", params=refused)
            assert answer.status_code == 400 and answer.json()["error"] == "invalid_query", refused
            assert answer.headers["cache-control"] == "no-store"


async def test_openapi_documents_the_discovery_routes(gateway: Gateway) -> None:
    spec = (await gateway.get("/openapi.json")).json()
    for path in ("/.well-known/x402", "/.well-known/x402.json", "/discovery/resources", "/discovery/search"):
        operation = spec["paths"][path]["get"]
        assert "security" not in operation and "free" in operation["tags"], path
    search = {p["name"] for p in spec["paths"]["/discovery/search"]["get"]["parameters"]}
    assert {"q", "query", "limit", "cursor", "category"} <= search
    listing = {p["name"] for p in spec["paths"]["/discovery/resources"]["get"]["parameters"]}
    assert {"type", "category", "limit", "offset", "scheme", "network", "payTo", "extensions"} <= listing
