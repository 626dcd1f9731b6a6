"""Health that tells the truth: `ok`, `degraded` or `down`, with what is wrong.

`/v1/health` (and the MCP `health` tool) wraps the read's document (app/usecases/reads.py: database,
Redis, sources) with a verdict: `down` (503) when the database does not answer, as nothing can be sold;
`degraded` (200: still serving) when Redis is down, a source is failing, a source the scheduler keeps
warm was never fetched, or a chain's RPC does not answer; else `ok`. Each chain's RPC gets one cheap
call (eth_chainId, getHealth) with a short timeout, cached a few seconds and shared by concurrent
probes, so a health poll stays cheap. `/v1/health/live` touches nothing: the process answers, or not.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

import httpx

from app.runtime.settings import Settings
from app.usecases.reads import NO_STORE, Answer

LIVE = Answer(200, {"status": "alive"}, NO_STORE)


def chain_rpcs(settings: Settings) -> dict[str, tuple[str | None, str]]:
    """network → (its RPC URL or None, the cheap JSON-RPC method that says it answers)."""
    rpcs: dict[str, tuple[str | None, str]] = {}
    if settings.evm is not None:
        rpcs[settings.evm.network] = (settings.evm.rpc_url, "eth_chainId")
    if settings.svm is not None:
        rpcs[settings.svm.network] = (settings.svm.rpc_url, "getHealth")
    return rpcs


class ChainProbes:
    """Each configured chain's RPC, asked one cheap question at most every `cache_s` (in this worker)."""

    def __init__(self, rpcs: Mapping[str, tuple[str | None, str]], *, timeout_s: float, cache_s: float) -> None:
        self.rpcs = dict(rpcs)
        self.timeout_s = timeout_s
        self.cache_s = cache_s
        self._checked: dict[str, dict[str, Any]] = {}
        self._at = float("-inf")
        self._lock = asyncio.Lock()

    async def states(self) -> dict[str, dict[str, Any]]:
        async with self._lock:  # concurrent polls wait for one probe instead of each sending their own
            if time.monotonic() - self._at >= self.cache_s:
                self._checked = await self._probe_all()
                self._at = time.monotonic()
            return self._checked

    async def _probe_all(self) -> dict[str, dict[str, Any]]:
        if not self.rpcs:
            return {}
        async with httpx.AsyncClient(timeout=self.timeout_s) as client:
            found = await asyncio.gather(*(self._probe(client, url, method) for url, method in self.rpcs.values()))
        return dict(zip(self.rpcs, found, strict=True))

    async def _probe(self, client: httpx.AsyncClient, url: str | None, method: str) -> dict[str, Any]:
        if not url:
            return {"rpc": "not configured (remote facilitator)"}
        started = time.perf_counter()
        request = {"jsonrpc": "2.0", "id": 1, "method": method, "params": []}
        try:  # one deadline for the whole call: httpx's timeout is per phase (connect, write, read)
            answer = await asyncio.wait_for(client.post(url, json=request), self.timeout_s)
            document = answer.json()
            if answer.status_code != 200 or not isinstance(document, dict) or "result" not in document:
                error = document.get("error") if isinstance(document, dict) else None
                detail = error.get("message") if isinstance(error, dict) else f"HTTP {answer.status_code}"
                return {"rpc": f"error: {str(detail)[:120]}"}
        except Exception as exc:  # never raised from a health probe; the URL (it may hold a key) is never shown
            return {"rpc": f"error: {type(exc).__name__}"}
        return {"rpc": "ok", "latency_ms": round(1000 * (time.perf_counter() - started), 1)}


def _failing(source: Mapping[str, Any]) -> bool:
    if source.get("circuit") == "open":
        return True
    error_at, fetched_at = source.get("last_error_at"), source.get("fetched_at")
    return bool(error_at) and (not fetched_at or str(error_at) >= str(fetched_at))  # ISO 8601 UTC: ordered as text


def _never_fetched(source: Mapping[str, Any]) -> bool:
    """A source the scheduler keeps warm (not per point, not static) with no fetch yet."""
    return not source.get("fetched_at") and source.get("freshness") not in ("per_point", "static")


def verdict(answer: Answer, chains: Mapping[str, Mapping[str, Any]], *, scheduler: bool) -> Answer:
    """The read's health document with `status`, `problems` and `chains`: down, degraded or ok."""
    document = dict(answer.document)
    checks: Mapping[str, str] = document.get("checks", {})
    sources: list[Mapping[str, Any]] = document.get("sources", [])
    problems: list[str] = []
    if checks.get("redis", "ok") != "ok":
        problems.append("redis unreachable: caching and limits are per worker")
    problems += [f"source {s['source']} failing" for s in sources if _failing(s)]
    if scheduler:
        problems += [f"source {s['source']} never fetched" for s in sources if not _failing(s) and _never_fetched(s)]
    problems += [f"chain {network} RPC: {state['rpc']}" for network, state in chains.items() if state["rpc"] != "ok"]
    problems = [p for p in problems if "not configured" not in p]
    down = checks.get("database") != "ok"
    if down:
        problems.insert(0, "database unreachable: nothing can be sold")
    document["status"] = "down" if down else "degraded" if problems else "ok"
    document["problems"] = problems
    document["chains"] = dict(chains)
    return Answer(503 if down else 200, document, answer.headers)
