"""Live feeds in the app: the fan-out (adapters/live) wired to the data tier, Redis, sessions and the operator.

`LiveFeeds` exists from the app's creation (its hooks are handed to the cache tier and the scheduler) and is
opened in the lifespan, once Redis and the tier exist. It answers the transports' questions: may a window be
sold on this stream now (`ready`: the feed is reachable and holds a recent frame; no charge otherwise), what a
new connection gets first (`opening`: its window, the frames it missed or the last one, the feed's status), and
it keeps the housekeeping: heartbeats, metrics, connection slots, the operator's keep-alive, and, when the
scheduler is off, the poll loop of each watched feed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from adapters import DataTier, Entry, Registry, Stream, Unavailable
from adapters.history import HotLayer
from adapters.live import (
    UNREACHABLE,
    Bridge,
    Frame,
    Hub,
    Poller,
    Subscriber,
    Watch,
    live,
    missed,
    newer,
    parse_event_id,
    records_frame,
)
from adapters.upstream.base import Adapter, Point
from app.runtime.settings import LiveSettings
from app.usecases.live_metrics import MetricsFeed
from app.usecases.live_sessions import Connection, LiveSessions
from app.usecases.live_stream import Out
from app.usecases.queries import Problem

log = logging.getLogger("worldgate.live")
FetchHook = Callable[[Adapter, Point | None, Entry], Awaitable[None]]
TICK_S = 1.0
METRICS_S = 2.0
REPORT_S = 5.0
REPORT_TTL_S = 15
REFRESH_S = 20.0
KEEP_RELOAD_S = 30.0


class LiveFeeds:
    def __init__(self, settings: LiveSettings, registry: Callable[[], Registry], *, prefix: str, scheduler: bool):
        self.settings = settings
        self.registry = registry  # the public view, as sharing changes
        self.prefix = prefix
        self.scheduler = scheduler  # on: every feed is refreshed anyway; off: the Poller refreshes watched ones
        self.hub = Hub(lag_frames=settings.lag_frames, drop_frames=settings.drop_frames)
        self.bridge: Bridge | None = None
        self.watch: Watch | None = None
        self.sessions: LiveSessions | None = None
        self.poller: Poller | None = None
        self.tier: DataTier | None = None
        self.hot: HotLayer | None = None
        self.redis: Any = None
        self.keep: set[str] = set()  # streams the operator keeps alive (fleet-wide, in Redis)
        self.connections: dict[str, Connection] = {}  # this process's open live connections
        self.metrics = MetricsFeed()
        self._primed: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def opened(self) -> bool:
        return self.bridge is not None

    # ---- lifecycle ----

    async def open(self, redis: Any, tier: DataTier, hot: HotLayer | None) -> None:
        self.redis, self.tier, self.hot = redis, tier, hot
        self.bridge = Bridge(redis, self.hub, prefix=self.prefix, on_control=self._control)
        self.watch = Watch(self.registry, self.bridge)
        self.sessions = LiveSessions(redis, prefix=self.prefix, ticket_ttl_s=self.settings.ticket_ttl_s)
        if not self.scheduler:
            self.poller = Poller(tier, self.on_refresh)
        with contextlib.suppress(Exception):  # Redis down at start: no keep-alive until it answers
            await self._load_keep()
        self.bridge.start()
        self._spawn(self._housekeeping())

    async def close(self) -> None:
        self.hub.close_all()
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.poller is not None:
            await self.poller.stop()
        if self.bridge is not None:
            await self.bridge.stop()
        self.bridge = None
        self.metrics.close()

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---- the hooks the data tier and the scheduler call ----

    def fetch_hook(self, also: FetchHook | None) -> FetchHook:
        """The cache tier's `on_fetch`: frames first (subscribers wait on them), then `also` (the time machine)."""

        async def on_fetch(adapter: Adapter, point: Point | None, entry: Entry) -> None:
            if self.watch is not None:
                try:
                    await self.watch.fetched(adapter, point, entry)
                except Exception:
                    log.exception("live frames of a fetch failed", extra={"source": adapter.name})
            if also is not None:
                await also(adapter, point, entry)

        return on_fetch

    async def on_refresh(self, stream: Stream, failed: str | None) -> None:
        if self.watch is not None:
            await self.watch.refreshed(stream, failed)

    # ---- what a connection gets ----

    def stream(self, stream_id: str) -> Stream | None:
        stream = self.registry().get(stream_id)
        return stream if stream is not None and live(stream) else None

    async def ready(self, stream: Stream) -> Frame | Problem:
        """The frame a new connection starts from, or why a window cannot be sold now (nothing charged)."""
        if not self.opened or self.tier is None:
            return Problem(503, "live_unavailable", "live feeds are not running yet; retry shortly")
        feed = self.hub.feed(stream.id)
        if stream.id not in self._primed or feed.last is None:
            problem = await self._prime(stream)
            if problem is not None:
                return problem
        if feed.status == UNREACHABLE:
            reason = "its upstream failed its last refreshes"
            return Problem(503, "feed_unreachable", f"{stream.id} is unreachable ({reason}); nothing was charged")
        last = feed.last
        if last is None:
            return Problem(503, "feed_empty", f"{stream.id} has nothing to stream right now; nothing was charged")
        if stream.stale_cap_s is not None and time.time() - last.at > stream.stale_cap_s:
            return Problem(503, "feed_stale", f"{stream.id} has not refreshed lately; nothing was charged")
        return last

    async def _prime(self, stream: Stream) -> Problem | None:
        """This process's first look at a feed: its status in Redis and its value in the cache (a hit when the
        scheduler keeps it warm; with no scheduler, the one fetch every process would share)."""
        assert self.tier is not None and self.bridge is not None
        status = await self.bridge.status(stream.adapter or "")
        try:
            read = await self.tier.read(stream)
        except Unavailable as exc:
            return Problem(503, "feed_unreachable", f"{stream.id} is unreachable ({exc.reason}); nothing was charged")
        if read.records:
            self.hub.prime(records_frame(stream.id, read.records, read.fetched_at_unix_s), status)
        self._primed.add(stream.id)
        return None

    async def opening(self, stream: Stream, last_event_id: str | None, *, first: Frame | None = None) -> list[Out]:
        """A new connection's first frames: what it missed since Last-Event-ID (the time machine's hot layer) and
        the newest, or the last frame; then the feed's status if it is unreachable."""
        feed = self.hub.feed(stream.id)
        last = first or feed.last
        after = parse_event_id(last_event_id)
        if after is None:
            frames: list[Out] = [last] if last is not None else []
        else:
            frames = list(newer(await missed(self.hot, stream.id, after), last, after))
        if feed.status == UNREACHABLE and feed.status_frame is not None:
            frames.append(feed.status_frame)
        return frames

    def subscribe(self, stream_id: str) -> Subscriber:
        subscriber = self.hub.subscribe(stream_id)
        self._poll()
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self.hub.unsubscribe(subscriber)
        self._poll()

    def caught_up(self, subscriber: Subscriber, sent: Frame | None) -> list[Out]:
        """Frames a subscriber missed between its opening and its subscription (a settlement takes a moment)."""
        last = subscriber.feed.last
        return [last] if last is not None and last is not sent and (sent is None or last.at > sent.at) else []

    # ---- connections ----

    def caps(self) -> tuple[int, int]:
        return self.settings.connections_per_address, self.settings.connections_per_payer

    async def over_caps(self, address: str, payer: str) -> Problem | None:
        """Checked before a window is sold: a 429 here charges nothing."""
        assert self.sessions is not None
        by_address, by_payer = await self.sessions.count(address, payer)
        per_address, per_payer = self.caps()
        if by_address >= per_address:
            return Problem(429, "too_many_live_connections", f"at most {per_address} live connections per address")
        if by_payer >= per_payer:
            return Problem(429, "too_many_live_connections", f"at most {per_payer} live connections per payer")
        return None

    def track(self, connection: Connection) -> None:
        self.connections[connection.id] = connection

    async def untrack(self, connection: Connection) -> None:
        self.connections.pop(connection.id, None)
        if self.sessions is not None:
            with contextlib.suppress(Exception):  # its slot lapses anyway
                await self.sessions.release(connection)

    # ---- the operator's keep-alive ----

    def _keep_key(self) -> str:
        return f"{self.prefix}live:keep"

    async def _load_keep(self) -> None:
        members = await self.redis.smembers(self._keep_key())
        self.keep = {m.decode() if isinstance(m, bytes) else m for m in members}
        self._poll()

    def _control(self, message: str) -> None:
        if message == "keep":
            self._spawn(self._load_keep())

    async def keep_alive(self, stream_id: str, on: bool) -> None:
        """Keep a feed polled without subscribers (start) or not (stop), on every replica."""
        assert self.bridge is not None
        key = self._keep_key()
        await (self.redis.sadd(key, stream_id) if on else self.redis.srem(key, stream_id))
        await self.bridge.control("keep")

    def _poll(self) -> None:
        if self.poller is None:
            return
        watched = [s for s in self.registry().all() if live(s) and (self.hub.count(s.id) or s.id in self.keep)]
        self.poller.want(watched)

    # ---- housekeeping ----

    async def _housekeeping(self) -> None:
        started = time.monotonic()
        due = dict.fromkeys(("beat", "metrics", "report", "refresh", "keep"), started)
        every = {
            "beat": self.settings.heartbeat_s,
            "metrics": METRICS_S,
            "report": REPORT_S,
            "refresh": REFRESH_S,
            "keep": KEEP_RELOAD_S,
        }
        due["keep"] += KEEP_RELOAD_S
        due["beat"] += self.settings.heartbeat_s
        while True:
            await asyncio.sleep(min(TICK_S, self.settings.heartbeat_s))
            now = time.monotonic()
            for job, at in due.items():
                if now < at:
                    continue
                due[job] = now + every[job]
                try:
                    await self._run(job)
                except Exception as exc:  # Redis down: next time
                    log.warning("live housekeeping failed", extra={"job": job, "error": type(exc).__name__})

    async def _run(self, job: str) -> None:
        if job == "beat":
            self.hub.tick()
        elif job == "metrics":
            self.metrics.flush(self.hub)
        elif job == "report":
            await self._report()
        elif job == "refresh" and self.sessions is not None:
            await self.sessions.refresh(list(self.connections.values()))
        elif job == "keep":
            await self._load_keep()

    def _report_key(self, origin: str) -> str:
        return f"{self.prefix}live:proc:{origin}"

    async def _report(self) -> None:
        """This process's subscribers per stream, for the fleet's count (the admin view)."""
        assert self.bridge is not None
        counts = {stream: len(feed.subscribers) for stream, feed in self.hub.feeds.items() if feed.subscribers}
        await self.redis.set(self._report_key(self.bridge.origin), json.dumps(counts), ex=REPORT_TTL_S)

    async def fleet_subscribers(self) -> dict[str, int]:
        """Subscribers per stream on every replica (each reports every few seconds; this one counts now)."""
        assert self.bridge is not None
        totals: dict[str, int] = {}
        mine = self._report_key(self.bridge.origin)
        async for key in self.redis.scan_iter(match=self._report_key("*"), count=100):
            if (key.decode() if isinstance(key, bytes) else key) == mine:
                continue
            raw = await self.redis.get(key)
            for stream, count in json.loads(raw or "{}").items():
                totals[stream] = totals.get(stream, 0) + int(count)
        for stream, feed in self.hub.feeds.items():
            totals[stream] = totals.get(stream, 0) + len(feed.subscribers)
        return totals

    async def overview(self, streams: list[Stream]) -> list[dict[str, Any]]:
        """Per live feed: running, subscribers (fleet and here), keep-alive, last frame, status, counters."""
        fleet = await self.fleet_subscribers() if self.opened else {}
        rows = []
        for stream in streams:
            if not live(stream):
                continue
            feed = self.hub.feeds.get(stream.id)
            status = await self.bridge.status(stream.adapter or "") if self.bridge is not None else None
            polled = self.poller is not None and (stream.adapter or "") in self.poller.tasks
            stats = feed.stats if feed is not None else None
            rows.append(
                {
                    "id": stream.id,
                    "running": self.scheduler or polled or stream.id in self.keep or fleet.get(stream.id, 0) > 0,
                    "subscribers": fleet.get(stream.id, 0),
                    "subscribers_here": len(feed.subscribers) if feed is not None else 0,
                    "keep_alive": stream.id in self.keep,
                    "last_frame_at": feed.last.at if feed is not None and feed.last is not None else None,
                    "last_frame_id": feed.last.id if feed is not None and feed.last is not None else None,
                    "feed_status": status or (feed.status if feed is not None else None),
                    "frames_published": stats.published if stats else 0,
                    "frames_sent": stats.sent if stats else 0,
                    "frames_dropped": stats.skipped if stats else 0,
                    "lagged": stats.lagged if stats else 0,
                    "subscribers_dropped": stats.dropped if stats else 0,
                    "lag_s": self.metrics.lag_s.get(stream.id, 0.0),
                    "interval_s": stream.interval_s,
                }
            )
        return rows
