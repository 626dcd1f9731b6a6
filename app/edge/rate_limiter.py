"""Per-client rate limits counted in each worker and summed through Redis.

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
import logging
import math
import time
from dataclasses import dataclass
from typing import Any

from limits import parse_many
from prometheus_client import Counter
from redis.exceptions import RedisError

log = logging.getLogger("worldgate.limits")

RATE_LIMITED = Counter("worldgate_rate_limited", "Requests refused with 429, by limit", ["limit"])

SHARED_TIMEOUT_S = 0.5  # a payment attempt waits at most this long for Redis before counting locally
REDIS_RETRY_S = 5.0  # after Redis failed, payment attempts count locally this long before trying it again
KEYS_MAX = 200_000  # counters held per worker; beyond this, counters already in Redis are dropped first
_GC_EVERY_S = 5.0


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

    def standing(self, limit: Limit, key: str) -> tuple[int, int, int]:
        """(limit, remaining, seconds to reset) of `key`'s tightest window as this worker last knew it, for
        the RateLimit-* headers; no I/O."""
        now = time.time()
        best: tuple[int, int, int] | None = None
        for window in limit.windows:
            count = self._counts.get((window.label, key))
            used, ends = (count.known + count.pending, count.ends) if count is not None and now < count.ends else (0, 0)
            reset = max(1, math.ceil(ends - now)) if ends else window.period_s - int(now % window.period_s)
            found = (window.amount, max(0, window.amount - used), reset)
            if best is None or found[1] < best[1]:
                best = found
        assert best is not None
        return best

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
