"""Prometheus metrics: what the gateway counts as it works, and what it reads when scraped.

Counters and histograms are module-level (one set per process). With several uvicorn workers,
`worldgate serve` points PROMETHEUS_MULTIPROC_DIR at a directory they all write, and a scrape of
any worker sums them. Gauges that describe shared state (unsettled exposure, the settlement queue,
circuits, open reconcile findings) are read from Postgres and Redis at scrape time instead, so
every worker reports the same truth.

Labels are bounded: route templates (never raw paths), networks, reason codes, source names.
"""

from __future__ import annotations

import hmac
import os
import re
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.runtime.logs import bind_request

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _Labelled:
    """A metric's children by label values, cached: `labels()` takes a lock and validates on every
    call (about 1 µs), which the 402 path pays per request; label sets here are few and bounded."""

    def __init__(self, metric: Any) -> None:
        self.metric = metric
        self._children: dict[tuple[str, ...], Any] = {}

    def __call__(self, *values: str) -> Any:
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self.metric.labels(*values)
        return child


REQUESTS = _Labelled(Counter("worldgate_http_requests", "HTTP requests answered", ["route", "method", "status"]))
REQUEST_SECONDS = _Labelled(
    Histogram(
        "worldgate_http_request_duration_seconds",
        "Time to answer, by route",
        ["route"],
        buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    )
)
QUOTES = _Labelled(Counter("worldgate_quotes_issued", "402 quotes sent to callers without a payment", ["route"]))
VERIFIED = _Labelled(Counter("worldgate_payments_verified", "Payments verified (claimed and checked)", ["network"]))
REFUSED = _Labelled(Counter("worldgate_payments_refused", "Payments refused, by reason code", ["reason"]))
REDELIVERED = _Labelled(
    Counter("worldgate_sales_redelivered", "Settled sales served again: their first answer never left", ["route"])
)
# outcome: settled | failed | pending
SETTLEMENTS = _Labelled(Counter("worldgate_settlements", "Settlement outcomes, by network", ["network", "outcome"]))
SETTLE_SECONDS = _Labelled(
    Histogram(
        "worldgate_settle_duration_seconds",
        "Time from the start of settlement to its outcome",
        ["network"],
        buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120),
    )
)
CACHE_READS = _Labelled(
    Counter("worldgate_cache_reads", "Data tier reads, by where they were served from", ["source", "result"])
)
UPSTREAM_ERRORS = _Labelled(Counter("worldgate_upstream_errors", "Upstream fetches that failed", ["source"]))

_KNOWN = {
    "/v1/health",
    "/v1/attribution",
    "/v1/streams",
    "/v1/streams/search",
    "/v1/world",
    "/metrics",
    "/admin/",
    "/admin/login",
    "/admin/logout",
}
_DIGITS = re.compile(r"/\d+(?=/|$)")


def route_label(path: str) -> str:
    """A path as its route template, so labels stay few whatever callers send."""
    if path in _KNOWN:
        return path
    if path.startswith("/v1/streams/") and path.count("/") == 3:
        return "/v1/streams/{id}"
    if path.startswith("/admin/api/"):
        templated = _DIGITS.sub("/{id}", path)
        if templated.startswith("/admin/api/bans/"):
            return "/admin/api/bans/{payer}"
        if templated.startswith("/admin/api/streams/") and templated.endswith("/sharing"):
            return "/admin/api/streams/{id}/sharing"
        return templated if templated.count("/") <= 4 else "/admin/api/other"
    if path.startswith("/admin/static/"):
        return "/admin/static"
    return "other"


