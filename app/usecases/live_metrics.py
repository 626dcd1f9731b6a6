"""Live feeds' Prometheus metrics, fed from the hub's plain counters every few seconds (the fan-out's hot path
counts in integers; turning them into metrics per frame per subscriber would cost more than the fan-out)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import Counter, Gauge

from adapters.live import Hub

SUBSCRIBERS = Gauge(
    "worldgate_live_subscribers", "Live connections open, by stream", ["stream"], multiprocess_mode="livesum"
)
FRAMES_SENT = Counter("worldgate_live_frames_sent", "Live frames written to subscribers", ["stream"])
FRAMES_DROPPED = Counter(
    "worldgate_live_frames_dropped", "Live frames a lagging subscriber skipped (or never got: dropped)", ["stream"]
)
LAGGED = Counter("worldgate_live_lagged", "`lagged` events sent to subscribers that fell behind", ["stream"])
SUBSCRIBERS_DROPPED = Counter(
    "worldgate_live_subscribers_dropped", "Live subscribers dropped past the drop watermark", ["stream"]
)
LAG_SECONDS = Gauge(
    "worldgate_live_lag_seconds",
    "The longest a live frame waited between reaching this process and being written, in the last period",
    ["stream"],
    multiprocess_mode="max",
)


@dataclass
class MetricsFeed:
    """What was last turned into metrics, per stream (the counters are incremented by the difference)."""

    seen: dict[str, tuple[int, int, int, int]] = field(default_factory=dict)
    # subscribers this hub last added to the gauge: the gauge moves by differences, so hubs sharing a process (an
    # embedded gateway beside another) add up instead of overwriting each other's count
    subscribers: dict[str, int] = field(default_factory=dict)
    lag_s: dict[str, float] = field(default_factory=dict)  # each stream's lag in the last period (the admin view)

    def flush(self, hub: Hub) -> None:
        for stream, feed in hub.feeds.items():
            stats = feed.stats
            now = (stats.sent, stats.skipped, stats.lagged, stats.dropped)
            before = self.seen.get(stream, (0, 0, 0, 0))
            for metric, delta in zip(
                (FRAMES_SENT, FRAMES_DROPPED, LAGGED, SUBSCRIBERS_DROPPED),
                (a - b for a, b in zip(now, before, strict=True)),
                strict=True,
            ):
                if delta > 0:
                    metric.labels(stream).inc(delta)
            self.seen[stream] = now
            self._count(stream, len(feed.subscribers))
            LAG_SECONDS.labels(stream).set(stats.lag_max_s)
            self.lag_s[stream], stats.lag_max_s = stats.lag_max_s, 0.0

    def close(self) -> None:
        """Take this hub's subscribers back out of the gauge (it stops counting them)."""
        for stream in list(self.subscribers):
            self._count(stream, 0)

    def _count(self, stream: str, now: int) -> None:
        delta = now - self.subscribers.get(stream, 0)
        if delta:
            SUBSCRIBERS.labels(stream).inc(delta)
        self.subscribers[stream] = now
