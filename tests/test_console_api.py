"""The console's admin API (issue 18): the system, scheduler, matrix, users, audit and payments views, the actions
(force a fetch, flush batch settlement, bans with an expiry, sharing), each kept in the audit log, and sharing
enforced at serve time, including the maintenance the source watch sets and clears after a source's health."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from typing import Any

import asyncpg
import httpx
import pytest
import redis.asyncio as aioredis
from eth_account import Account
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

import ledger
from adapters import STREAMS, ReplayServer
from app.edge.admin.address_guard import AddressGuard
from app.runtime.settings import BatchSettings, Settings, replace
from app.usecases.controls import Controls
from app.wiring import MIGRATIONS_DIR
from payments.devnet.evm import EvmDevnet

from .chain import new_payer, pay_for
from .conftest import Gateway, running_gateway, with_settings
from .services import Database, ServerThread
from .test_admin import bearer, token

QUAKES = "quakes.usgs"
USGS_HOST = "earthquake.usgs.gov"
CAPITALS = "/v1/streams/static.capitals"


@pytest.fixture(scope="module")
async def console_db(database: Database) -> AsyncIterator[str]:
    """A migrated database of this module's own: its sharing, bans and audit log are this module's alone."""
    name = f"wg_console_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(database.admin_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = database.url.replace(database.name, name)
    try:
        await ledger.migrate(url, MIGRATIONS_DIR)
        yield url
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture(scope="module")
def site(settings: Settings, console_db: str) -> Iterator[Gateway]:
    """Batch settlement offered (to a payTo of its own, so a flush sweeps nothing of another test's), its timers far
    off; a cache of its own."""
    assert settings.evm is not None
    changed = with_settings(
        settings,
        database_url=console_db,
        schemes=("exact", "batch-settlement"),
        batch=BatchSettings(claim_interval_s=3600, settle_interval_s=3600),
        evm=replace(settings.evm, pay_to=Account.create().address),
        cache_prefix=f"wgtest:{secrets.token_hex(4)}:",
    )
    with running_gateway(changed) as gateway:
        yield gateway


@pytest.fixture
async def pool(console_db: str) -> AsyncIterator[asyncpg.Pool]:
    connections = await ledger.create_pool(console_db, size_min=1, size_max=2)
    yield connections
    await connections.close()


async def call(gateway: Gateway, method: str, path: str, **kwargs: Any) -> httpx.Response:
    headers = {**bearer(token()), **kwargs.pop("headers", {})}
    async with httpx.AsyncClient(base_url=gateway.url, timeout=60) as client:
        return await client.request(method, path, headers=headers, **kwargs)


async def audit(gateway: Gateway, action: str) -> list[dict[str, Any]]:
    answer = await call(gateway, "GET", "/admin/api/audit", params={"action": action})
    assert answer.status_code == 200, answer.text
    entries: list[dict[str, Any]] = answer.json()["entries"]
    return entries


async def share(gateway: Gateway, stream: str, state: str) -> None:
    answer = await call(gateway, "PUT", f"/admin/api/streams/{stream}/sharing", json={"sharing": state})
    assert answer.status_code == 200, answer.text


# ---- the views ----


async def test_the_views_answer_their_fields_and_only_to_an_admin(site: Gateway) -> None:
    views = ("system", "scheduler", "matrix", "users", "audit", "api-status", "payments/summary", "payments/pending")
    async with httpx.AsyncClient(base_url=site.url, timeout=30) as anonymous:
        for view in views:
            assert (await anonymous.get(f"/admin/api/{view}")).status_code == 401, view
        for path in ("/admin/api/batch/flush", f"/admin/api/streams/{QUAKES}/fetch"):
            assert (await anonymous.post(path)).status_code == 401, path

    system = (await call(site, "GET", "/admin/api/system")).json()
    assert system["version"] and system["uptime_s"] >= 0
    mode = system["mode"]
    assert mode["upstreams"] == "replay" and mode["chain"] == "devnet" and mode["facilitator"] == "local"
    assert {n["kind"] for n in mode["networks"]} == {"devnet"} and len(mode["networks"]) == 2
    assert mode["parts"]["chains"] == "devnet" and mode["parts"]["database"] == "configured"
    assert mode["schemes"] == ["exact", "batch-settlement"] and mode["scheduler"] is False
    assert system["connected_users"]["admin_sessions"] >= 1  # this very token
    assert system["connected_users"]["live_subscribers"] == 0  # live feeds on, nobody listening
    scheduled = {s.adapter for s in STREAMS if s.adapter and s.interval_s and not s.point}
    assert system["streams"]["total"] == len(STREAMS) and system["sources_total"] == len(scheduled)
    assert 0 <= system["sources_fetched"] <= system["sources_total"]
    assert system["total_points"] > 0  # the bundled sets are always there
    actions = system["actions"]
    assert actions["batch_flush"]["available"] is True and actions["reconcile"]["available"] is True
    assert actions["live_feeds"] == {"available": True, "why": None}

    scheduler = (await call(site, "GET", "/admin/api/scheduler")).json()
    assert scheduler["running"] is False and scheduler["refresh_at"] == 0.8
    tiers = {t["tier"]: t for t in scheduler["tiers"]}
    assert tiers["1 h"]["interval_s"] == 3600 and tiers["1 h"]["fetch_every_s"] == 2880
    bundled = sum(1 for s in STREAMS if s.interval_s is None)
    assert tiers["static"]["bundled"] == bundled == tiers["static"]["total"] and bundled >= 2
    assert sum(t["total"] for t in scheduler["tiers"]) == len(STREAMS)
    for tier in scheduler["tiers"]:
        assert set(tier) >= {"interval_s", "fetch_every_s", "total", "shared", "fresh", "stale", "never"}
    by_id = {s["id"]: s for s in scheduler["streams"]}
    assert by_id["weather.current"]["mode"] == "on_demand" and by_id["static.capitals"]["mode"] == "bundled"
    assert set(by_id[QUAKES]) >= {"type", "interval_s", "elapsed_s", "next_in_s", "freshness", "sharing"}

    matrix = {s["id"]: s for s in (await call(site, "GET", "/admin/api/matrix")).json()["streams"]}
    grid = matrix["weather.grid.temperature"]
    assert grid["parent"] == "open-meteo.grid" and matrix[QUAKES]["parent"] is None
    assert grid["recorded"] is True and grid["backfill"]["max_days"] == 90 and grid["backfill"]["days_done"] == 0
    assert matrix["static.capitals"]["recorded"] is False and matrix["static.capitals"]["points"] > 0
    assert matrix["iss.position"]["backfill"] is None  # recorded, but its upstream keeps no past
    for row in matrix.values():
        assert set(row) >= {"category", "type", "upstream", "interval_s", "fetched_at", "freshness", "health"}
        assert set(row) >= {"sharing", "sharing_set_by", "points", "backfill", "parent", "price_atomic"}

    users = (await call(site, "GET", "/admin/api/users")).json()
    assert any(s["subject"] == "ops@test" and s["via"] == "bearer" for s in users["admin_sessions"])
    assert users["live_subscribers"] == {"available": True, "feeds": [], "why": None}
    status = (await call(site, "GET", "/admin/api/api-status")).json()
    assert all(r["route"].startswith("/v1") or r["route"] in ("/metrics", "/mcp") for r in status["routes"])
    bad = await call(site, "GET", "/admin/api/payments/summary", params={"from": "yesterday"})
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_query"


async def test_payments_summary_pending_and_search_by_scheme(site: Gateway, devnet: EvmDevnet) -> None:
    key = new_payer(devnet)
    payer = Account.from_key(key).address.lower()
    async with httpx.AsyncClient(base_url=site.url, timeout=30) as client:
        quote = await client.get(CAPITALS)
        [offer] = [o for o in quote.json()["accepts"] if o["scheme"] == "exact" and o["network"].startswith("eip155")]
        paid = await client.get(CAPITALS, headers={"PAYMENT-SIGNATURE": pay_for(key, devnet, offer)})
    assert paid.status_code == 200, paid.text

    exact = {"payer": payer, "scheme": "v2-eip155-exact"}
    found = (await call(site, "GET", "/admin/api/payments", params=exact)).json()
    assert [p["scheme_id"] for p in found["payments"]] == ["v2-eip155-exact"]
    other = await call(site, "GET", "/admin/api/payments", params={"payer": payer, "scheme": "v2-solana-exact"})
    assert other.json()["count"] == 0
    summary = (await call(site, "GET", "/admin/api/payments/summary")).json()
    [row] = [r for r in summary["rows"] if r["network"] == devnet.network and r["scheme_id"] == "v2-eip155-exact"]
    assert row["sales"] >= 1 and row["revenue_atomic"] >= 1000 and row["unsettled_atomic"] == 0
    assert summary["totals"]["revenue_atomic"] == sum(r["revenue_atomic"] for r in summary["rows"])
    pending = (await call(site, "GET", "/admin/api/payments/pending")).json()
    assert all(p["state"] in ("served", "settling", "accepted", "claimed_onchain") for p in pending["payments"])
    users = (await call(site, "GET", "/admin/api/users")).json()
    assert any(p["payer"] == payer and p["settled"] == 1 for p in users["payers"])


# ---- actions, each in the audit log ----


async def test_bans_with_an_expiry_and_every_change_in_the_audit_log(
    site: Gateway, devnet: EvmDevnet, pool: asyncpg.Pool
) -> None:
    key = new_payer(devnet)
    payer = Account.from_key(key).address
    body = {"payer": payer, "reason": "scraping", "expires_in_s": 3600}
    banned = await call(site, "POST", "/admin/api/bans", json=body)
    assert banned.status_code == 201 and banned.json()["kind"] == "payer"
    expires = banned.json()["expires_at"]
    assert 3590 <= (_unix(expires) - time.time()) <= 3600
    listed = (await call(site, "GET", "/admin/api/bans")).json()
    assert [b["expires_at"] for b in listed["bans"] if b["payer"] == payer.lower()] == [expires]
    offer = next(o for o in (await site.get(CAPITALS)).json()["accepts"] if o["network"].startswith("eip155"))
    refused = await site.get(CAPITALS, headers={"PAYMENT-SIGNATURE": pay_for(key, devnet, offer)})
    assert refused.status_code == 403 and refused.json()["error"] == "payer_banned"
    assert (await call(site, "DELETE", f"/admin/api/bans/{payer}")).status_code == 200

    for wrong in (
        {"payer": payer, "reason": "x", "expires_in_s": 5},
        {"payer": payer, "reason": "x", "expires_at": "2001-01-01"},
        {"payer": payer, "address": "10.0.0.1", "reason": "x"},
        {"address": "not-an-ip", "reason": "x"},
        {"address": "10.0.0.1/8", "reason": "x"},  # host bits set: not a network
        {"payer": payer},
    ):
        assert (await call(site, "POST", "/admin/api/bans", json=wrong)).status_code == 400, wrong
    # an address ban binds at once, before anything else reads the request; the admin pages stay open to lift it
    assert (await site.get("/v1/streams")).status_code == 200
    banned = await call(site, "POST", "/admin/api/bans", json={"address": "127.0.0.0/8", "reason": "abuse"})
    assert banned.status_code == 201 and banned.json()["address"] == "127.0.0.0/8", banned.text
    refused = await site.get("/v1/streams")
    assert refused.status_code == 403 and refused.json()["error"] == "address_banned"
    listed = (await call(site, "GET", "/admin/api/bans")).json()
    assert listed["addresses_enforced"] is True and [a["address"] for a in listed["address_bans"]] == ["127.0.0.0/8"]
    assert (await call(site, "DELETE", "/admin/api/bans/127.0.0.0/8")).status_code == 200
    assert (await site.get("/v1/streams")).status_code == 200

    await share(site, "static.volcanoes", "maintenance")
    await share(site, "static.volcanoes", "ok")
    bans = [e for e in await audit(site, "ban.") if e["target"] == payer.lower()]
    addressed = [(e["action"], e["target"]) for e in await audit(site, "ban.") if e["target"] == "127.0.0.0/8"]
    assert addressed == [("ban.remove", "127.0.0.0/8"), ("ban.add", "127.0.0.0/8")]
    assert [(e["action"], e["target"], e["actor"]) for e in bans[:2]] == [
        ("ban.remove", payer.lower(), "ops@test"),
        ("ban.add", payer.lower(), "ops@test"),
    ]
    assert bans[1]["detail"]["reason"] == "scraping" and bans[1]["detail"]["expires_at"]
    sharing = await audit(site, "sharing.set")
    assert [(e["target"], e["detail"]["sharing"]) for e in sharing[:2]] == [
        ("static.volcanoes", "ok"),
        ("static.volcanoes", "maintenance"),
    ]

    ran = await call(site, "POST", "/admin/api/reconcile")
    assert ran.status_code == 200
    [run] = (await audit(site, "reconcile.run"))[:1]
    assert run["actor"] == "ops@test" and run["detail"]["checked"] == ran.json()["checked"]

    flushed = await call(site, "POST", "/admin/api/batch/flush")
    assert flushed.status_code == 200, flushed.text
    assert flushed.json()["claims"] == 0 and flushed.json()["settled_atomic"] == 0  # nothing owed to this payTo
    [flush] = (await audit(site, "batch.flush"))[:1]
    assert flush["target"] == devnet.network and flush["detail"]["claims"] == 0
    assert await pool.fetchval("SELECT count(*) FROM admin_audit WHERE jsonb_typeof(detail) <> 'object'") == 0
    with pytest.raises(asyncpg.RaiseError, match="append-only"):
        await pool.execute("UPDATE admin_audit SET actor = 'someone else'")


async def test_a_ban_ends_at_its_expiry_without_a_reload(pool: asyncpg.Pool) -> None:
    controls = Controls(pool, lambda _sharing: None)
    payer = "0x" + secrets.token_hex(20)
    await pool.execute(
        "INSERT INTO payer_bans (payer, reason, created_by, expires_at)"
        " VALUES ($1, 'test', 't', now() + interval '1 s')",
        payer,
    )
    await controls.reload()
    assert controls.is_banned(payer)
    await asyncio.sleep(1.2)
    assert not controls.is_banned(payer)  # the copy still holds the ban; its end is checked against the clock
    await controls.reload()
    assert not controls.is_banned(payer)  # and an expired ban is not loaded at all


async def test_the_address_guard_refuses_a_banned_client_but_not_the_admin(pool: asyncpg.Pool) -> None:
    """The guard as the wiring would add it, over the controls, with a ban made through the ledger."""
    controls = Controls(pool, lambda _sharing: None)

    async def hello(_request: Any) -> PlainTextResponse:
        return PlainTextResponse("hello")

    app = Starlette(routes=[Route("/v1/streams", hello), Route("/admin/", hello)])
    app.add_middleware(AddressGuard, banned=controls.address_banned)
    server = ServerThread(app).start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            assert (await client.get("/v1/streams")).status_code == 200
            await ledger.operator.ban_address(pool, "127.0.0.0/8", "loopback abuse", "ops@test")
            await controls.reload()
            refused = await client.get("/v1/streams")
            assert refused.status_code == 403 and refused.json()["error"] == "address_banned"
            assert (await client.get("/admin/")).status_code == 200  # the operator can still lift it
            assert await ledger.operator.unban_address(pool, "127.0.0.0/8", "ops@test") == "127.0.0.0/8"
            await controls.reload()
            assert (await client.get("/v1/streams")).status_code == 200
    finally:
        server.stop()
    assert controls.address_banned("::ffff:127.0.0.1") is False and controls.address_banned("junk") is False


# ---- sharing at serve time ----


async def mcp_streams(gateway: Gateway) -> set[str]:
    request = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "list_streams", "arguments": {}}}
    headers = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as client:
        answer = await client.post("/mcp", content=json.dumps(request), headers=headers)
    assert answer.status_code == 200, answer.text
    return {s["id"] for s in answer.json()["result"]["structuredContent"]["streams"]}


async def public_view(gateway: Gateway, stream: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as client:
        catalog = {s["id"]: s["sharing"] for s in (await client.get("/v1/streams")).json()["streams"]}
        found = {s["id"] for s in (await client.get("/v1/streams/search", params={"q": stream})).json()["streams"]}
        known = (await client.get("/.well-known/x402")).json()
        direct = await client.get(f"/v1/streams/{stream}")
    resources = json.dumps(known)
    return {
        "catalog": catalog.get(stream),
        "search": stream in found,
        "discovery": f"/v1/streams/{stream}" in resources,
        "mcp": stream in await mcp_streams(gateway),
        "status": direct.status_code,
    }


async def test_not_shared_disappears_from_every_listing_within_one_refresh(site: Gateway) -> None:
    stream = "space.kp"
    try:
        await share(site, stream, "not_shared")
        hidden = await public_view(site, stream)
        assert hidden == {"catalog": None, "search": False, "discovery": False, "mcp": False, "status": 404}
        matrix = {s["id"]: s for s in (await call(site, "GET", "/admin/api/matrix")).json()["streams"]}
        assert matrix[stream]["sharing"] == "not_shared" and matrix[stream]["sharing_set_by"] == "ops@test"
    finally:
        await share(site, stream, "ok")
    shown = await public_view(site, stream)
    assert shown == {"catalog": "ok", "search": True, "discovery": True, "mcp": True, "status": 402}


def _unix(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


async def _forget(gateway: Gateway, prefix: str, source: str, kinds: tuple[str, ...]) -> None:
    """Delete the source's failure keys of these kinds in Redis, and this worker's cached copy of them (and of
    the value): `neg` alone is the 30-second failure marker (the next read asks again); with `circuit` and
    `failures` too it is what five quiet minutes would do."""
    redis = aioredis.from_url(gateway.app.state.settings.redis_url)
    try:
        await redis.delete(*(f"{prefix}{kind}:{source}" for kind in kinds))
    finally:
        await redis.aclose()
    gateway.app.state.services.tier.cache.forget()


async def test_maintenance_follows_a_sources_failures_and_its_next_success(site: Gateway, replay: ReplayServer) -> None:
    """A source that keeps failing has its streams sold as maintenance (the operator's sharing untouched), and sold
    again after its next success; each change once in the audit log, as `system`."""
    prefix = site.app.state.settings.cache_prefix
    source = "usgs.earthquakes"
    fetch = f"/admin/api/streams/{QUAKES}/fetch"
    first = (await call(site, "POST", fetch)).json()
    assert first["outcome"] == "fetched" and first["records"] > 0 and first["sharing_changed"] == []
    try:
        replay.fault(USGS_HOST, "status_500")
        changed = []
        for _ in range(2):  # two failed fetches in a row open the source's circuit
            await _forget(site, prefix, source, ("neg",))
            failed = (await call(site, "POST", fetch)).json()
            assert failed["outcome"] == "failed", failed
            changed.append(failed["sharing_changed"])
        assert changed == [[], [QUAKES]]
        view = await public_view(site, QUAKES)
        assert view["catalog"] == "maintenance" and view["status"] == 503 and view["discovery"] is False
        matrix = {s["id"]: s for s in (await call(site, "GET", "/admin/api/matrix")).json()["streams"]}
        assert matrix[QUAKES]["sharing"] == "maintenance" and matrix[QUAKES]["sharing_automatic"] is True
        assert matrix[QUAKES]["sharing_set_by"] is None  # the operator's sharing is untouched
        assert matrix[QUAKES]["health"] == "failing"
        [entry] = await audit(site, "sharing.auto")
        assert entry["actor"] == "system" and entry["target"] == source and entry["detail"]["streams"] == [QUAKES]
        assert entry["detail"]["sharing"] == "maintenance" and "HTTP 500" in entry["detail"]["why"]
    finally:
        replay.reset()
    await _forget(site, prefix, source, ("neg", "circuit", "failures"))  # the circuit half-opens
    back = (await call(site, "POST", fetch)).json()
    assert back["outcome"] == "fetched" and back["sharing_changed"] == [QUAKES]
    assert (await public_view(site, QUAKES))["catalog"] == "ok"
    entries = await audit(site, "sharing.auto")
    assert [e["detail"]["sharing"] for e in entries] == ["ok", "maintenance"]
    actions = [e["detail"]["outcome"] for e in await audit(site, "stream.fetch")]
    assert actions[:4] == ["fetched", "failed", "failed", "fetched"]


# ---- the OpenAPI document ----


async def test_openapi_documents_the_admin_api_mcp_metrics_and_the_early_answers(site: Gateway) -> None:
    from openapi_spec_validator import validate
    from openapi_spec_validator.validation import OpenAPIV31SpecValidator
    from starlette.routing import Route as StarletteRoute

    spec = (await site.get("/openapi.json")).json()
    validate(spec, cls=OpenAPIV31SpecValidator)
    paths = spec["paths"]
    routes = [r for r in site.app.routes if isinstance(r, StarletteRoute) and r.path.startswith("/admin/api/")]
    assert len(routes) >= 30
    for route in routes:  # every admin route, with every method it takes (HEAD rides on GET)
        path = route.path.replace(":path}", "}")  # Starlette's converter is not OpenAPI's
        assert path in paths, path
        documented = {m.upper() for m in paths[path] if m != "parameters"}
        assert (route.methods or set()) - {"HEAD"} <= documented, path
        for method, operation in paths[path].items():
            if method != "parameters" and set(operation["responses"]) != {"405"}:
                assert operation["security"] == [{"adminBearer": []}, {"adminSession": []}], route.path
                assert "401" in operation["responses"], route.path
    for view in ("/admin/api/system", "/admin/api/scheduler"):
        assert {"200", "401", "405", "413", "429", "431"} <= set(paths[view]["get"]["responses"])
    assert paths["/admin/api/reconcile"]["get"]["responses"] == {
        "405": {"$ref": "#/components/responses/MethodNotAllowed"}
    }
    assert "post" in paths["/mcp"] and set(paths["/mcp"]["get"]["responses"]) == {"405"}
    assert {"200", "401", "429"} <= set(paths["/metrics"]["get"]["responses"])
    for free in ("/v1/streams", "/v1/health", "/openapi.json"):
        assert {"405", "413", "429", "431"} <= set(paths[free]["get"]["responses"]), free
    assert {"MethodNotAllowed", "BodyTooLarge", "RateLimited", "HeadersTooLarge"} <= set(
        spec["components"]["responses"]
    )
    assert {"adminBearer", "adminSession", "metricsBearer", "x402"} <= set(spec["components"]["securitySchemes"])
    # what the document says of a POST-only path is what the server answers to a GET
    async with httpx.AsyncClient(base_url=site.url, timeout=30, headers=bearer(token())) as client:
        assert (await client.get("/admin/api/reconcile")).status_code == 405
        assert (await client.get("/mcp")).status_code == 405


async def test_a_source_that_starts_unshared_is_opted_in_by_the_operator(settings: Settings, console_db: str) -> None:
    """A stream whose registry entry starts `not_shared` (as the sharing model has a new source start) is nowhere in
    public until an operator shares it, from the console's matrix, where it is listed all along."""
    import dataclasses

    from adapters import Registry, Sharing

    capitals = next(s for s in STREAMS if s.id == "static.capitals")
    newcomer = dataclasses.replace(capitals, id="static.newcomer", sharing=Sharing.NOT_SHARED)
    registry = Registry([*STREAMS, newcomer])
    with running_gateway(with_settings(settings, database_url=console_db), registry=registry) as gateway:
        try:
            assert await public_view(gateway, "static.newcomer") == {
                "catalog": None,
                "search": False,
                "discovery": False,
                "mcp": False,
                "status": 404,
            }
            matrix = {s["id"]: s for s in (await call(gateway, "GET", "/admin/api/matrix")).json()["streams"]}
            assert matrix["static.newcomer"]["sharing"] == "not_shared"
            assert matrix["static.newcomer"]["sharing_set_by"] is None  # its registry default, nobody's change
            await share(gateway, "static.newcomer", "ok")
            shared = await public_view(gateway, "static.newcomer")
            assert shared == {"catalog": "ok", "search": True, "discovery": True, "mcp": True, "status": 402}
        finally:
            await share(gateway, "static.newcomer", "not_shared")


async def test_the_watch_waits_out_a_short_failure_and_writes_each_change_once(
    pool: asyncpg.Pool, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two workers' watches over one Redis: a circuit open for less than FAILING_S changes nothing; past it both
    sell the source's streams as maintenance, and the audit log says so once."""
    import redis.asyncio as aioredis

    from adapters import CacheTier, DataTier, Fetcher, Registry
    from adapters.sources import all_adapters
    from app.usecases import source_watch
    from app.usecases.source_watch import SourceWatch

    prefix = f"wgtest:{secrets.token_hex(4)}:"
    redis = aioredis.from_url(redis_url)
    try:
        async with httpx.AsyncClient() as http:
            tier = DataTier(Registry(), all_adapters(), CacheTier(redis, Fetcher(http), prefix=prefix))
            workers = [SourceWatch(pool, lambda: tier, Registry) for _ in range(2)]
            await redis.set(f"{prefix}circuit:noaa-swpc.kp", "open", px=60_000)  # as two failures leave it
            assert [await w.check() for w in workers] == [False, False]  # failing, but only just
            monkeypatch.setattr(source_watch, "FAILING_S", 0.0)
            assert [await w.check() for w in workers] == [True, True]
            assert workers[1].overlay({})["space.kp"] == "maintenance"
            assert workers[1].overlay({"space.kp": "not_shared"})["space.kp"] == "not_shared"  # the operator's
            await redis.delete(f"{prefix}circuit:noaa-swpc.kp")
            tier.cache.forget()
            assert [await w.check() for w in workers] == [True, True]
            assert workers[0].overlay({}) == {}
    finally:
        await redis.aclose()
    rows = await pool.fetch("SELECT detail FROM admin_audit WHERE action = 'sharing.auto' AND target = 'noaa-swpc.kp'")
    assert [r["detail"]["sharing"] for r in rows] == ["maintenance", "ok"]