class RequestMetrics:
    """Pure ASGI: counts and times every HTTP request, and gives it a request id for the logs
    (the caller's X-Request-Id when it is sane, else a new one), echoed in the response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        route = route_label(scope["path"])
        request_id = bind_request(_header(scope, b"x-request-id"))
        status = 500  # if the app raises before answering

        async def counting_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        finally:
            REQUESTS(route, scope["method"], str(status)).inc()
            REQUEST_SECONDS(route).observe(time.perf_counter() - started)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin-1")
    return None


class _Snapshot(Collector):
    """Gauges read at scrape time, handed in already fetched (collect() must not do I/O)."""

    def __init__(self, families: Iterable[GaugeMetricFamily]) -> None:
        self._families = list(families)

    def collect(self) -> Iterable[GaugeMetricFamily]:
        return self._families


LiveGauges = Callable[[], Awaitable[dict[str, Any]]]


def live_families(state: dict[str, Any]) -> list[GaugeMetricFamily]:
    """Shared state as gauges: exposure and queue from Postgres, circuits from Redis."""
    exposure = GaugeMetricFamily(
        "worldgate_unsettled_exposure_atomic",
        "Token amount of payments served whose money has not moved yet: exact settling, batch vouchers not swept",
        labels=["network"],
    )
    for network, amount in sorted(state.get("exposure", {}).items()):
        exposure.add_metric([network], float(amount))
    age = GaugeMetricFamily(
        "worldgate_unsettled_oldest_seconds", "Age of the oldest payment counted in the exposure", labels=["network"]
    )
    for network, seconds in sorted(state.get("exposure_age_s", {}).items()):
        age.add_metric([network], float(seconds))
    queue = GaugeMetricFamily("worldgate_payments_open", "Payments not final yet, by state", labels=["state"])
    for state_name, count in sorted(state.get("queue", {}).items()):
        queue.add_metric([state_name], float(count))
    circuits = GaugeMetricFamily(
        "worldgate_upstream_circuit_open", "1 while a source's circuit breaker is open", labels=["source"]
    )
    for source, is_open in sorted(state.get("circuits", {}).items()):
        circuits.add_metric([source], 1.0 if is_open else 0.0)
    flags = GaugeMetricFamily("worldgate_reconcile_flags_open", "Open reconciliation findings", labels=["kind"])
    for kind, count in sorted(state.get("flags", {}).items()):
        flags.add_metric([kind], float(count))
    return [exposure, age, queue, circuits, flags]


def exposition(state: dict[str, Any]) -> bytes:
    """The text a scrape gets: this process's (or every worker's) counters, then the live gauges."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        counted = CollectorRegistry()
        MultiProcessCollector(counted)
    else:
        counted = REGISTRY
    live = CollectorRegistry()
    live.register(_Snapshot(live_families(state)))
    return generate_latest(counted) + generate_latest(live)


class MetricsEndpoint:
    """GET /metrics for Prometheus. Who may scrape: a bearer equal to WORLDGATE_METRICS_TOKEN, or an
    admin token; with no metrics token set, also any client on this machine (loopback)."""

    def __init__(self, token: str | None, admin_check: Callable[[str], object], live: LiveGauges) -> None:
        self._token = token
        self._admin_check = admin_check
        self._live = live

    def allowed(self, scope: Scope) -> bool:
        header = _header(scope, b"authorization") or ""
        scheme, _, given = header.partition(" ")
        if scheme.lower() == "bearer" and given:
            if self._token is not None and hmac.compare_digest(given.encode(), self._token.encode()):
                return True
            try:
                self._admin_check(given)
                return True
            except Exception:  # any refusal of the admin token is just "not allowed"
                return False
        client = (scope.get("client") or ("", 0))[0]
        return self._token is None and client in ("127.0.0.1", "::1", "localhost")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.allowed(scope):
            body = b'{"error":"unauthorized","message":"scrape with Authorization: Bearer <WORLDGATE_METRICS_TOKEN>"}'
            headers = [(b"content-type", b"application/json"), (b"www-authenticate", b'Bearer realm="metrics"')]
            await send({"type": "http.response.start", "status": 401, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        try:
            state = await self._live()
        except Exception:  # Postgres or Redis down: the counters still matter most
            state = {}
        body = exposition(state)
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-type", CONTENT_TYPE.encode())]}
        )
        await send({"type": "http.response.body", "body": body})


def observe_cache(source: str, event: str) -> None:
    """The cache tier's events (adapters knows nothing of Prometheus; the app translates)."""
    if event == "upstream_error":
        UPSTREAM_ERRORS(source).inc()
    else:
        CACHE_READS(source, event).inc()
