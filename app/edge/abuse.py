"""Abuse controls: request size caps and per-client rate limits, in pure ASGI ahead of the x402 gate.

`AbuseGuard` (outside the gate) refuses, before anything is decoded: too many header fields or too
many header bytes (431), a declared or streamed body over the cap (413); then it counts the request
against its client's address: every request to a paid route (quotes and payment attempts alike)
under the `quote` limit, health and metrics under their own `ops` limit, everything else under
`free` (429 with Retry-After). Payment attempts are also counted per payer by the checkout
(`Services.payer_limited`, wired to `hit_shared`), once their signature is known to be the payer's
and before the claim, so a refused attempt is never claimed, verified or charged, and a forger
cannot spend a real payer's quota.

Counting (`RateLimiter`): slowapi's rate syntax and limit items (the `limits` package it is built
on), in fixed windows aligned to the clock. slowapi's own `Limiter` is not used: its middleware is a
BaseHTTPMiddleware (which cut throughput ~3x here) or per-route decorators, and its storage calls
are synchronous, so every request would block the event loop on a Redis round trip. Instead each
worker counts in memory (no I/O on the request path), and every `sync_interval_s` adds what it
counted to shared counters in Redis in one pipelined round trip, reading back the totals of every
worker and replica. A key is shared once it matters: after every 5% of its limit counted here, and
after every hit once it is past half of it; so a flood from many addresses, each far below its
limit, costs no Redis traffic. A limit therefore holds across the fleet to within what each other
worker admits before its next sync (at most 5% of the limit plus one interval's hits). Payment
attempts are counted in Redis at once instead (`hit_shared`, one pipelined round trip, exact across
the fleet): they cost a claim and chain reads anyway. When Redis is unreachable the counts stay in
memory, per worker, and are added to Redis once it answers again: limits degrade, requests never
fail because of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import math
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from limits import parse_many
from prometheus_client import Counter
from redis.exceptions import RedisError
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from app.runtime.settings import LimitSettings

__all__ = [
    "AbuseGuard",
    "CappedHttpToolsProtocol",
    "ClientAddress",
    "Limit",
    "RateLimiter",
    "Window",
    "rate_limited_body",
]

log = logging.getLogger("worldgate.limits")

RATE_LIMITED = Counter("worldgate_rate_limited", "Requests refused with 429, by limit", ["limit"])
CAPPED = Counter("worldgate_requests_capped", "Requests refused before decoding, by cap", ["cap"])

SHARED_TIMEOUT_S = 0.5  # a payment attempt waits at most this long for Redis before counting locally
REDIS_RETRY_S = 5.0  # after Redis failed, payment attempts count locally this long before trying it again
CLIENTS_CACHED_MAX = 65_536  # resolved client addresses kept per worker
DRAIN_BYTES_MAX = 65_536  # a refused body up to this size is read and discarded, not answered with a reset
KEYS_MAX = 200_000  # counters held per worker; beyond this, counters already in Redis are dropped first
_GC_EVERY_S = 5.0
OPS_PATHS = frozenset({"/v1/health", "/metrics"})  # polled by probes and scrapers: their own limit
_JSON = (b"content-type", b"application/json")
_NO_STORE = (b"cache-control", b"no-store")
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, slots=True)
class Window:
    label: str  # e.g. "quote:120/60": names its counters, here and in Redis
    amount: int
    period_s: int


@dataclass(frozen=True, slots=True)
class Limit:
    """One configured limit: a name (free | quote | payer), as configured, and its windows."""

    name: str
    text: str
    windows: tuple[Window, ...]

    @classmethod
    def parse(cls, name: str, text: str | None) -> Limit | None:
        if not text:
            return None
        items = parse_many(text)
        windows = (Window(f"{name}:{i.amount}/{i.get_expiry()}", i.amount, i.get_expiry()) for i in items)
        return cls(name, text, tuple(windows))


class _Count:
    """One window of one key: hits admitted here not yet in Redis, and the fleet's total at the last sync."""

    __slots__ = ("ends", "known", "pending", "window")

    def __init__(self, now: float, period_s: int) -> None:
        self.window = int(now // period_s)
        self.ends = (self.window + 1) * period_s
        self.pending = 0
        self.known = 0


Name = tuple[str, str]  # (window label, key)


class RateLimiter:
    """Fixed-window counters per (limit, key): local first, summed across workers through Redis."""

    def __init__(self, redis: Any = None, *, prefix: str = "wg:", sync_interval_s: float = 0.2) -> None:
        self.redis = redis  # a redis.asyncio client; None: this worker's counts only
        self.prefix = f"{prefix}rl:"
        self.sync_interval_s = sync_interval_s
        self._counts: dict[Name, _Count] = {}
        self._dirty: set[Name] = set()
        self._task: asyncio.Task[None] | None = None
        self._gc_at = 0.0
        self.shared = redis is not None  # False while Redis does not answer (then the limits are per worker)
        self._redis_down_until = 0.0  # monotonic: until then payment attempts are counted locally

    # ---- the request path: no I/O ----

    def _count(self, window: Window, key: str, now: float) -> tuple[Name, _Count]:
        name = (window.label, key)
        count = self._counts.get(name)
        if count is None or now >= count.ends:
            if count is None and len(self._counts) >= KEYS_MAX:
                self._shrink(now)
            count = self._counts[name] = _Count(now, window.period_s)
        return name, count

    def hit(self, limit: Limit, key: str) -> int | None:
        """Count one request for `key`; None if admitted, else the seconds until it would be (Retry-After)."""
        now = time.time()
        if len(limit.windows) == 1:  # the usual case, without the lists (this runs on every request)
            window = limit.windows[0]
            name, count = self._count(window, key, now)
            if count.known + count.pending >= window.amount:
                RATE_LIMITED.labels(limit.name).inc()
                return max(1, math.ceil(count.ends - now))
            count.pending += 1
            if 20 * count.pending >= window.amount or 2 * (count.known + count.pending) >= window.amount:
                self._dirty.add(name)
            return None
        counts = [(window, *self._count(window, key, now)) for window in limit.windows]
        wait = max((c.ends - now for w, _, c in counts if c.known + c.pending >= w.amount), default=0.0)
        if wait > 0:
            RATE_LIMITED.labels(limit.name).inc()
            return max(1, math.ceil(wait))
        for window, name, count in counts:
            count.pending += 1  # refused requests are not counted: a client that waits gets back in
            # Shared once it matters: every 5% of the limit, and every hit from half of it on. Most keys of a
            # flood from many addresses never get near either, and cost no Redis traffic at all.
            if 20 * count.pending >= window.amount or 2 * (count.known + count.pending) >= window.amount:
                self._dirty.add(name)
        return None

    async def hit_shared(self, limit: Limit, key: str) -> int | None:
        """`hit`, counted in Redis at once (one pipelined round trip): exact across workers and replicas.
        For payment attempts, which cost far more than the round trip; falls back to `hit` without Redis."""
        if self.redis is None or time.monotonic() < self._redis_down_until:
            return self.hit(limit, key)
        now = time.time()
        counts = [(window, *self._count(window, key, now)) for window in limit.windows]
        pipe = self.redis.pipeline(transaction=False)
        for window, name, count in counts:
            redis_key = self._redis_key(name, count.window)
            pipe.incrby(redis_key, 1)
            pipe.expire(redis_key, 2 * window.period_s + 1)
        try:
            totals = (await asyncio.wait_for(pipe.execute(), SHARED_TIMEOUT_S))[::2]
        except (RedisError, OSError, TimeoutError) as exc:
            self._redis_down_until = time.monotonic() + REDIS_RETRY_S
            self._unshared(exc)
            return self.hit(limit, key)
        wait = 0.0
        for (window, _name, count), total in zip(counts, totals, strict=True):
            count.known = max(count.known, int(total))  # what a fallback to local counting starts from
            if int(total) > window.amount:  # this attempt is counted too: the window's end is the same either way
                wait = max(wait, count.ends - now)
        if wait > 0:
            RATE_LIMITED.labels(limit.name).inc()
            return max(1, math.ceil(wait))
        return None

    def _redis_key(self, name: Name, window: int) -> str:
        label, key = name
        return f"{self.prefix}{label}:{window}:{key}"

    def _unshared(self, exc: BaseException) -> None:
        if self.shared:
            self.shared = False
            log.warning("rate limits are per worker until Redis answers", extra={"error": type(exc).__name__})

    def _shrink(self, now: float) -> None:
        """Make room: drop ended windows, then counts already in Redis (the next sync re-learns them)."""
        self._collect(now)
        if len(self._counts) >= KEYS_MAX:
            for name in [n for n, c in self._counts.items() if c.pending == 0]:
                del self._counts[name]
        if len(self._counts) >= KEYS_MAX:  # Redis is down and every count is unsent: start over
            log.warning("rate limit counters full; resetting this worker's counts", extra={"keys": len(self._counts)})
            self._counts.clear()
            self._dirty.clear()

    def _collect(self, now: float) -> None:
        for name in [n for n, c in self._counts.items() if c.ends <= now]:
            del self._counts[name]
            self._dirty.discard(name)

    # ---- the background sync ----

    async def sync(self) -> None:
        """Add this worker's new counts to the shared ones in Redis and read back the fleet's totals."""
        now = time.time()
        if now >= self._gc_at:
            self._collect(now)
            self._gc_at = now + _GC_EVERY_S
        if self.redis is None or not self._dirty:
            return
        batch = [(n, c, c.window, c.pending) for n in self._dirty if (c := self._counts.get(n)) is not None]
        self._dirty = set()
        pipe = self.redis.pipeline(transaction=False)
        for name, count, window, pending in batch:
            redis_key = self._redis_key(name, window)
            pipe.incrby(redis_key, pending)
            pipe.expire(redis_key, max(2, math.ceil(2 * (count.ends - now))))  # the window, and then some
        try:
            totals = await pipe.execute()
        except (RedisError, OSError, TimeoutError) as exc:
            self._dirty.update(name for name, *_ in batch)  # kept in memory; added once Redis answers
            self._unshared(exc)
            return
        self._redis_down_until = 0.0
        if not self.shared:
            self.shared = True
            log.info("rate limits are shared through Redis again")
        for (name, count, window, pending), total in zip(batch, totals[::2], strict=True):
            if self._counts.get(name) is count and count.window == window:
                count.pending -= pending
                count.known = int(total)

    async def _keep_syncing(self) -> None:
        while True:
            await asyncio.sleep(self.sync_interval_s)
            try:
                await self.sync()
            except Exception:  # a bug here must not stop limiting: the counts stay local
                log.exception("rate limit sync failed")

    def start(self, redis: Any = None) -> None:
        """Sync through `redis` (a redis.asyncio client) from now on, in a background task."""
        if redis is not None:
            self.redis, self.shared = redis, True
        self._task = asyncio.create_task(self._keep_syncing(), name="rate-limit-sync")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.sync(), 1.0)  # the last counts still bind the other workers


