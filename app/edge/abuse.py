"""Abuse controls: request size caps and per-client rate limits, in pure ASGI ahead of the x402 gate.

`AbuseGuard` (outside the gate) refuses, before anything is decoded: too many header fields or too
many header bytes (431), a declared or streamed body over the cap (413); then it counts the request
against its client's address: every request to a paid route (quotes and payment attempts alike)
under the `quote` limit, health and metrics under their own `ops` limit, everything else under
`free` (429 with Retry-After); every answer counted carries RateLimit-Limit, -Remaining and -Reset
(this worker's view, no I/O). Payment attempts are also counted per payer by the checkout
(`Services.payer_limited`: `hit_shared` for an attempt that has the relayer send a transaction, `hit`
for a voucher), once their signature is known to be the payer's and before the claim, so a refused
attempt is never claimed, verified or charged, and a forger cannot spend a real payer's quota.

Counting is `RateLimiter`'s (app/edge/rate_limiter.py).
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
from collections.abc import Iterable
from typing import Any

from prometheus_client import Counter
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from app.edge.proxy import PEER_KEY, Forwarded, IpAddress, parse_address
from app.edge.rate_limiter import Limit, RateLimiter
from app.runtime.settings import LimitSettings

__all__ = [
    "AbuseGuard",
    "CappedHttpToolsProtocol",
    "ClientAddress",
    "rate_limited_body",
]

log = logging.getLogger("worldgate.limits")

CAPPED = Counter("worldgate_requests_capped", "Requests refused before decoding, by cap", ["cap"])

CLIENTS_CACHED_MAX = 65_536  # resolved client addresses kept per worker
DRAIN_BYTES_MAX = 65_536  # a refused body up to this size is read and discarded, not answered with a reset
OPS_PATHS = frozenset({"/v1/health", "/v1/health/live", "/metrics"})  # polled by probes and scrapers: their own limit
_JSON = (b"content-type", b"application/json")
_NO_STORE = (b"cache-control", b"no-store")


class ClientAddress:
    """Who a request comes from, as a rate-limit key: the client `ProxyHeaders` (app/edge/proxy.py) resolved,
    or, in an app without it, X-Forwarded-For as far as the trusted proxies vouch for it. IPv6 clients count
    per /64, the block one subscriber usually gets."""

    def __init__(self, trusted: Iterable[str] = ()) -> None:
        self.forwarded = Forwarded(trusted)
        self._keys: dict[str, str] = {}  # address → key: parsing IPs costs µs

    def __call__(self, scope: Scope) -> str:
        client = scope.get("client")
        peer = str(client[0]) if client else ""
        if self.forwarded.trusted and PEER_KEY not in scope:  # not resolved outside: resolve here
            forwarded = b",".join(value for name, value in scope["headers"] if name == b"x-forwarded-for")
            named = self.forwarded.client(peer, forwarded)
            if named is not None:
                peer = str(named)
        key = self._keys.get(peer)
        if key is None:
            if len(self._keys) >= CLIENTS_CACHED_MAX:
                self._keys.clear()
            address = parse_address(peer)
            key = self._keys[peer] = _key(address) if address is not None else (peer or "unknown")
        return key


def _key(address: IpAddress) -> str:
    if address.version == 6:
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


def rate_limited_body(retry_after: int, message: str) -> bytes:
    return json.dumps({"error": "rate_limited", "message": message, "retry_after": retry_after}).encode()


def _standing(limit: int, remaining: int, reset: int) -> list[tuple[bytes, bytes]]:
    """The IETF draft's RateLimit-Limit/-Remaining/-Reset of the limit this request was counted under."""
    return [
        (b"ratelimit-limit", str(limit).encode()),
        (b"ratelimit-remaining", str(remaining).encode()),
        (b"ratelimit-reset", str(reset).encode()),
    ]


def _with_headers(send: Send, extra: list[tuple[bytes, bytes]]) -> Send:
    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", ()), *extra]
        await send(message)

    return sending


async def _answer(send: Send, status: int, body: bytes, *, head: bool, extra: Iterable[tuple[bytes, bytes]]) -> None:
    headers = [_JSON, _NO_STORE, *extra, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else body})


async def _refuse(send: Send, status: int, error: str, message: str, *, head: bool, close: bool = False) -> None:
    """A refusal before the app. `close` ends the connection (a large body is not worth reading to discard);
    otherwise uvicorn discards any unread body, and the client reads the answer instead of a reset."""
    CAPPED.labels(error).inc()
    body = json.dumps({"error": error, "message": message}).encode()
    await _answer(send, status, body, head=head, extra=[(b"connection", b"close")] if close else [])


