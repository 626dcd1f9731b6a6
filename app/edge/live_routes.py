"""Live feeds over HTTP: Server-Sent Events and WebSocket, paid per window (app/usecases/live_*.py).

- `GET /v1/streams/{id}/live` (paid, behind the gate): an unpaid connect gets the 402 quote of one window;
  paid (PAYMENT-SIGNATURE, as any x402 client retries), the handler checks the feed can be sold now (reachable,
  recent: else 503, nothing charged) and the connection caps (429), and answers the stream's opening (the
  `window` event, then the frames missed since Last-Event-ID or the last frame). The gate settles and sends it,
  then hands the connection over (`FOLLOW_SCOPE_KEY`): the session is kept, and frames flow until the window ends.
- `GET /v1/streams/{id}/live/ticket` (paid): the same window as a ticket, for a browser (its WebSocket and
  EventSource cannot send a payment header); the window starts when the ticket is first used.
- `GET /v1/streams/{id}/live/renew?session=` (paid, batch-settlement only): one more window for a session, asked
  for in-band by its `payment-required` event; applied once its voucher is booked, never before.
- `GET /v1/streams/{id}/live/events?ticket=` (SSE) and `/v1/streams/{id}/ws?ticket=` (WebSocket): a session
  opened or reopened by its ticket, until its window ends (then HTTP 204, so an EventSource stops retrying).

Streaming is pure ASGI on the hot path: each batch of frames is one `send` of bytes encoded once for everyone.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

import anyio
from redis import exceptions as redis_errors
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from adapters import Stream
from adapters.live import Frame, ws_text
from app.edge.abuse import ClientAddress
from app.edge.base_url import public_base_url
from app.edge.gate import FOLLOW_SCOPE_KEY, PAYMENT_SCOPE_KEY
from app.edge.live_transport import (
    GOODBYE_S,
    SSE_HEADERS,
    WS_POLICY,
    WS_SLOW,
    header,
    json_answer,
    problem_answer,
    run_stream,
    sse,
    stream_sse,
    ws,
)
from app.usecases.live_documents import SessionTerms, when
from app.usecases.live_feeds import LiveFeeds
from app.usecases.live_pricing import BATCH_SCHEME
from app.usecases.live_sessions import ADMITTED, HELD, Connection, Session, new_session_id
from app.usecases.live_stream import Event, Out
from app.usecases.queries import Problem
from app.usecases.services import Services
from payments import encode_json

log = logging.getLogger("worldgate.live")
UNAVAILABLE = Problem(503, "live_unavailable", "live sessions cannot be kept right now; nothing was charged")
_REDIS = (redis_errors.RedisError, OSError)
RENEW_TRIES = 3
RENEWAL_NOT_OFFERED = Problem(
    404,
    "renewal_not_offered",
    "renewals are paid by batch-settlement voucher, which this gateway does not offer: buy the next window by"
    " connecting to /live again (or buying a ticket); nothing was charged",
)


def _query(scope: Scope, name: str) -> str | None:
    values = parse_qs(scope["query_string"].decode("latin-1")).get(name)
    return values[0] if values and len(values) == 1 else None


def _channel(scheme: str, payload: Any) -> str:
    """A batch-settlement payment's channel (its vouchers renew the session in-band)."""
    if scheme != BATCH_SCHEME or not isinstance(payload, dict):
        return ""
    voucher = payload.get("voucher")
    channel = voucher.get("channelId") if isinstance(voucher, dict) else None
    return channel.lower() if isinstance(channel, str) else ""


def _http_base(base: str) -> str:
    """A WebSocket request's base URL as the HTTP one its documents name."""
    return "http" + base[2:] if base.startswith("ws") else base


