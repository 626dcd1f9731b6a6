"""HTTP routes: free health and catalog, and the paid stream read behind the x402 gate."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from adapters import FilterError, Registry, StreamReader, apply_filters, parse_filters
from payments import encode_json

from .gate import PAYMENT_SCOPE_KEY, Services

log = logging.getLogger("worldgate.routes")
VERSION = "0.1.0"


def json_response(content: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(encode_json(content), status_code=status, media_type="application/json", headers=headers)


def _iso(unix_s: float) -> str:
    return datetime.fromtimestamp(unix_s, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class Api:
    """The handlers, bound to what they read: the registry, the stream reader and the live services (pricing too)."""

    def __init__(self, registry: Registry, reader: StreamReader, services: Services, *, info: dict[str, Any]) -> None:
        self.registry = registry
        self.reader = reader
        self.services = services
        self.info = info
        self.started_at = time.time()
        self.redis: Any = None  # redis.asyncio.Redis, set by the lifespan

    def routes(self) -> list[Route]:
        return [
            Route("/v1/health", self.health),
            Route("/v1/streams", self.catalog),
            Route("/v1/streams/{id}", self.stream),
        ]

    async def health(self, request: Request) -> Response:
        checks: dict[str, str] = {}
        try:
            await self.services.pool.fetchval("SELECT 1")
            checks["database"] = "ok"
        except Exception as exc:  # any failure is reported, never raised from a health probe
            checks["database"] = f"error: {type(exc).__name__}"
        try:
            await self.redis.ping()
            checks["redis"] = "ok"
        except Exception as exc:
            checks["redis"] = f"error: {type(exc).__name__}"
        healthy = checks["database"] == "ok"
        return json_response(
            {
                "status": "ok" if healthy else "degraded",
                "version": VERSION,
                "uptime_s": round(time.time() - self.started_at, 1),
                "checks": checks,
                "streams": len(self.registry),
                **self.info,
            },
            status=200 if healthy else 503,
            headers={"cache-control": "no-store"},
        )

    async def catalog(self, request: Request) -> Response:
        category = request.query_params.get("category")
        pricing = self.services.pricing
        assert pricing is not None, "the catalog is served only after startup"
        streams = []
        for stream in self.registry.all():
            if category and stream.category != category:
                continue
            paid = pricing.lookup(f"/v1/streams/{stream.id}")
            assert paid is not None, f"stream {stream.id} has no price"
            streams.append(
                {
                    "id": stream.id,
                    "name": stream.name,
                    "description": stream.description,
                    "category": stream.category,
                    "type": stream.type.value,
                    "interval_s": stream.interval_s,
                    "price": {
                        "tier": stream.price_tier,
                        "amount_atomic": str(paid.amount_atomic),
                        "usdc": pricing.display(paid.amount_atomic),
                        "networks": [o.network for o in paid.offers],
                    },
                    "sharing": stream.sharing.value,
                    "license": stream.license,
                    "attribution": stream.attribution,
                    "url": f"/v1/streams/{stream.id}",
                }
            )
        return json_response({"count": len(streams), "streams": streams})

    async def stream(self, request: Request) -> Response:
        stream = self.registry.get(request.path_params["id"])
        if stream is None:
            return json_response({"error": "unknown_stream", "message": "no such stream; see GET /v1/streams"}, 404)
        if PAYMENT_SCOPE_KEY not in request.scope.get("state", {}):
            # Fail closed: only the gate, after a verified and claimed payment, lets a request here.
            log.error("unpaid request reached a paid handler", extra={"route": request.url.path})
            return json_response({"error": "payment_required"}, 402, {"cache-control": "no-store"})
        try:
            filters = parse_filters(request.query_params)
        except FilterError as exc:
            return json_response({"error": "invalid_query", "message": str(exc)}, 422)
        try:
            snapshot = await self.reader.read(stream.id)
        except Exception:
            log.exception("stream read failed", extra={"stream": stream.id})
            return json_response(
                {"error": "stream_unavailable", "message": "data unavailable; you were not charged"}, 503
            )
        records = apply_filters(snapshot.records, filters)
        return json_response(
            {
                "stream": stream.id,
                "name": stream.name,
                "type": stream.type.value,
                "fetched_at": _iso(snapshot.fetched_at_unix_s),
                "age_seconds": round(snapshot.age_s(), 1),
                "stale": snapshot.stale,
                "count": len(records),
                "records": [r.as_dict() for r in records],
                "license": stream.license,
                "attribution": stream.attribution,
            },
            headers={"x-cache": snapshot.cache},
        )