def _address(text: str) -> IpAddress | None:
    """An IP from a peer or an X-Forwarded-For hop ("1.2.3.4", "1.2.3.4:5678", "[::1]:80", "::1")."""
    text = text.strip()
    if text.startswith("["):
        text = text[1 : text.find("]")] if "]" in text else text[1:]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    mapped = getattr(address, "ipv4_mapped", None)
    return mapped or address


class ClientAddress:
    """Who a request comes from, as a rate-limit key. X-Forwarded-For is believed only when the direct
    peer is a trusted proxy; then the right-most hop that is not a trusted proxy is the client (hops
    further left were written by the client and prove nothing). IPv6 clients count per /64, the
    block one subscriber usually gets."""

    def __init__(self, trusted: Iterable[str] = ()) -> None:
        self.trusted = tuple(ipaddress.ip_network(t, strict=False) for t in trusted)
        self._known: dict[tuple[str, bytes], str] = {}  # (peer, X-Forwarded-For) → key: parsing IPs costs µs

    def _trusts(self, address: IpAddress) -> bool:
        return any(address in network for network in self.trusted)

    def __call__(self, scope: Scope) -> str:
        client = scope.get("client")
        peer = str(client[0]) if client else ""
        forwarded = b""
        if self.trusted:
            forwarded = b",".join(value for name, value in scope["headers"] if name == b"x-forwarded-for")
        known = self._known.get((peer, forwarded))
        if known is None:
            if len(self._known) >= CLIENTS_CACHED_MAX:
                self._known.clear()
            known = self._known[(peer, forwarded)] = self._resolve(peer, forwarded)
        return known

    def _resolve(self, peer: str, forwarded: bytes) -> str:
        address = _address(peer)
        if address is None or not self.trusted or not self._trusts(address):
            return self._key(peer)
        hops = forwarded.decode("latin-1").split(",") if forwarded else []
        for hop in reversed(hops):
            found = _address(hop)
            if found is None:
                break  # a hop a trusted proxy would not write: stay with the last trusted one
            address = found
            if not self._trusts(found):
                break
        return _key(address)

    @staticmethod
    def _key(peer: str) -> str:
        address = _address(peer)
        return _key(address) if address is not None else (peer or "unknown")


def _key(address: IpAddress) -> str:
    if address.version == 6:
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


def rate_limited_body(retry_after: int, message: str) -> bytes:
    return json.dumps({"error": "rate_limited", "message": message, "retry_after": retry_after}).encode()


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
            wait = self.limiter.hit(limit, self.client(scope))
            if wait is not None:
                what = "requests to paid routes" if paid else "requests"
                message = f"too many {what} from this address ({limit.text}); retry after {wait} s"
                retry = [(b"retry-after", str(wait).encode())]
                await _answer(send, 429, rate_limited_body(wait, message), head=head, extra=retry)
                return
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
            cls.head_bytes_max = 2 * (int(configured) if configured.isdigit() else LimitSettings().header_bytes_max)
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