class _Asgi:
    """A route endpoint that is plain ASGI (Starlette wraps functions and methods into request/response)."""

    def __init__(self, handler: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self.handler = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.handler(scope, receive, send)


class LiveApi:
    def __init__(self, feeds: LiveFeeds, services: Services, *, public_url: str | None, client: ClientAddress) -> None:
        self.feeds = feeds
        self.services = services
        self.public_url = public_url.rstrip("/") if public_url else None
        self.client = client

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/v1/streams/{id}/live", _Asgi(self.live), methods=["GET", "HEAD"]),
            Route("/v1/streams/{id}/live/ticket", _Asgi(self.ticket), methods=["GET", "HEAD"]),
            Route("/v1/streams/{id}/live/renew", _Asgi(self.renew), methods=["GET", "HEAD"]),
            Route("/v1/streams/{id}/live/events", _Asgi(self.events), methods=["GET"]),
            WebSocketRoute("/v1/streams/{id}/ws", self.websocket),
        ]

    # ---- shared ----

    def _stream(self, scope: Scope) -> Stream | Problem:
        stream_id = scope["path_params"]["id"]
        stream = self.feeds.stream(stream_id)
        if stream is None:
            message = (
                f"{stream_id} has no live feed (live: the realtime, grid and snapshot streams not read at a point)"
            )
            return Problem(404, "no_live_feed", message)
        return stream

    def _paid(self, scope: Scope) -> dict[str, Any] | None:
        paid: dict[str, Any] | None = scope.get("state", {}).get(PAYMENT_SCOPE_KEY)
        if paid is None:  # fail closed: only the gate, after a verified and claimed payment, lets a request here
            log.error("unpaid request reached a paid live handler", extra={"route": scope["path"]})
        return paid

    def _new_session(self, scope: Scope, stream: Stream, paid: dict[str, Any], *, ends: float) -> Session:
        pricing = self.services.pricing
        priced = pricing.lookup(scope["path"]) if pricing is not None else None
        scheme = str(paid.get("scheme") or "")
        return Session(
            id=new_session_id(),
            ticket=secrets.token_urlsafe(24),
            stream=stream.id,
            payer=str(paid.get("payer") or "").lower(),
            scheme=scheme,
            network=str(paid.get("network") or ""),
            channel=_channel(scheme, paid.get("payload")),
            window_s=self.feeds.settings.window_s,
            price=priced.amount_atomic if priced is not None else 0,
            end=ends,
        )

    async def _sellable(self, scope: Scope, send: Send) -> tuple[Stream, dict[str, Any], Frame] | None:
        """A paid request's stream, payment and opening frame, once the window can be sold (else answered)."""
        stream = self._stream(scope)
        if isinstance(stream, Problem):
            await problem_answer(send, stream)
            return None
        paid = self._paid(scope)
        if paid is None:
            await json_answer(send, 402, {"error": "payment_required"})
            return None
        try:
            first = await self.feeds.ready(stream)
            if isinstance(first, Problem):
                await problem_answer(send, first)
                return None
            over = await self.feeds.over_caps(self.client(scope), str(paid.get("payer") or ""))
        except _REDIS:
            await problem_answer(send, UNAVAILABLE)
            return None
        if over is not None:
            await problem_answer(send, over)
            return None
        return stream, paid, first

    # ---- SSE, paid on connect ----

    async def live(self, scope: Scope, receive: Receive, send: Send) -> None:
        sellable = await self._sellable(scope, send)
        if sellable is None:
            return
        stream, paid, first = sellable
        session = self._new_session(scope, stream, paid, ends=time.time() + self.feeds.settings.window_s)
        terms = SessionTerms(self.feeds, self.services, public_base_url(scope, self.public_url))
        opening: list[Out] = [Event("window", terms.window(session, session.end))]
        opening += await self.feeds.opening(stream, header(scope, b"last-event-id"), first=first)
        headers = [*SSE_HEADERS, (b"live-session", session.id.encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": sse(opening), "more_body": True})
        address = self.client(scope)

        async def follow(receive: Receive, send: Send) -> None:
            """The sale is delivered: keep the session, and stream until its window ends."""
            assert self.feeds.sessions is not None
            connection = self.feeds.sessions.new_connection(address, session.payer, session.id)
            try:
                await self.feeds.sessions.create(session)
                await self.feeds.sessions.admit(connection, self.feeds.caps(), force=True)  # the caps were checked
            except _REDIS:  # it still streams here; its ticket and renewal need Redis back
                log.error("a paid live session could not be kept in Redis", extra={"session": session.id})
            await stream_sse(self.feeds, stream, session, terms, connection, receive, send, [], sent=first)

        scope["state"][FOLLOW_SCOPE_KEY] = follow

    # ---- a ticket, paid ----

    async def ticket(self, scope: Scope, receive: Receive, send: Send) -> None:
        sellable = await self._sellable(scope, send)
        if sellable is None:
            return
        stream, paid, _ = sellable
        session = self._new_session(scope, stream, paid, ends=0.0)
        assert self.feeds.sessions is not None
        try:
            await self.feeds.sessions.create(session)  # unused if the sale fails: nobody learns its ticket
        except _REDIS:
            await problem_answer(send, UNAVAILABLE)
            return
        base = public_base_url(scope, self.public_url)
        terms = SessionTerms(self.feeds, self.services, base)
        described = terms.window(session, 0.0)
        document = {
            "ticket": session.ticket,
            "session": session.id,
            "stream": stream.id,
            "window_s": session.window_s,
            "expires_in_s": self.feeds.settings.ticket_ttl_s,
            "ws": described["ws"],
            "events": described["events"],
            "renew": described["renew"],
            "message": "open `ws` (WebSocket) or `events` (EventSource) within expires_in_s; the window starts then",
        }
        await json_answer(send, 200, document)

    # ---- one more window, by voucher ----

    async def renew(self, scope: Scope, receive: Receive, send: Send) -> None:
        stream = self._stream(scope)
        if isinstance(stream, Problem):
            await problem_answer(send, stream)
            return
        pricing = self.services.pricing
        if pricing is not None and pricing.lookup(scope["path"]) is None:  # no batch-settlement: nothing to sell
            await problem_answer(send, RENEWAL_NOT_OFFERED)
            return
        paid = self._paid(scope)
        if paid is None:
            await json_answer(send, 402, {"error": "payment_required"})
            return
        assert self.feeds.sessions is not None
        session_id = _query(scope, "session") or ""
        try:
            session = await self.feeds.sessions.get(session_id)
        except _REDIS:
            await problem_answer(send, UNAVAILABLE)
            return
        if session is None or session.stream != stream.id:
            await problem_answer(
                send, Problem(404, "unknown_session", "no such live session on this stream; nothing was charged")
            )
            return
        if session.payer != str(paid.get("payer") or "").lower():
            await problem_answer(
                send, Problem(403, "not_your_session", "this session was opened by another payer; nothing was charged")
            )
            return
        # The handler's part ends here: the window is added only once the voucher is booked (`follow`), so a
        # voucher refused after this (another request on the channel was booked first) adds nothing.
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"cache-control", b"no-store")],
            }
        )
        await send({"type": "http.response.body", "body": b"", "more_body": True})

        async def follow(receive: Receive, send: Send) -> None:
            assert self.feeds.sessions is not None
            ends = None
            for attempt in range(RENEW_TRIES):
                try:
                    ends = await self.feeds.sessions.extend(session)
                    break
                except _REDIS:
                    await asyncio.sleep(0.2 * (attempt + 1))
            if ends is None:
                log.error("a paid renewal could not be applied", extra={"session": session.id})
                document: dict[str, Any] = {"session": session.id, "renewed": False, "error": "renewal_not_applied"}
            else:
                document = {"session": session.id, "renewed": True, "window_end": when(ends)}
            await send({"type": "http.response.body", "body": encode_json(document), "more_body": False})

        scope["state"][FOLLOW_SCOPE_KEY] = follow

    # ---- by ticket: SSE (EventSource) and WebSocket ----

    async def _by_ticket(self, scope: Scope, stream: Stream) -> tuple[Session, Connection] | Problem:
        """The ticket's session, started (its window begins at its first use) and held by this connection."""
        sessions = self.feeds.sessions
        if sessions is None:
            return UNAVAILABLE
        session = await sessions.by_ticket(_query(scope, "ticket") or "")
        if session is None or session.stream != stream.id:
            return Problem(401, "invalid_ticket", "no such ticket for this stream, or its time is over")
        connection = sessions.new_connection(self.client(scope), session.payer, session.id)
        admitted = await sessions.admit(connection, self.feeds.caps())
        if admitted != ADMITTED:
            if admitted == HELD:
                return Problem(409, "session_in_use", "this session is open on another connection")
            return Problem(429, "too_many_live_connections", "too many live connections from this address or payer")
        ends = await sessions.start(session)
        return dataclasses.replace(session, end=ends), connection

    async def events(self, scope: Scope, receive: Receive, send: Send) -> None:
        stream = self._stream(scope)
        if isinstance(stream, Problem):
            await problem_answer(send, stream)
            return
        try:
            opened = await self._by_ticket(scope, stream)
            await self.feeds.ready(stream)  # primed (the ticket was paid: a feed down now still streams its status)
        except _REDIS:
            opened = UNAVAILABLE
        if isinstance(opened, Problem):
            await problem_answer(send, opened)
            return
        session, connection = opened
        if session.end <= time.time():  # 204: an EventSource stops reconnecting
            await self.feeds.untrack(connection)
            await send({"type": "http.response.start", "status": 204, "headers": [(b"cache-control", b"no-store")]})
            await send({"type": "http.response.body", "body": b""})
            return
        terms = SessionTerms(self.feeds, self.services, public_base_url(scope, self.public_url))
        opening: list[Out] = [Event("window", terms.window(session, session.end))]
        mark = self.feeds.hub.feed(stream.id).last  # the opening covers it (sent, or the client has it)
        opening += await self.feeds.opening(stream, header(scope, b"last-event-id"))
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [*SSE_HEADERS, (b"live-session", session.id.encode())],
            }
        )
        await stream_sse(self.feeds, stream, session, terms, connection, receive, send, opening, sent=mark)

    async def websocket(self, websocket: WebSocket) -> None:
        scope = websocket.scope
        stream = self._stream(scope)
        await websocket.accept()
        if isinstance(stream, Problem):
            await self._refuse(websocket, stream)
            return
        try:
            opened = await self._by_ticket(scope, stream)
            await self.feeds.ready(stream)  # primed (the ticket was paid: a feed down now still streams its status)
        except _REDIS:
            opened = UNAVAILABLE
        if isinstance(opened, Problem):
            await self._refuse(websocket, opened)
            return
        session, connection = opened
        terms = SessionTerms(self.feeds, self.services, _http_base(public_base_url(scope, self.public_url)))
        if session.end <= time.time():
            await self.feeds.untrack(connection)
            ended = await terms.ask(session, session.end, final=True)
            await websocket.send_text(ws(Event("payment-required", ended)))
            await websocket.close(WS_POLICY)
            return
        opening: list[Out] = [Event("window", terms.window(session, session.end))]
        mark = self.feeds.hub.feed(stream.id).last
        opening += await self.feeds.opening(stream, websocket.query_params.get("last_event_id"))

        async def emit(items: list[Out]) -> None:
            for item in items:
                await websocket.send_text(ws(item))

        async def gone() -> None:
            while (await websocket.receive())["type"] != "websocket.disconnect":
                pass  # clients have nothing to say here; renewals are paid over HTTP

        try:
            reason = await run_stream(self.feeds, stream, session, terms, connection, emit, opening, gone, sent=mark)
        except (WebSocketDisconnect, RuntimeError):
            return  # gone while a message was being written
        if reason in ("window_ended", "unpaid"):
            await websocket.close(1000)
        elif reason == "dropped":
            with anyio.move_on_after(GOODBYE_S):
                await websocket.close(WS_SLOW)

    async def _refuse(self, websocket: WebSocket, problem: Problem) -> None:
        await websocket.send_text(ws_text("error", encode_json({"error": problem.error, "message": problem.message})))
        await websocket.close(WS_POLICY)