class AbuseGuard:
    """Pure ASGI, between the request metrics and the x402 gate (see the module docstring)."""

    def __init__(self, app: ASGIApp, *, services: Any, limiter: RateLimiter, settings: LimitSettings) -> None:
        self.app = app
        self.services = services  # for the pricing table: which paths are paid
        self.limiter = limiter
        self.client = ClientAddress(settings.trusted_proxies)
        self.free = Limit.parse("free", settings.free)
        self.quote = Limit.parse("quote", settings.quote)
        self.ops = Limit.parse("ops", settings.ops)
        self.headers_max = settings.headers_max
        self.header_bytes_max = settings.header_bytes_max
        self.body_bytes_max = settings.body_bytes_max

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = scope["headers"]
        head = scope["method"] == "HEAD"
        if len(headers) > self.headers_max:
            message = f"at most {self.headers_max} header fields"
            await _refuse(send, 431, "too_many_headers", message, head=head)
            return
        size = len(scope.get("raw_path") or b"") + len(scope["query_string"])  # the request line counts too
        length = chunked = None
        for name, value in headers:
            size += len(name) + len(value) + 4
            if name == b"content-length":
                length = value
            elif name == b"transfer-encoding":
                chunked = value
        if size > self.header_bytes_max:
            message = f"the request line and headers are over {self.header_bytes_max} bytes"
            await _refuse(send, 431, "headers_too_large", message, head=head)
            return
        if length is not None and not length.isdigit():
            await _refuse(send, 400, "bad_content_length", "Content-Length must be a number of bytes", head=head)
            return
        if length is not None and int(length) > self.body_bytes_max:
            await self._too_large(send, head, close=int(length) > DRAIN_BYTES_MAX)
            return
        pricing = self.services.pricing
        paid = pricing is not None and pricing.lookup(scope["path"]) is not None
        # A payment header buys no exemption: until the checkout has checked its signature it is just a
        # request to a paid route, and a flood of forged ones must spend its sender's quota, not the payer's.
        limit = self.quote if paid else self.ops if scope["path"] in OPS_PATHS else self.free
        if limit is not None:
            client = self.client(scope)
            wait = self.limiter.hit(limit, client)
            standing = _standing(*self.limiter.standing(limit, client))
            if wait is not None:
                what = "requests to paid routes" if paid else "requests"
                message = f"too many {what} from this address ({limit.text}); retry after {wait} s"
                retry = [(b"retry-after", str(wait).encode()), *standing]
                await _answer(send, 429, rate_limited_body(wait, message), head=head, extra=retry)
                return
            send = _with_headers(send, standing)
        if chunked is not None and length is None and not paid:
            receive = await self._buffered(receive, send, head)
            if receive is None:
                return
        await self.app(scope, receive, send)

    async def _too_large(self, send: Send, head: bool, *, close: bool) -> None:
        message = f"request bodies are at most {self.body_bytes_max} bytes"
        await _refuse(send, 413, "body_too_large", message, head=head, close=close)

    async def _buffered(self, receive: Receive, send: Send, head: bool) -> Receive | None:
        """Read a streamed body of unknown length up to the cap, then hand it on in one message."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return None  # the client went away
            size += len(message.get("body", b""))
            if size > self.body_bytes_max:
                await self._too_large(send, head, close=message.get("more_body", False))
                return None
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if sent:
                return await receive()  # after the body: the disconnect, when it comes
            sent = True
            return {"type": "http.request", "body": b"".join(chunks), "more_body": False}

        return replay


class CappedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a cap on the bytes of a request head (request line + headers).

    httptools itself has none: it buffers a header of any size (1 MB was measured to pass) before the app
    sees it, so `AbuseGuard`'s cap alone would come after the memory was spent. This one closes the
    connection with a 431 once a head grows past `2 x WORLDGATE_HEADER_BYTES_MAX` (the guard answers
    the requests between the two caps in JSON). `worldgate serve` runs its workers with it.
    """

    head_bytes_max: int | None = None  # read from the environment once, by the first connection

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cls = type(self)
        if cls.head_bytes_max is None:
            configured = os.environ.get("WORLDGATE_HEADER_BYTES_MAX", "")
            number = configured.isascii() and configured.isdigit()
            cls.head_bytes_max = 2 * (int(configured) if number else LimitSettings().header_bytes_max)
        self._head_bytes = 0
        self._in_head = True
        self._completed = False

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head, self._completed = True, True

    def data_received(self, data: bytes) -> None:
        starts_in_head, self._completed = self._in_head, False
        super().data_received(data)
        if self._completed:  # the next head may have begun in this chunk: bounded by one read, not counted
            self._head_bytes = 0
        elif starts_in_head and self._in_head:  # all of this chunk is head
            self._head_bytes += len(data)
        if self._in_head and self.head_bytes_max and self._head_bytes > self.head_bytes_max:
            self._head_too_large()

    def _head_too_large(self) -> None:
        if self.transport.is_closing():
            return
        CAPPED.labels("head_too_large").inc()
        body = json.dumps(
            {"error": "headers_too_large", "message": f"the request head is over {self.head_bytes_max} bytes"}
        ).encode()
        head = (
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body)
        )
        self.transport.write(head + body)
        self.transport.close()
