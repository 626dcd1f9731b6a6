"""The cache tier: process memory → Redis → upstream, with the failure handling a paid API needs.

- A value is an `Entry`: the records of every stream one fetch feeds, and when they were fetched.
- Fresh (younger than the stream's interval, or the caller's max_age) → served from memory (HIT) or
  Redis (REDIS-HIT); otherwise fetched (MISS).
- Concurrent misses of one key make one upstream call: in a process through a single-flight task that a
  caller hanging up does not cancel, across processes through a Redis lock (redis-py's) capped at 30 s, so
  a hung fetch cannot hold the slot (DEDUP).
- A failed fetch is negatively cached for 30 s and an empty result for 120 s (NEG), so an outage or an
  empty feed does not turn into a request storm; the last good value is served (STALE) as long as it
  is younger than the stream's stale cap, else the read fails with `Unavailable`.
- Two consecutive failures of a source open its circuit for 5 minutes, shared through Redis: no
  upstream call while open, the half-open retry after it either closes or reopens it.
- If Redis is down, everything above still works per process, from memory (as World Monitor does).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from redis import exceptions as redis_errors
from redis.asyncio.lock import Lock

from .errors import ParseError, UpstreamError
from .expiring_lru import ExpiringLRU
from .fetcher import Fetcher
from .records import Record
from .singleflight import SingleFlight
from .upstream.base import Adapter, Point

log = logging.getLogger("worldgate.cache")
T = TypeVar("T")

FETCH_CAP_S = 30.0
NEGATIVE_EMPTY_S = 120.0
NEGATIVE_ERROR_S = 30.0
BREAKER_FAILURES = 2
BREAKER_OPEN_S = 300.0
MEMORY_ENTRIES_MAX = 1024
# Per-key markers (negative entries, fetch times) get one entry per 0.1-degree point ever asked for, so they
# are capped too: 4096 entries of ~100 bytes is well under a megabyte yet far beyond the points that are hot
# at once. An entry dropped early costs a Redis read (Redis keeps the same markers), not an upstream call.
KEY_MARKERS_MAX = 4096
REDIS_RETRY_S = 5.0  # after a Redis error, run from memory this long before trying Redis again
DEDUP_POLL_S = 0.05


@dataclass(frozen=True)
class Entry:
    records: dict[str, tuple[Record, ...]]
    fetched_at_unix_s: float

    def age_s(self, now: float | None = None) -> float:
        return max(0.0, (time.time() if now is None else now) - self.fetched_at_unix_s)

    def to_json(self) -> str:
        return json.dumps(
            {
                "fetched_at": self.fetched_at_unix_s,
                "records": {stream: [r.as_dict() for r in records] for stream, records in self.records.items()},
            }
        )

    @classmethod
    def from_json(cls, raw: str | bytes) -> Entry:
        document = json.loads(raw)
        records = {stream: tuple(Record(**r) for r in items) for stream, items in document["records"].items()}
        return cls(records, float(document["fetched_at"]))

    @classmethod
    def empty(cls, streams: tuple[str, ...], fetched_at_unix_s: float) -> Entry:
        return cls({stream: () for stream in streams}, fetched_at_unix_s)


def _shared(raw: str | bytes | None) -> Entry | None:
    """A value from Redis, or None if there is none or it cannot be read (an older format, a corrupt key):
    one bad key costs a refetch, never a 500."""
    if not raw:
        return None
    try:
        return Entry.from_json(raw)
    except (ValueError, KeyError, TypeError, AttributeError):
        log.warning("unreadable cache value in Redis: ignored")
        return None


@dataclass(frozen=True)
class Read:
    entry: Entry
    status: str  # the X-Cache header: HIT, REDIS-HIT, MISS, STALE, NEG, DEDUP


class Unavailable(Exception):
    """No data can be served: the source failed (or its circuit is open) and nothing recent enough is cached."""

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason


@dataclass
class SourceStatus:
    last_success_at: float | None = None
    last_error: str | None = None
    last_error_at: float | None = None
    consecutive_failures: int = 0
    circuit_open_until: float | None = None

    def circuit(self, now: float) -> str:
        return "open" if self.circuit_open_until and self.circuit_open_until > now else "closed"


def _reason(exc: Exception, cap_s: float) -> str:
    if isinstance(exc, UpstreamError):
        return exc.message
    if isinstance(exc, TimeoutError):
        return f"no answer within {cap_s:g} s"
    return f"malformed answer: {exc}"


def freshness(age_s: float, interval_s: float | None) -> str:
    """fresh within the interval, aging to 2x, stale to 4x, critical beyond."""
    if not interval_s:
        return "fresh"  # static data does not age
    ratio = age_s / interval_s
    return "fresh" if ratio <= 1 else "aging" if ratio <= 2 else "stale" if ratio <= 4 else "critical"


@dataclass
class _Negative:
    kind: str  # "empty" | "error"
    until: float
    at: float
    reason: str = ""  # for errors: what went wrong, so callers told "not now" also learn why


class CacheTier:
    def __init__(
        self,
        redis: Any,
        fetcher: Fetcher,
        *,
        prefix: str = "wg:",
        fetch_cap_s: float = FETCH_CAP_S,
        negative_empty_s: float = NEGATIVE_EMPTY_S,
        negative_error_s: float = NEGATIVE_ERROR_S,
        breaker_failures: int = BREAKER_FAILURES,
        breaker_open_s: float = BREAKER_OPEN_S,
        memory_entries_max: int = MEMORY_ENTRIES_MAX,
        observe: Callable[[str, str], None] | None = None,
        on_fetch: Callable[[Adapter, Point | None, Entry], Awaitable[None]] | None = None,
    ) -> None:
        self.redis = redis
        self.fetcher = fetcher
        self.prefix = prefix
        self.fetch_cap_s = fetch_cap_s
        self.negative_empty_s = negative_empty_s
        self.negative_error_s = negative_error_s
        self.breaker_failures = breaker_failures
        self.breaker_open_s = breaker_open_s
        self._memory: OrderedDict[str, Entry] = OrderedDict()
        self._memory_max = memory_entries_max
        self._negative: ExpiringLRU[_Negative] = ExpiringLRU(KEY_MARKERS_MAX)
        self._sources: dict[str, SourceStatus] = {}  # one per source: bounded by the registry
        self._inflight: SingleFlight[Read] = SingleFlight()
        self._fetched_at: ExpiringLRU[float] = ExpiringLRU(KEY_MARKERS_MAX)
        self._redis_down_until = 0.0
        self.upstream_calls: dict[str, int] = {}  # per source, for health and tests
        # (source, event): each read's X-Cache result, and "upstream_error"; the app counts them (metrics)
        self._observe = observe or (lambda _source, _event: None)
        self._on_fetch = (
            on_fetch  # each upstream fetch's records, before Redis shares them (the time machine, live frames)
        )

    # ---- Redis, degrading to memory ----

    @property
    def redis_ok(self) -> bool:
        return self.redis is not None and time.monotonic() >= self._redis_down_until

    async def _r(self, call: Callable[[], Awaitable[T]]) -> T | None:
        """Run one Redis call; on any Redis or socket error, note it and run from memory for a while."""
        if not self.redis_ok:
            return None
        try:
            return await call()
        except (redis_errors.RedisError, OSError) as exc:
            if time.monotonic() >= self._redis_down_until:
                log.warning("redis unavailable: caching in process memory", extra={"error": type(exc).__name__})
            self._redis_down_until = time.monotonic() + REDIS_RETRY_S
            return None

    def _k(self, kind: str, name: str) -> str:
        return f"{self.prefix}{kind}:{name}"

    # ---- the read ----

    async def read(
        self,
        adapter: Adapter,
        point: Point | None,
        *,
        interval_s: float,
        stale_cap_s: float,
        max_age_s: float | None = None,
    ) -> Read:
        result = await self._read(adapter, point, interval_s=interval_s, stale_cap_s=stale_cap_s, max_age_s=max_age_s)
        self._observe(adapter.name, result.status)
        return result

    async def _read(
        self,
        adapter: Adapter,
        point: Point | None,
        *,
        interval_s: float,
        stale_cap_s: float,
        max_age_s: float | None,
    ) -> Read:
        key = adapter.name + (f"@{point.key()}" if point else "")
        refresh_after_s = interval_s if max_age_s is None else min(interval_s, max_age_s)
        entry = self._memory.get(key)
        if entry is not None:
            self._memory.move_to_end(key)
            if entry.age_s() <= refresh_after_s:
                return Read(entry, "HIT")
        shared = _shared(await self._r(lambda: self.redis.get(self._k("cache", key))))
        if shared is not None:
            if entry is None or shared.fetched_at_unix_s > entry.fetched_at_unix_s:
                entry = shared
                self._remember(key, entry)
            if entry.age_s() <= refresh_after_s:
                return Read(entry, "REDIS-HIT")
        negative = await self._negative_get(key)
        if negative is not None:
            return self._negative_read(adapter, entry, stale_cap_s, negative)
        if await self._circuit_open(adapter.name):
            return self._stale_or_fail(adapter.name, entry, stale_cap_s, "its circuit is open")
        result, led = await self._inflight.run(
            key, lambda: self._fetch(adapter, point, key, entry, stale_cap_s, refresh_after_s)
        )
        return result if led or result.status not in ("MISS", "DEDUP") else Read(result.entry, "DEDUP")

    def _negative_read(self, adapter: Adapter, entry: Entry | None, stale_cap_s: float, negative: _Negative) -> Read:
        if negative.kind == "empty":
            return Read(Entry.empty(adapter.streams, negative.at), "NEG")
        reason = f"it failed {time.time() - negative.at:.0f} s ago ({negative.reason or 'no reason kept'})"
        return self._stale_or_fail(adapter.name, entry, stale_cap_s, reason)

    def _stale_or_fail(self, source: str, entry: Entry | None, stale_cap_s: float, reason: str) -> Read:
        if entry is not None and entry.age_s() <= stale_cap_s:
            return Read(entry, "STALE")
        raise Unavailable(source, reason)

    def _remember(self, key: str, entry: Entry) -> None:
        self._memory[key] = entry
        self._memory.move_to_end(key)
        while len(self._memory) > self._memory_max:
            self._memory.popitem(last=False)

    # ---- one upstream fetch, single-flight across processes ----

    async def _fetch(
        self,
        adapter: Adapter,
        point: Point | None,
        key: str,
        entry: Entry | None,
        stale_cap_s: float,
        refresh_after_s: float,
    ) -> Read:
        # The lock expires after the fetch cap, so a hung or dead holder cannot keep the key; waiting for it
        # is capped alike, and a wait that runs out just means fetching without it (no error, no lost value).
        lock: Lock | None = None
        if self.redis_ok:
            lock = self.redis.lock(
                self._k("lock", key),
                timeout=self.fetch_cap_s,
                sleep=DEDUP_POLL_S,
                blocking_timeout=self.fetch_cap_s,
                thread_local=False,  # one lock object per fetch, used by one task
            )
        locked = lock is not None and bool(await self._r(lambda: lock.acquire(blocking=False)))
        try:
            since: float | None = None  # a value stored by another process counts if fetched since then
            if lock is not None and not locked and self.redis_ok:
                # Another process is fetching this key: once it lets go, use what it stored (or its failure marker).
                waited_from = time.time()
                locked = bool(await self._r(lambda: lock.acquire(blocking=True)))
                since = waited_from - self.fetch_cap_s  # its fetch, however long it took
            elif locked:
                # Another process may have fetched and let go of the lock between our read and our lock.
                since = time.time() - refresh_after_s
            other = None if since is None else await self._left_by_other(adapter, key, entry, stale_cap_s, since)
            return other if other is not None else await self._upstream(adapter, point, key, entry, stale_cap_s)
        finally:
            # Only now: whoever takes the lock next must find what we stored (or our failure marker).
            if locked:
                await self._unlock(lock)

    async def _upstream(
        self, adapter: Adapter, point: Point | None, key: str, entry: Entry | None, stale_cap_s: float
    ) -> Read:
        started = time.time()
        self.upstream_calls[adapter.name] = self.upstream_calls.get(adapter.name, 0) + 1
        try:
            body = await asyncio.wait_for(self.fetcher.get(adapter.name, adapter.request(point)), self.fetch_cap_s)
            records = adapter.parse(body, point)
        except (UpstreamError, ParseError, TimeoutError) as exc:
            reason = _reason(exc, self.fetch_cap_s)
            await self._failed(adapter.name, key, reason)
            return self._stale_or_fail(adapter.name, entry, stale_cap_s, reason)
        except Exception as exc:  # an adapter bug on odd input: a failed fetch, never a 500
            log.exception("adapter crashed on an upstream answer", extra={"source": adapter.name})
            reason = f"the answer could not be read ({type(exc).__name__})"
            await self._failed(adapter.name, key, reason)
            return self._stale_or_fail(adapter.name, entry, stale_cap_s, reason)
        fetched = Entry({stream: tuple(records.get(stream, ())) for stream in adapter.streams}, started)
        await self._succeeded(adapter.name)
        if not any(fetched.records.values()):
            await self._negative_set(key, "empty", self.negative_empty_s)
            return Read(fetched, "MISS")
        self._remember(key, fetched)
        ttl_s = max(1, int(stale_cap_s))
        self._fetched_at.put(key, started, ttl_s)  # as long as the shared copy lives
        # Recorded before it is shared: a process killed in between leaves no fresh copy in Redis, so the next
        # one fetches again and records what this one could not (the recorder stores a payload once).
        if self._on_fetch is not None:
            try:
                await self._on_fetch(adapter, point, fetched)
            except Exception:  # recording is never a reason to fail a read
                log.exception("a fetch could not be recorded", extra={"source": adapter.name})
        await self._r(lambda: self._store(key, fetched, ttl_s))
        return Read(fetched, "MISS")

    async def _left_by_other(
        self, adapter: Adapter, key: str, entry: Entry | None, stale_cap_s: float, since: float
    ) -> Read | None:
        """What another process left in Redis for this key: its value if fetched since `since`, else its empty
        or failure marker (one failed upstream call per outage, not one per process); None if neither."""
        shared = _shared(await self._r(lambda: self.redis.get(self._k("cache", key))))
        if shared is not None and shared.fetched_at_unix_s >= since:
            self._remember(key, shared)
            return Read(shared, "DEDUP")
        negative = await self._negative_get(key)
        return None if negative is None else self._negative_read(adapter, entry, stale_cap_s, negative)

    async def _unlock(self, lock: Lock) -> None:
        async def release() -> None:
            try:
                await lock.release()  # only our own: after the cap it may belong to someone else
            except redis_errors.LockError:
                # It expired first (a fetch at its cap): what we stored stays stored, and Redis is not down.
                log.info("fetch lock expired before its release", extra={"lock": lock.name})

        await self._r(release)

    async def _store(self, key: str, entry: Entry, ttl_s: int) -> None:
        pipe = self.redis.pipeline()
        pipe.set(self._k("cache", key), entry.to_json(), ex=ttl_s)
        pipe.set(self._k("fetched", key), str(entry.fetched_at_unix_s), ex=ttl_s)  # small, for catalogs
        await pipe.execute()

    async def peek(self, adapter: Adapter, point: Point | None = None) -> Entry | None:
        """The cached value as it is, however old, without fetching (for the operator's views)."""
        key = adapter.name + (f"@{point.key()}" if point else "")
        entry = self._memory.get(key)
        shared = _shared(await self._r(lambda: self.redis.get(self._k("cache", key))))
        if shared is not None and (entry is None or shared.fetched_at_unix_s > entry.fetched_at_unix_s):
            return shared
        return entry

    async def fetched_at(self, keys: list[str]) -> dict[str, float]:
        """When each shared fetch was last stored (one round trip, no payloads), for catalog and health."""
        known = {k: at for k in keys if (at := self._fetched_at.get(k)) is not None}
        shared = await self._r(lambda: self.redis.mget([self._k("fetched", k) for k in keys])) if keys else None
        for key, raw in zip(keys, shared or [], strict=False):
            if raw is not None:
                known[key] = max(known.get(key, 0.0), float(raw))
        return known

    # ---- negative cache ----

    async def _negative_get(self, key: str) -> _Negative | None:
        now = time.time()
        local = self._negative.get(key)  # None once its time is up
        if local is not None:
            return local
        raw = await self._r(lambda: self.redis.get(self._k("neg", key)))
        if raw:
            kind, at, reason = [*(raw.decode() if isinstance(raw, bytes) else raw).split(":", 2), "", ""][:3]
            try:
                at_unix_s = float(at)
            except ValueError:  # not ours (an older format, or foreign): no negative entry
                return None
            ttl = self.negative_empty_s if kind == "empty" else self.negative_error_s
            shared = _Negative(kind, at_unix_s + ttl, at_unix_s, reason)
            return shared if shared.until > now else None
        return None

    async def _negative_set(self, key: str, kind: str, ttl_s: float, reason: str = "") -> None:
        now = time.time()
        self._negative.put(key, _Negative(kind, now + ttl_s, now, reason), ttl_s)
        value = f"{kind}:{now}:{reason}"
        await self._r(lambda: self.redis.set(self._k("neg", key), value, px=int(ttl_s * 1000)))

    # ---- circuit breaker and source status ----

    def _status(self, source: str) -> SourceStatus:
        return self._sources.setdefault(source, SourceStatus())

    async def _circuit_open(self, source: str) -> bool:
        status = self._status(source)
        if status.circuit(time.time()) == "open":
            return True
        shared = await self._r(lambda: self.redis.pttl(self._k("circuit", source)))
        if shared is not None and shared > 0:
            status.circuit_open_until = time.time() + shared / 1000
            return True
        return False

    async def _failed(self, source: str, key: str, reason: str) -> None:
        log.warning("upstream failed", extra={"source": source, "reason": reason})
        self._observe(source, "upstream_error")
        now = time.time()
        status = self._status(source)
        status.last_error, status.last_error_at = reason, now
        status.consecutive_failures += 1
        failures = await self._r(lambda: self._count_failure(source))
        count = failures if failures is not None else status.consecutive_failures
        if count >= self.breaker_failures:
            status.circuit_open_until = now + self.breaker_open_s
            await self._r(
                lambda: self.redis.set(self._k("circuit", source), "open", px=int(self.breaker_open_s * 1000))
            )
        await self._negative_set(key, "error", self.negative_error_s, reason)

    async def _count_failure(self, source: str) -> int:
        pipe = self.redis.pipeline()
        pipe.incr(self._k("failures", source))
        # Forget old failures eventually (ms: a sub-second test breaker must not expire at once).
        pipe.pexpire(self._k("failures", source), max(1000, int(self.breaker_open_s * 2000)))
        count, _ = await pipe.execute()
        return int(count)

    async def _succeeded(self, source: str) -> None:
        status = self._status(source)
        status.last_success_at = time.time()
        status.consecutive_failures = 0
        status.circuit_open_until = None
        await self._r(lambda: self.redis.delete(self._k("failures", source), self._k("circuit", source)))

    async def source_status(self, source: str) -> SourceStatus:
        """What this process knows of a source, with the circuit state as shared through Redis."""
        await self._circuit_open(source)
        return self._status(source)

    def forget(self) -> None:
        """Drop what this process remembers, keeping Redis (a second worker's view, for tests)."""
        self._memory.clear()
        self._negative.clear()
        self._sources.clear()
