"""The time machine over HTTP: GET /v1/streams/{id}/history and /at (paid, behind the gate), /coverage (free).

Each handler sends what its read (app/usecases/history_reads.py) answers; a history answer goes out as
JSON, NDJSON (a snapshot a line) or CSV (a record a row) as its `format` asks.
"""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.edge.gate import PAYMENT_SCOPE_KEY
from app.edge.routes import json_response, respond
from app.usecases.history_reads import HistoryReads, csv_rows, history_json, ndjson
from app.usecases.reads import NO_STORE, Answer

log = logging.getLogger("worldgate.routes")
MEDIA = {"ndjson": "application/x-ndjson", "csv": "text/csv; charset=utf-8"}


class HistoryApi:
    def __init__(self, reads: HistoryReads) -> None:
        self.reads = reads

    def routes(self) -> list[Route]:
        return [
            Route("/v1/streams/{id}/history", self.history),
            Route("/v1/streams/{id}/at", self.at),
            Route("/v1/streams/{id}/coverage", self.coverage),
        ]

    def _gated(self, request: Request) -> Response | None:
        if PAYMENT_SCOPE_KEY not in request.scope.get("state", {}):
            # Fail closed: only the gate, after a verified and claimed payment, lets a request here.
            log.error("unpaid request reached a paid handler", extra={"route": request.url.path})
            return json_response({"error": "payment_required"}, 402, NO_STORE)
        return None

    async def history(self, request: Request) -> Response:
        stream = self.reads.find(request.path_params["id"])
        if isinstance(stream, Answer):
            return respond(stream)
        refused = self._gated(request)
        if refused is not None:
            return refused
        form = request.query_params.get("format") or "json"
        answer = await self.reads.history_answer(stream, request.query_params, raw=form != "csv")
        if not answer.ok:
            return respond(answer)
        if form == "json":
            return Response(history_json(answer.document), media_type="application/json", headers=answer.headers)
        body = ndjson(answer.document) if form == "ndjson" else csv_rows(answer.document)
        return Response(body, media_type=MEDIA[form])

    async def at(self, request: Request) -> Response:
        stream = self.reads.find(request.path_params["id"])
        if isinstance(stream, Answer):
            return respond(stream)
        refused = self._gated(request)
        if refused is not None:
            return refused
        return respond(await self.reads.at_answer(stream, request.query_params))

    async def coverage(self, request: Request) -> Response:
        stream = self.reads.find(request.path_params["id"])
        if isinstance(stream, Answer):
            return respond(stream)
        return respond(await self.reads.coverage_answer(stream))
