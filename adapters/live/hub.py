"""The in-process fan-out: one shared buffer per feed, one bounded queue per subscriber.

`publish` never waits: it appends the frame (the same object, encoded once) to every subscriber's queue and
wakes its writer. A subscriber whose writer falls behind (its socket is full, its client slow) gets frames
skipped past the lag watermark: the oldest queued frame makes room for the newest, and the writer sends a
`lagged` event saying how many before it goes on. Past the drop watermark (frames behind since it last caught
up: those queued plus those skipped) it is dropped: its `on_drop` ends its connection. Nobody else waits for it.

A feed also keeps its last data frame (replayed to whoever connects) and its status (`ok` or `unreachable`): a
status frame that says what the feed already is goes nowhere, so each subscriber sees one `unreachable` per
outage however many replicas noticed it.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from .frames import DATA, OK, UNREACHABLE, Frame

LAG_FRAMES_DEFAULT = 32
DROP_FRAMES_DEFAULT = 256


@dataclass
class FeedStats:
    """What a feed did in this process since it started (the app turns the deltas into metrics)."""

    published: int = 0  # frames that reached the feed
    sent: int = 0  # frames written to subscribers (counted by their writers)
    skipped: int = 0  # frames a lagging subscriber never got
    lagged: int = 0  # `lagged` events sent
    dropped: int = 0  # subscribers dropped for falling too far behind
    lag_max_s: float = 0.0  # the longest a frame waited between arriving and being written, since last read


class Subscriber:
    __slots__ = ("beat", "closed", "drop_max", "dropped", "event", "feed", "lag_max", "on_drop", "queue", "skipped")

    def __init__(self, feed: Feed, lag_max: int, drop_max: int) -> None:
        self.feed = feed
        self.lag_max = max(1, lag_max)
        self.drop_max = max(self.lag_max + 1, drop_max)
        self.queue: deque[Frame] = deque()
        self.event = asyncio.Event()
        self.skipped = 0  # skipped since the writer last took its queue
        self.beat = False  # a heartbeat is due (the hub's ticker)
        self.closed = False
        self.dropped = False
        self.on_drop: Callable[[], None] | None = None  # the transport's way to end the connection

    def offer(self, frame: Frame) -> bool:
        """Queue a frame; False if this subscriber is now too far behind (the hub drops it)."""
        queue = self.queue
        if len(queue) >= self.lag_max:
            queue.popleft()
            self.skipped += 1
            if self.skipped + len(queue) >= self.drop_max:
                return False
        queue.append(frame)
        self.event.set()
        return True

    def take(self) -> tuple[int, list[Frame]]:
        """(frames skipped since the last take, the frames queued), and the wait starts again."""
        skipped, self.skipped = self.skipped, 0
        frames = list(self.queue)
        self.queue.clear()
        self.event.clear()
        return skipped, frames

    def wake(self) -> None:
        self.event.set()

    def close(self) -> None:
        self.closed = True
        self.event.set()


class Feed:
    __slots__ = ("last", "stats", "status", "status_frame", "stream", "subscribers")

    def __init__(self, stream: str) -> None:
        self.stream = stream
        self.last: Frame | None = None  # the last data frame
        self.status = OK
        self.status_frame: Frame | None = None  # the frame that said `unreachable`, while it is
        self.subscribers: set[Subscriber] = set()
        self.stats = FeedStats()


class Hub:
    def __init__(self, *, lag_frames: int = LAG_FRAMES_DEFAULT, drop_frames: int = DROP_FRAMES_DEFAULT) -> None:
        self.lag_frames = lag_frames
        self.drop_frames = drop_frames
        self.feeds: dict[str, Feed] = {}
        self._loop_time: Callable[[], float] | None = None

    def feed(self, stream: str) -> Feed:
        found = self.feeds.get(stream)
        if found is None:
            found = self.feeds[stream] = Feed(stream)
        return found

    def subscribe(self, stream: str) -> Subscriber:
        feed = self.feed(stream)
        subscriber = Subscriber(feed, self.lag_frames, self.drop_frames)
        feed.subscribers.add(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        subscriber.closed = True
        subscriber.feed.subscribers.discard(subscriber)

    def prime(self, frame: Frame, status: str | None = None) -> None:
        """What a process that just started learns from the cache and Redis: the last data frame (unless it holds
        a newer one) and the status, without sending anything to anyone."""
        feed = self.feed(frame.stream)
        if feed.last is None or frame.at > feed.last.at:
            feed.last = frame
        if status is not None and feed.status_frame is None:
            feed.status = status

    def publish(self, frame: Frame) -> bool:
        """Fan a frame out to the feed's subscribers; False if it said nothing new (a repeated status)."""
        feed = self.feed(frame.stream)
        if frame.kind == DATA:
            if feed.last is not None and frame.at < feed.last.at:
                return False  # older than what the feed holds (a late copy from another replica)
            feed.last = frame
            feed.status, feed.status_frame = OK, None
        else:
            if frame.status == feed.status:
                return False
            feed.status = frame.status
            feed.status_frame = frame if frame.status == UNREACHABLE else None
        if self._loop_time is None:
            self._loop_time = asyncio.get_running_loop().time
        frame.received = self._loop_time()
        feed.stats.published += 1
        behind: list[Subscriber] = []
        for subscriber in feed.subscribers:
            if not subscriber.offer(frame):
                behind.append(subscriber)
        for subscriber in behind:
            self.drop(subscriber)
        return True

    def drop(self, subscriber: Subscriber) -> None:
        """Too far behind: out of the feed, and its connection ended by its transport."""
        if subscriber.dropped:
            return
        subscriber.dropped = True
        feed = subscriber.feed
        feed.subscribers.discard(subscriber)
        feed.stats.dropped += 1
        feed.stats.skipped += subscriber.skipped + len(subscriber.queue)
        subscriber.queue.clear()
        subscriber.event.set()
        if subscriber.on_drop is not None:
            subscriber.on_drop()

    def tick(self) -> None:
        """A heartbeat is due on every connection (each writer sends one unless it just sent something)."""
        for feed in self.feeds.values():
            for subscriber in feed.subscribers:
                subscriber.beat = True
                subscriber.event.set()

    def count(self, stream: str) -> int:
        feed = self.feeds.get(stream)
        return len(feed.subscribers) if feed is not None else 0

    def close_all(self) -> None:
        for feed in self.feeds.values():
            for subscriber in list(feed.subscribers):
                subscriber.close()
