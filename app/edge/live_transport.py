"""Live frames on the wire: SSE bytes and WebSocket text, and the loop that runs one connection's stream.

Shared by the live routes (app/edge/live_routes.py) and bench/live.py. A connection's batch of frames is one
`send`; frames are encoded once for everyone (adapters/live/frames.py), events and heartbeats here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from starlette.types import Receive, Scope, Send

from adapters import Stream
from adapters.live import Frame, sse_block, ws_text
from app.usecases.live_feeds import LiveFeeds
from app.usecases.live_sessions import Connection, Session
from app.usecases.live_stream import Event, LiveStream, Out, Terms
from app.usecases.queries import Problem
from payments import encode_json

log = logging.getLogger("worldgate.live")
SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-store"),
    (b"x-accel-buffering", b"no"),  # nginx: pass each event on at once
]
HEARTBEAT_SSE = b": heartbeat\n\n"
HEARTBEAT_WS = '{"event":"heartbeat"}'
GOODBYE_S = 1.0  # how long a dropped subscriber's last write may take before the connection is cut
WS_POLICY = 1008  # a payment or policy refusal (as mppx closes)
WS_SLOW = 4008  # dropped: too far behind
Emit = Callable[[list[Out]], Awaitable[None]]


def sse(items: list[Out]) -> bytes:
    parts = []
    for item in items:
        if isinstance(item, Frame):
            parts.append(item.sse)
        elif isinstance(item, Event):
            parts.append(sse_block(item.name, encode_json(item.document)))
        else:
            parts.append(HEARTBEAT_SSE)
    return b"".join(parts)


def ws(item: Out) -> str:
    if isinstance(item, Frame):
        return item.ws
    if isinstance(item, Event):
        return ws_text(item.name, encode_json(item.document))
    return HEARTBEAT_WS


async def json_answer(
    send: Send, status: int, document: dict[str, Any], extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = encode_json(document)
    headers = [(b"content-type", b"application/json"), (b"cache-control", b"no-store"), *(extra or [])]
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def problem_answer(send: Send, problem: Problem) -> None:
    extra = [(b"retry-after", b"5")] if problem.status in (429, 503) else []
    await json_answer(send, problem.status, {"error": problem.error, "message": problem.message}, extra)


def header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value).decode("latin-1")
    return None


async def run_stream(
    feeds: LiveFeeds,
    stream: Stream,
    session: Session,
    terms: Terms,
    connection: Connection,
    emit: Emit,
    opening: list[Out],
    gone: Callable[[], Awaitable[None]],
    *,
    sent: Frame | None = None,
) -> str:
    """A session's frames until its window ends, the client goes (`gone` returns), or it falls too far behind
    (the hub cancels its writer, however stuck in a send); why it ended. `sent`: the feed's last frame when the
    opening was made (given to the client, or left out as one it has): only a newer one is caught up."""
    subscriber = feeds.subscribe(stream.id)
    feeds.track(connection)
    reason = "cancelled"
    try:
        with anyio.CancelScope() as cancel:
            subscriber.on_drop = cancel.cancel

            async def watch() -> None:
                await gone()
                subscriber.close()

            watcher = asyncio.ensure_future(watch())
            try:
                live = LiveStream(subscriber, session, terms, session.end)
                reason = await live.run(emit, [*opening, *feeds.caught_up(subscriber, sent)])
            finally:
                watcher.cancel()
        if subscriber.dropped:
            reason = "dropped"
    finally:
        feeds.unsubscribe(subscriber)
        with anyio.CancelScope(shield=True):
            await feeds.untrack(connection)
    log.info("live connection ended", extra={"stream": stream.id, "session": session.id, "reason": reason})
    return reason


async def stream_sse(
    feeds: LiveFeeds,
    stream: Stream,
    session: Session,
    terms: Terms,
    connection: Connection,
    receive: Receive,
    send: Send,
    opening: list[Out],
    *,
    sent: Frame | None = None,
) -> str:
    """`run_stream` over an SSE response already started; ends the response unless the client has gone."""
    left = False

    async def emit(items: list[Out]) -> None:
        await send({"type": "http.response.body", "body": sse(items), "more_body": True})

    async def gone() -> None:
        nonlocal left
        while (await receive())["type"] != "http.disconnect":
            pass
        left = True

    reason = await run_stream(feeds, stream, session, terms, connection, emit, opening, gone, sent=sent)
    if not left:
        with anyio.move_on_after(GOODBYE_S):  # a dropped client may never read it: cut after this long
            await send({"type": "http.response.body", "body": b"", "more_body": False})
    return reason
