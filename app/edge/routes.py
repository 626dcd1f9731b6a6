"""The API's HTTP handlers: the free catalog, search, attribution and health, and the paid reads behind the gate.

Each handler sends what its read (app/usecases/reads.py) answers as a JSON response; the MCP tools
(app/mcp/server.py) return the same documents as tool results.
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.edge.gate import PAYMENT_SCOPE_KEY
from app.usecases.reads import NO_STORE, Answer, Reads
from payments import encode_json

log = logging.getLogger("worldgate.routes")


def json_response(content: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(encode_json(content), status_code=status, media_type="application/json", headers=headers)


def respond(answer: Answer) -> Response:
    """A read's answer as an HTTP response: its status, its document as JSON, its headers."""
    return json_response(answer.document, answer.status, dict(answer.headers) if answer.headers is not None else None)


class Api(Reads):
    """The reads as HTTP routes (the paid ones only after the gate's mark)."""

    def routes(self) -> list[Route]:
        return [
            Route("/v1/health", self.health),
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
        return respond(await self.stream_answer(stream, request.query_params))

    async def world(self, request: Request) -> Response:
        refused = self._gated(request)
        if refused is not None:
            return refused
        return respond(await self.world_answer(request.query_params))
