"""Health that tells the truth: ok, degraded (sources failing or never fetched while the scheduler runs, a chain's
RPC unreachable) or down (the database), with a liveness probe that touches nothing; rate-limit headers on what
the per-address limits count; probes never throttled at their pace with the default limits."""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import httpx

from app.runtime.settings import LimitSettings, Settings, replace
from payments.devnet.evm import EvmDevnet

from .conftest import Gateway, running_gateway, with_settings
from .services import Database, TcpProxy, free_port

ROOT = Path(__file__).resolve().parents[1]


def fresh(settings: Settings, **changes: Any) -> Settings:
    return with_settings(settings, cache_prefix=f"wgtest:{secrets.token_hex(4)}:", **changes)


async def test_with_replay_and_no_scheduler_health_is_ok(gateway: Gateway) -> None:
    answer = await gateway.get("/v1/health")
    document = answer.json()
    assert answer.status_code == 200 and document["status"] == "ok" and document["problems"] == []
    assert set(document["chains"]) == {"eip155:84532", "solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1"}
    assert {c["rpc"] for c in document["chains"].values()} == {"ok"}
    live = await gateway.get("/v1/health/live")
    assert live.status_code == 200 and live.json() == {"status": "alive"}


async def test_offline_without_replay_health_is_degraded(settings: Settings) -> None:
    """Upstreams that refuse every connection while the scheduler runs: still serving (200), but degraded, and
    it says which sources."""
    offline = fresh(settings, upstream_replay_url=f"http://127.0.0.1:{free_port()}", scheduler=True)
    with running_gateway(offline) as gateway:
        answer = await gateway.get("/v1/health")
        assert answer.status_code == 200 and answer.json()["status"] == "degraded"
        deadline = time.monotonic() + 15
        while True:  # the scheduler's first attempts (staggered over 2 s) fail fast: connection refused
            document = (await gateway.get("/v1/health")).json()
            if "source usgs.earthquakes failing" in document["problems"] or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.3)
        assert document["status"] == "degraded"
        assert "source usgs.earthquakes failing" in document["problems"], document["problems"]
        failing = {s["source"]: s for s in document["sources"]}["usgs.earthquakes"]
        assert failing["last_error"] and not failing["fetched_at"]
        assert document["checks"] == {"database": "ok", "redis": "ok"}  # what does answer is still said


async def test_a_chain_rpc_out_of_reach_degrades_and_the_database_takes_it_down(
    settings: Settings, database: Database, devnet: EvmDevnet
) -> None:
    rpc = urlsplit(devnet.rpc_url)
    chain_proxy = TcpProxy(rpc.hostname or "127.0.0.1", rpc.port or 8545).start()
    parts = urlsplit(database.url)
    socket_dir = dict(parse_qsl(parts.query)).get("host")
    db_proxy = TcpProxy(socket_dir or parts.hostname or "127.0.0.1", parts.port or 5432).start()
    assert settings.evm is not None
    mine = fresh(
        settings,
        evm=replace(settings.evm, rpc_url=f"http://127.0.0.1:{chain_proxy.port}"),
        database_url=urlunsplit(parts._replace(netloc=f"{parts.username or 'postgres'}@127.0.0.1:{db_proxy.port}")),
        health_rpc_cache_s=0,
        health_rpc_timeout_s=1,
    )
    try:
        with running_gateway(mine) as gateway:
            assert (await gateway.get("/v1/health")).json()["status"] == "ok"
            chain_proxy.down()
            answer = await gateway.get("/v1/health")
            document = answer.json()
            assert answer.status_code == 200 and document["status"] == "degraded"
            assert document["chains"]["eip155:84532"]["rpc"].startswith("error")
            assert document["chains"]["solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1"]["rpc"] == "ok"
            assert any(p.startswith("chain eip155:84532 RPC: error") for p in document["problems"])
            assert "127.0.0.1" not in str(document["chains"])  # an RPC URL may carry a key: never shown

            db_proxy.down()
            started = time.monotonic()
            down = await gateway.get("/v1/health")
            assert down.status_code == 503 and down.json()["status"] == "down"
            assert down.json()["problems"][0].startswith("database unreachable")
            live = await gateway.get("/v1/health/live")  # touches neither the database nor the network
            assert live.status_code == 200 and live.json() == {"status": "alive"}
            assert time.monotonic() - started < 30

            chain_proxy.up()
            db_proxy.up()
            for _ in range(20):
                if (await gateway.get("/v1/health")).json()["status"] == "ok":
                    break
                await asyncio.sleep(0.25)
            assert (await gateway.get("/v1/health")).json()["status"] == "ok"
    finally:
        chain_proxy.stop()
        db_proxy.stop()


async def test_500_health_probes_in_a_minute_are_all_answered_with_the_default_limits(settings: Settings) -> None:
    defaults = LimitSettings()
    assert defaults.ops == "1200/minute"
    with running_gateway(fresh(settings, limits=defaults)) as gateway:
        statuses: list[int] = []
        remaining: list[int] = []
        async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as client:

            async def probe(n: int) -> None:
                for _ in range(n):
                    answer = await client.get("/v1/health" if len(statuses) % 2 else "/v1/health/live")
                    statuses.append(answer.status_code)
                    remaining.append(int(answer.headers["ratelimit-remaining"]))
                    assert answer.headers["ratelimit-limit"] == "1200"

            started = time.monotonic()
            await asyncio.gather(*(probe(50) for _ in range(10)))
        assert time.monotonic() - started < 60
    assert len(statuses) == 500 and set(statuses) == {200}, sorted(set(statuses))
    assert min(remaining) == 1200 - 500  # each counted once under `ops`, health and live alike


async def test_rate_limit_headers_on_quotes_and_refusals(settings: Settings) -> None:
    tight = LimitSettings(free="100000/minute", quote="2/minute", ops="100000/minute", payer="100000/minute")
    with running_gateway(fresh(settings, limits=tight)) as gateway:
        answers = [await gateway.get("/v1/streams/static.capitals") for _ in range(3)]
    assert [a.status_code for a in answers] == [402, 402, 429]
    assert [a.headers["ratelimit-remaining"] for a in answers] == ["1", "0", "0"]
    for answer in answers:
        assert answer.headers["ratelimit-limit"] == "2" and 1 <= int(answer.headers["ratelimit-reset"]) <= 60
    assert abs(int(answers[2].headers["retry-after"]) - int(answers[2].headers["ratelimit-reset"])) <= 1


def test_kubernetes_probes_liveness_on_live_and_readiness_on_health() -> None:
    manifest = (ROOT / "deploy/k8s/worldgate.yaml").read_text()
    probes = dict(re.findall(r"(livenessProbe|readinessProbe): \{ httpGet: \{ path: (\S+),", manifest))
    assert probes == {"livenessProbe": "/v1/health/live", "readinessProbe": "/v1/health"}
