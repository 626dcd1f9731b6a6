"""The access log: one JSON line per HTTP request on stderr, with WORLDGATE_ACCESS_LOG=on (the default).

Pure ASGI, outside the request metrics (so its line carries the request id they echo) and inside the proxy
headers (so `client` is the forwarded client a trusted proxy named). Each line: ts, level, logger, msg,
request_id, method, route (its template), path (without the query), status, duration_ms, client, payer (once a
payment is verified), cache (X-Cache), bytes (of the body sent), and trace_id when tracing is on. It reads no
request header at all, so no payment header, signature or key can reach it; the path is cut at 256 bytes.

It is on the quote path, which runs near raw Starlette's ceiling, so it skips `logging` (no record, no
handler lock): one line formatted by hand, escaped only where its text needs it, and one write(2) of it whole
(atomic on a pipe under 4 KiB, so workers sharing stderr never interleave inside a line). `sample:N` writes
one request in N, and always every paid one and every 5xx.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.edge.gate import PAYMENT_SCOPE_KEY
from app.runtime.metrics import route_label
from app.runtime.tracing import TRACE_ID_KEY

__all__ = ["AccessLog", "stderr_line"]

PATH_CHARS_MAX = 256
_PLAIN = re.compile(r"[ !#-\[\]-~]*")  # printable ASCII without the quote and the backslash: JSON as it is
Write = Callable[[bytes], Any]


def _text(value: Any) -> str:
    """A JSON string (or null), without the encoder's cost for the plain text nearly every value is."""
    if value is None:
        return "null"
    text = str(value)
    return f'"{text}"' if _PLAIN.fullmatch(text) else json.dumps(text)


def stderr_line(line: bytes) -> None:
    """Write one line to fd 2 whole; a log line is never worth failing a request for."""
    try:
        while line:
            line = line[os.write(2, line) :]
    except OSError:
        pass


class _Clock:
    """ISO 8601 UTC timestamps, the seconds part formatted once per second."""

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def now(self) -> str:
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second, self._prefix = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._prefix}.{int((now - second) * 1000):03d}Z"


class AccessLog:
    """`every`: write one request in this many (1: all); paid requests and 5xx answers are always written.
    `services` gives the pricing table, so a quote (answered before routing) is logged under its route."""

    def __init__(self, app: ASGIApp, *, every: int = 1, services: Any = None, write: Write = stderr_line) -> None:
        assert every >= 1
        self.app = app
        self.every = every
        self.services = services
        self.write = write
        self._seen = 0
        self._clock = _Clock()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        answer: list[Any] = [500, 0, None, None]  # status (500 if the app raises first), bytes, X-Cache, request id

        def logged_send(message: Message) -> Awaitable[None]:
            # A plain function handing back send's awaitable: no coroutine of its own per message (~1 µs each).
            if message["type"] == "http.response.body":
                answer[1] += len(message.get("body", b""))
            elif message["type"] == "http.response.start":
                answer[0] = message["status"]
                for name, value in message.get("headers", ()):
                    if name == b"x-cache":
                        answer[2] = value.decode("latin-1")
                    elif name == b"x-request-id":
                        answer[3] = value.decode("latin-1")
            return send(message)

        try:
            await self.app(scope, receive, logged_send)
        finally:
            self._log(scope, answer, time.perf_counter() - started)

    def _log(self, scope: Scope, answer: list[Any], seconds: float) -> None:
        status = answer[0]
        state = scope.get("state")
        paid = state.get(PAYMENT_SCOPE_KEY) if state else None
        if self.every > 1:
            self._seen += 1
            if self._seen % self.every and paid is None and status < 500:
                return
        client = scope.get("client")
        # Formatted by hand: a dict and json's encoder cost several µs a line, on a path that takes ~80 µs. Text
        # from outside (the path, the payer, X-Cache) goes through `_text`; the rest is plain by construction
        # (the request id is checked by the metrics middleware, the method by the HTTP parser, the route is ours).
        request_id = f'"{answer[3]}"' if answer[3] else "null"
        address = f'"{client[0]}"' if client else "null"
        payer = _text(paid.get("payer")) if paid else "null"
        line = (
            f'{{"ts":"{self._clock.now()}","level":"info","logger":"worldgate.access","msg":"request",'
            f'"request_id":{request_id},"method":"{scope["method"]}","route":"{self._route(scope)}",'
            f'"path":{_text(scope["path"][:PATH_CHARS_MAX])},"status":{int(status)},'
            f'"duration_ms":{seconds * 1000:.3f},"client":{address},"payer":{payer},'
            f'"cache":{_text(answer[2])},"bytes":{answer[1]}'
        )
        trace_id = scope.get(TRACE_ID_KEY)
        if trace_id is not None:
            line += f',"trace_id":{_text(trace_id)}'
        self.write(line.encode() + b"}\n")

    def _route(self, scope: Scope) -> str:
        """The route template: the router's match, else the paid route the gate quoted, else a bounded label."""
        route = scope.get("route")
        if route is not None:
            return str(getattr(route, "path", "other"))
        pricing = getattr(self.services, "pricing", None)
        paid = pricing.lookup(scope["path"]) if pricing is not None else None
        if paid is not None:
            return paid.route.rpartition(" ")[2]  # "GET /v1/streams/{id}" → "/v1/streams/{id}"
        return route_label(scope["path"])
