"""The time machine under process faults, with gateways as real OS processes (the fault suite's fork server):
SIGKILLs while the scheduler's fetches are being recorded, then a restart; two gateways recording at once.

Invariants: after a restart and one flush interval, every snapshot the hot layer took is in force in the
cold layer at its time, nothing stays pending, and each distinct snapshot is stored once; a paid history
answer is the same before the kill and after the restart."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import redis.asyncio as aioredis

from adapters import Registry, ReplayServer
from adapters.history import Snapshot, recorded
from adapters.sources import all_adapters
from app.runtime.settings import Settings
from payments.devnet.evm import EvmDevnet

from .chain import new_payer, pay_for, unb64
from .faults.conftest import ForkServer, GatewayProcess, gateway_env

RECORDED = sorted(s.id for s in Registry().all() if recorded(s))
FLUSH_S = 1.0


@pytest.fixture(scope="module")
def forks() -> Iterator[ForkServer]:
    server = ForkServer()
    yield server
    server.close()


@pytest.fixture
def started(tmp_path: Path, forks: ForkServer) -> Iterator[Any]:
    """`start(env)`: a healthy gateway process; every one still running is stopped at the end."""
    made: list[GatewayProcess] = []

    def start(env: dict[str, str]) -> GatewayProcess:
        gateway = GatewayProcess(env, tmp_path / f"gateway-{len(made)}.log", forks)
        made.append(gateway)
        return gateway.start()

    yield start
    for gateway in made:
        gateway.stop()


def recording_env(settings: Settings, prefix: str) -> dict[str, str]:
    """A gateway whose scheduler fetches (and so records) every shared source at once, flushing every second."""
    return gateway_env(
        settings, WORLDGATE_SCHEDULER="1", WORLDGATE_HISTORY_FLUSH_S=str(FLUSH_S), WORLDGATE_CACHE_PREFIX=prefix
    )


async def counts(pool: asyncpg.Pool) -> dict[str, int]:
    return dict(await pool.fetch("SELECT stream, count(*) FROM history_snapshots GROUP BY stream"))


async def all_recorded(pool: asyncpg.Pool, timeout_s: float = 30.0) -> dict[str, int]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = await counts(pool)
        if sorted(found) == RECORDED:
            return found
        await asyncio.sleep(0.1)
    raise AssertionError(f"not every stream was recorded: {sorted(await counts(pool))}")


async def paid_history(gateway: GatewayProcess, devnet: EvmDevnet, path: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as http:
        quote = await http.get(path)
        assert quote.status_code == 402, quote.text
        accepts = unb64(quote.headers["payment-required"])["accepts"]
        [offer] = [o for o in accepts if o["network"].startswith("eip155") and o["scheme"] == "exact"]
        answer = await http.get(path, headers={"PAYMENT-SIGNATURE": pay_for(new_payer(devnet), devnet, offer)})
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


async def hot_snapshots(redis_url: str, prefix: str) -> list[Snapshot]:
    client = aioredis.from_url(redis_url)
    try:
        found = []
        for stream in RECORDED:
            found += [Snapshot.from_wire(raw) for raw in await client.zrange(f"{prefix}hist:hot:{stream}", 0, -1)]
        pending = await client.hlen(f"{prefix}hist:pending")
    finally:
        await client.aclose()
    assert pending == 0, f"{pending} snapshots still pending after a flush interval"
    return found


async def in_force(pool: asyncpg.Pool, snapshot: Snapshot) -> bytes | None:
    moment = datetime.fromtimestamp(snapshot.t, UTC)
    sql = "SELECT checksum FROM history_snapshots WHERE stream = $1 AND t <= $2 ORDER BY t DESC LIMIT 1"
    held: bytes | None = await pool.fetchval(sql, snapshot.stream, moment)
    return held


async def test_a_sigkill_loses_no_snapshot_and_the_answer_is_the_same_after_restart(
    settings: Settings, started: Any, pool: asyncpg.Pool, devnet: EvmDevnet, redis_url: str
) -> None:
    await pool.execute("TRUNCATE history_snapshots, history_backfill")
    prefix = f"wgtest:{secrets.token_hex(4)}:"
    first = started(recording_env(settings, prefix))
    await all_recorded(pool)
    t_min, t_max = await pool.fetchrow("SELECT min(t), max(t) FROM history_snapshots")
    span = f"from={(t_min - timedelta(seconds=1)).isoformat()}&to={(t_max + timedelta(seconds=1)).isoformat()}"
    span = span.replace("+00:00", "Z")
    paths = [f"/v1/streams/{stream}/history?{span}" for stream in ("space.kp", "quakes.usgs", "weather.grid.wind")]
    before = [await paid_history(first, devnet, path) for path in paths]
    first.kill()
    again = started(recording_env(settings, prefix))
    after = [await paid_history(again, devnet, path) for path in paths]
    for one, other in zip(before, after, strict=True):
        assert one["snapshots"] == other["snapshots"] and one["count"] >= 1
    again.kill()

    # SIGKILLs at different points of the scheduler's first wave of fetches (spread over its first 2 s)
    cut_short = 0  # rounds killed before every stream was recorded
    for delay in (0.0, 0.3, 0.8, 1.3, 1.8):
        await pool.execute("TRUNCATE history_snapshots")
        prefix = f"wgtest:{secrets.token_hex(4)}:"
        victim = started(recording_env(settings, prefix))
        await asyncio.sleep(delay)
        victim.kill()
        cut_short += len(await counts(pool)) < len(RECORDED)
        restarted = started(recording_env(settings, prefix))  # same Redis prefix: it flushes what was pending
        await all_recorded(pool)
        await asyncio.sleep(FLUSH_S * 2)
        taken = await hot_snapshots(redis_url, prefix)
        assert {s.stream for s in taken} == set(RECORDED)
        for snapshot in taken:
            assert await in_force(pool, snapshot) == snapshot.checksum, (delay, snapshot.stream)
        assert await counts(pool) == dict.fromkeys(RECORDED, 1), delay  # one payload per stream: stored once
        restarted.kill()
    assert cut_short >= 1  # the kills did land mid-recording


@pytest.mark.parametrize("shared_cache", [True, False], ids=["one-cache", "two-caches"])
async def test_two_gateways_recording_store_each_snapshot_once(
    settings: Settings, started: Any, pool: asyncpg.Pool, replay: ReplayServer, shared_cache: bool
) -> None:
    """With one cache the fleet makes one fetch per source; with two caches both fetch every source, and the
    cold layer still stores each distinct snapshot once."""
    replay.reset()
    await pool.execute("TRUNCATE history_snapshots, history_backfill")
    prefixes = (
        [f"wgtest:{secrets.token_hex(4)}:"] * 2 if shared_cache else [f"wgtest:{secrets.token_hex(4)}:" for _ in "ab"]
    )
    hits_before = Counter(replay.hits)
    gateways = [started(recording_env(settings, prefix)) for prefix in prefixes]
    assert all(g.alive() for g in gateways)
    await all_recorded(pool)
    await asyncio.sleep(2.5)  # the stagger is at most 2 s: every fetch either process makes has landed
    assert await counts(pool) == dict.fromkeys(RECORDED, 1)
    groups = {s.adapter for s in Registry().all() if recorded(s)}
    per_host = Counter(all_adapters()[g].host for g in groups)
    fetched = Counter(replay.hits) - hits_before
    for host, calls in per_host.items():
        assert fetched[host] == calls * (1 if shared_cache else 2), (host, fetched)
