"""A small client for worldgate's live feeds: SSE events from an httpx response, and in-band renewal.

The official x402 clients pay the connect as they pay any request (an `x402HttpxClient` retries the 402 with
PAYMENT-SIGNATURE and hands back the response unread, so it streams). What they cannot do alone is the in-band
renewal of a batch-settlement session: when the stream sends `event: payment-required` naming a renewal `url`,
someone must GET that URL through the same x402 client, which pays it with the channel's next voucher. `listen`
does that and yields every event, renewal notices included:

    async with x402HttpxClient(client) as http:
        async for event in listen(http, "https://gateway/v1/streams/iss.position/live"):
            if event.event == "frame":
                print(event.json()["feed_status"], event.id)

An `exact` session (or a renewal not paid) ends with a final `payment-required`: connect again to buy the next
window (send the last event's id as Last-Event-ID to get what was missed in between).
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx

log = logging.getLogger("worldgate.live.client")


@dataclass(frozen=True, slots=True)
class SseEvent:
    event: str  # "message" when the block names none
    data: str
    id: str | None = None

    def json(self) -> Any:
        return json.loads(self.data)


class LiveError(Exception):
    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(f"HTTP {status}: {body[:300]!r}")
        self.status = status
        self.body = body


def parse_block(block: str) -> SseEvent | None:
    """One SSE event from its lines (comments and unknown fields ignored); None for a comment-only block."""
    name, data, event_id = "message", [], None
    for line in block.split("\n"):
        if not line or line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if field == "event":
            name = value
        elif field == "data":
            data.append(value)
        elif field == "id" and "\0" not in value:
            event_id = value
    return SseEvent(name, "\n".join(data), event_id) if data else None


async def events(response: httpx.Response) -> AsyncIterator[SseEvent]:
    """The events of a streamed SSE response, as they arrive (blocks end at a blank line: LF, CR or CRLF)."""
    buffer = ""
    async for text in response.aiter_text():
        buffer += text
        buffer = buffer.replace("\r\n", "\n")
        if buffer.endswith("\r"):  # perhaps the first half of a CRLF: wait for the next chunk
            head, tail = buffer[:-1].replace("\r", "\n"), "\r"
        else:
            head, tail = buffer.replace("\r", "\n"), ""
        *blocks, rest = head.split("\n\n")
        buffer = rest + tail
        for block in blocks:
            event = parse_block(block)
            if event is not None:
                yield event


async def renew(http: httpx.AsyncClient, asked: dict[str, Any]) -> dict[str, Any] | None:
    """Pay an in-band `payment-required` (not final) through the x402 client: its renewal answer, or None."""
    url = asked.get("url")
    if asked.get("final") or not isinstance(url, str):
        return None
    answer = await http.get(url)
    if answer.status_code != 200:
        log.warning("live renewal not paid", extra={"status": answer.status_code, "body": answer.text[:300]})
        return None
    document: dict[str, Any] = answer.json()
    return document


async def listen(
    http: httpx.AsyncClient, url: str, *, renewals: bool = True, last_event_id: str | None = None
) -> AsyncIterator[SseEvent]:
    """Open a paid live stream with an x402 httpx client (it pays the connect) and yield its events; with
    `renewals`, pay each in-band `payment-required` with the same client and go on. Raises LiveError if the
    connect is not answered with the stream (a 402 the client could not pay, a 503 while the feed is down)."""
    headers = {"accept": "text/event-stream"}
    if last_event_id:
        headers["last-event-id"] = last_event_id
    async with http.stream("GET", url, headers=headers) as response:
        if response.status_code != 200:
            raise LiveError(response.status_code, await response.aread())
        async for event in events(response):
            yield event
            if renewals and event.event == "payment-required":
                await renew(http, event.json())
