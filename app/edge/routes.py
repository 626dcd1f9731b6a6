"""The API's HTTP handlers: the free catalog, search, attribution and health, and the paid reads behind the gate.

Each handler sends what its read (app/usecases/reads.py) answers as a JSON response; the MCP tools
(app/mcp/server.py) return the same documents as tool results (health with its verdict, app/edge/health.py,
as the tool calls this class's `health_answer`). Unknown paths and methods answer JSON too.
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from adapters import Registry
from app.edge.gate import PAYMENT_SCOPE_KEY
from app.edge.health import LIVE, ChainProbes, verdict
from app.usecases.paths import LLMS_PATH, MCP_PATH, OPENAPI_PATH, WELL_KNOWN_PATH
from app.usecases.reads import NO_STORE, Answer, Reads
from app.usecases.services import Services
from payments import encode_json

log = logging.getLogger("worldgate.routes")


def json_response(content: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(encode_json(content), status_code=status, media_type="application/json", headers=headers)


def respond(answer: Answer) -> Response:
    """A read's answer as an HTTP response: its status, its document as JSON, its headers."""
    return json_response(answer.document, answer.status, dict(answer.headers) if answer.headers is not None else None)


LINKS = {
    "llms": LLMS_PATH,
    "openapi": OPENAPI_PATH,
    "catalog": "/v1/streams",
    "x402": WELL_KNOWN_PATH,
    "mcp": MCP_PATH,
    "health": "/v1/health",
}
_LANDING_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>worldgate</title></head>
<body><h1>worldgate</h1>
<p>World-state data sold per request over x402: an unpaid request answers 402 with a quote; pay in USDC and retry.</p>
<ul>{items}</ul></body></html>
"""


async def not_found(request: Request, exc: Exception) -> Response:
    """Starlette's 404 and 405 (no such path, or a method the route does not take), in JSON."""
    status = exc.status_code if isinstance(exc, HTTPException) else 404
    if status == 405:
        body = {"error": "method_not_allowed", "message": f"{request.method} is not answered here"}
        headers = dict(exc.headers or {}) if isinstance(exc, HTTPException) else {}
        return json_response(body, 405, {**headers, **NO_STORE})
    body = {"error": "not_found", "message": f"no route {request.url.path}; see / for what is here"}
    return json_response(body, 404, NO_STORE)


EXCEPTION_HANDLERS = {404: not_found, 405: not_found}


class Api(Reads):
    """The reads as HTTP routes (the paid ones only after the gate's mark)."""

    def __init__(
        self,
        registry: Registry,
        services: Services,
        *,
        info: dict[str, Any],
        chains: ChainProbes | None = None,
        scheduler: bool = False,
    ) -> None:
        super().__init__(registry, services, info=info)
        self.chains = chains or ChainProbes({}, timeout_s=1, cache_s=5)
        self.scheduler = scheduler

    async def health_answer(self) -> Answer:
        """The read's health with a verdict (app/edge/health.py); the MCP tool calls this one too."""
        return verdict(await super().health_answer(), await self.chains.states(), scheduler=self.scheduler)

    def routes(self) -> list[Route]:
        return [
            Route("/", self.landing),
            Route("/v1/health", self.health),
            Route("/v1/health/live", self.live),
            Route("/v1/attribution", self.attribution),
            Route("/v1/streams", self.catalog),
            Route("/v1/streams/search", self.search),
            Route("/v1/streams/{id}", self.stream),
            Route("/v1/world", self.world),
        ]

    # ---- free ----

    async def catalog(self, request: Request) -> Response:
        return respond(await self.catalog_answer(request.query_params.get("category")))

    async def search(self, request: Request) -> Response:
        return respond(await self.search_answer(request.query_params.get("q")))

    async def attribution(self, request: Request) -> Response:
        return respond(self.attribution_answer())

    async def health(self, request: Request) -> Response:
        return respond(await self.health_answer())

    async def live(self, request: Request) -> Response:
        return respond(LIVE)  # no database, no network: the process answers

    async def landing(self, request: Request) -> Response:
        """What is here: JSON for programs (Accept: application/json), a few links for people."""
        if "application/json" in request.headers.get("accept", ""):
            body = {"name": "worldgate", "description": "Pay-per-request world data over x402.", "links": LINKS}
            return json_response(body)
        items = "".join(f'<li><a href="{path}">{path}</a></li>' for path in LINKS.values())
        return Response(_LANDING_HTML.format(items=items), media_type="text/html; charset=utf-8")

    # ---- paid ----

    def _gated(self, request: Request) -> Response | None:
        if PAYMENT_SCOPE_KEY not in request.scope.get("state", {}):
            # Fail closed: only the gate, after a verified and claimed payment, lets a request here.
            log.error("unpaid request reached a paid handler", extra={"route": request.url.path})
            return json_response({"error": "payment_required"}, 402, NO_STORE)
        return None

    async def stream(self, request: Request) -> Response:
        stream = self.find_stream(request.path_params["id"])
        if isinstance(stream, Answer):
            return respond(stream)
        refused = self._gated(request)
        if refused is not None:
            return refused
        # a plain dict: the query's rules look up names it mostly lacks, and QueryParams.get raises inside for each
        return respond(await self.stream_answer(stream, dict(request.query_params)))

    async def world(self, request: Request) -> Response:
        refused = self._gated(request)
        if refused is not None:
            return refused
        return respond(await self.world_answer(request.query_params))
