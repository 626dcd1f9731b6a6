"""OpenTelemetry traces over OTLP/HTTP, only when OTEL_EXPORTER_OTLP_ENDPOINT (or `[tracing] otlp_endpoint`) is set.

A server span per HTTP request (W3C `traceparent` from the caller continued), named by method and route
template, and inside a paid request's span: `verify` and `settle` (the facilitator's calls), `claim` (the
ledger's claim of the payment key; every other ledger statement the checkout makes is a `ledger <name>` span)
and `handler` (the route's own work, behind the gate). Spans carry the route, status, network, scheme and
outcome, never a payment header, signature or key. Batched and exported off the event loop by the SDK.

Unset, none of this exists: wiring adds no middleware and wraps nothing, so the request path is unchanged.
The API ships with every install (mcp depends on it); the SDK and the OTLP exporter are the `otel` extra
(`pip install 'worldgate[otel]'`, in the container image). The SDK's own variables still apply
(OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES, OTEL_EXPORTER_OTLP_HEADERS, OTEL_TRACES_SAMPLER...).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.runtime.metrics import route_label

__all__ = ["TRACE_ID_KEY", "Tracing"]

log = logging.getLogger("worldgate.tracing")

TRACE_ID_KEY = "worldgate.trace_id"  # the request's trace id, for the access log
SPAN_NAMES = {"claim_payment": "claim"}  # ledger statements by name → span name; the rest: "ledger <name>"
_PROPAGATED = (b"traceparent", b"tracestate")


def _offer(requirements: Any) -> dict[str, str]:
    return {"x402.network": str(requirements.network), "x402.scheme": str(requirements.scheme)}


class Tracing:
    """A tracer provider and what puts its spans on the request path (see the module docstring)."""

    def __init__(self, provider: Any) -> None:
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self.provider = provider
        self.tracer = provider.get_tracer("worldgate")
        self.propagator = TraceContextTextMapPropagator()

    @classmethod
    def from_endpoint(cls, endpoint: str | None) -> Tracing | None:
        """An OTLP/HTTP exporter to `endpoint` (its /v1/traces), batched; None when no endpoint is set."""
        if not endpoint:
            return None
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
        except ImportError:
            log.warning(
                "OTEL_EXPORTER_OTLP_ENDPOINT is set but the OpenTelemetry SDK is not installed"
                " (pip install 'worldgate[otel]'): no traces are sent"
            )
            return None
        resource = Resource.create()  # OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES, if set
        if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
            resource = resource.merge(Resource({"service.name": "worldgate"}))
        # the signal's own variable, when set, is the exporter's to read; else the base endpoint's /v1/traces
        traces = None if os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") else endpoint.rstrip("/") + "/v1/traces"
        provider = TracerProvider(resource=resource)
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=traces)))
        return cls(provider)

    async def shutdown(self) -> None:
        """Export what is batched, then stop (in a thread: the exporter's HTTP client blocks)."""
        await asyncio.to_thread(self.provider.shutdown)

    # ---- the request path ----

    def requests(self, app: ASGIApp) -> ASGIApp:
        return _RequestSpans(app, self)

    def handler(self, app: ASGIApp) -> ASGIApp:
        return _HandlerSpans(app, self)

    def facilitator(self, facilitator: Any) -> Any:
        """The same facilitator (isinstance checks still hold), its verify and settle each in a span."""
        verify: Callable[..., Awaitable[Any]] = facilitator.verify
        settle: Callable[..., Awaitable[Any]] = facilitator.settle
        tracer = self.tracer

        async def traced_verify(payload: Any, requirements: Any, *args: Any, **kwargs: Any) -> Any:
            with tracer.start_as_current_span("verify", attributes=_offer(requirements)) as span:
                verification = await verify(payload, requirements, *args, **kwargs)
                span.set_attribute("x402.valid", bool(verification.valid))
                if verification.reason:
                    span.set_attribute("x402.reason", str(verification.reason))
                return verification

        async def traced_settle(payload: Any, requirements: Any, *args: Any, **kwargs: Any) -> Any:
            with tracer.start_as_current_span("settle", attributes=_offer(requirements)) as span:
                settlement = await settle(payload, requirements, *args, **kwargs)
                span.set_attribute("x402.success", bool(settlement.success))
                if settlement.reason:
                    span.set_attribute("x402.reason", str(settlement.reason))
                if settlement.transaction:
                    span.set_attribute("x402.transaction", str(settlement.transaction))  # public, on chain
                return settlement

        facilitator.verify, facilitator.settle = traced_verify, traced_settle
        return facilitator

    def pool(self, pool: Any) -> Any:
        """The ledger pool with each named statement in a span (the payment claim's is `claim`)."""
        from ledger.sql import queries

        names = {sql: SPAN_NAMES.get(name, f"ledger {name}") for name, sql in queries.items()}
        return _TracedPool(pool, self.tracer, names)


class _RequestSpans:
    def __init__(self, app: ASGIApp, tracing: Tracing) -> None:
        from opentelemetry.trace import SpanKind

        self.app = app
        self.tracing = tracing
        self.kind = SpanKind.SERVER

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        carrier = {k.decode(): v.decode("latin-1") for k, v in scope["headers"] if k in _PROPAGATED}
        parent = self.tracing.propagator.extract(carrier) if carrier else None
        method = scope["method"]
        client = scope.get("client")
        attributes = {
            "http.request.method": method,
            "url.path": scope["path"],
            "url.scheme": scope.get("scheme", "http"),
            "client.address": str(client[0]) if client else "",
        }
        status = [500]

        async def traced_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        tracer = self.tracing.tracer
        with tracer.start_as_current_span(method, context=parent, kind=self.kind, attributes=attributes) as span:
            scope[TRACE_ID_KEY] = f"{span.get_span_context().trace_id:032x}"
            try:
                await self.app(scope, receive, traced_send)
            finally:
                route = scope.get("route")
                template = str(getattr(route, "path", "")) if route is not None else route_label(scope["path"])
                span.update_name(f"{method} {template}")
                span.set_attribute("http.route", template)
                span.set_attribute("http.response.status_code", status[0])
                if status[0] >= 500:
                    from opentelemetry.trace import Status, StatusCode

                    span.set_status(Status(StatusCode.ERROR))


class _HandlerSpans:
    """Inside the x402 gate: the route's own work (for a paid request, between verify and settle)."""

    def __init__(self, app: ASGIApp, tracing: Tracing) -> None:
        self.app = app
        self.tracer = tracing.tracer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        with self.tracer.start_as_current_span("handler") as span:
            await self.app(scope, receive, send)
            route = scope.get("route")
            if route is not None:
                span.set_attribute("http.route", str(getattr(route, "path", "")))


class _TracedPool:
    """An asyncpg pool whose fetch/fetchrow/fetchval/execute run in a span named after the ledger statement.
    Everything else (acquire, close, is_closing...) is the pool's own."""

    def __init__(self, pool: Any, tracer: Any, names: dict[str, str]) -> None:
        self._pool = pool
        self._tracer = tracer
        self._names = names

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)

    async def _run(self, call: str, query: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        with self._tracer.start_as_current_span(
            self._names.get(query, "ledger query"), attributes={"db.system": "postgresql"}
        ):
            return await getattr(self._pool, call)(query, *args, **kwargs)

    async def fetch(self, query: str, *args: Any, **kwargs: Any) -> Any:
        return await self._run("fetch", query, args, kwargs)

    async def fetchrow(self, query: str, *args: Any, **kwargs: Any) -> Any:
        return await self._run("fetchrow", query, args, kwargs)

    async def fetchval(self, query: str, *args: Any, **kwargs: Any) -> Any:
        return await self._run("fetchval", query, args, kwargs)

    async def execute(self, query: str, *args: Any, **kwargs: Any) -> Any:
        return await self._run("execute", query, args, kwargs)
