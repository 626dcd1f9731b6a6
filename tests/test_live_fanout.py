"""Live feeds' fan-out without a gateway: frames, the hub's watermarks, a stuck writer, the unreachable/ok
transitions across two processes' hubs, and Last-Event-ID from the time machine's hot layer."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from prometheus_client import REGISTRY

from adapters import STREAMS, CacheTier, DataTier, Fetcher, Record, Registry, ReplayServer, Scheduler
from adapters.history import HotLayer, Snapshot
from adapters.live import OK, UNREACHABLE, Bridge, Frame, Hub, Subscriber, Watch, missed, records_frame, status_frame
from adapters.sources import all_adapters
from app.edge.live_transport import run_stream, sse
from app.runtime.settings import LiveSettings
from app.usecases.live_client import parse_block
from app.usecases.live_feeds import LiveFeeds
from app.usecases.live_metrics import MetricsFeed
from app.usecases.live_sessions import Connection, Session
from app.usecases.live_stream import Event, LiveStream

ISS = "iss.position"
ISS_HOST = "api.wheretheiss.at"


def frame(n: int, stream: str = ISS) -> Frame:
    record = Record(stream, f"2024-05-21T12:{n // 60:02d}:{n % 60:02d}Z", 1.0, 2.0, {"n": n}, "test")
    return records_frame(stream, [record], 1_700_000_000.0 + n)


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Any]:
    client = aioredis.from_url(redis_url)
    yield client
    await client.aclose()


def test_a_frame_is_encoded_once_as_sse_and_websocket_and_crosses_replicas_intact() -> None:
    data = frame(61)
    block = parse_block(data.sse.decode().rstrip("\n"))
    assert block is not None and block.event == "frame" and block.id == "2024-05-21T12:01:01Z"
    document = block.json()
    assert document["feed_status"] == "ok" and document["count"] == 1 and document["records"][0]["fields"] == {"n": 61}
    assert json.loads(data.ws) == {"event": "frame", "id": data.id, "data": document}
    origin, again = Frame.from_wire(data.wire("abc"))
    assert origin == "abc" and again.sse == data.sse and again.at == data.at
    down = status_frame(ISS, UNREACHABLE, 1_700_000_000.0, "HTTP 500")
    parsed = parse_block(down.sse.decode())
    assert parsed is not None and parsed.id is None  # a status never moves a client's resume point
    assert parsed.json()["feed_status"] == "unreachable" and parsed.json()["reason"] == "HTTP 500"


async def test_the_hub_skips_frames_past_the_lag_watermark_and_drops_past_the_second() -> None:
    hub = Hub(lag_frames=4, drop_frames=10)
    reader, slow = hub.subscribe(ISS), hub.subscribe(ISS)
    dropped: list[bool] = []
    slow.on_drop = lambda: dropped.append(True)
    seen: list[int] = []
    for n in range(12):
        hub.publish(frame(n))
        if n % 2:  # the reader drains every other frame: never past the watermark
            skipped, frames = reader.take()
            assert skipped == 0
            seen += [json.loads(f.data)["records"][0]["fields"]["n"] for f in frames]
        if n == 6:  # the slow one, 4 queued and 3 skipped: behind but not dropped yet
            assert (len(slow.queue), slow.skipped, slow.dropped) == (4, 3, False)
    assert seen == list(range(12))
    assert slow.dropped and dropped == [True] and slow not in hub.feed(ISS).subscribers
    stats = hub.feed(ISS).stats
    assert stats.dropped == 1 and stats.published == 12


async def test_a_stuck_subscriber_never_delays_the_others_and_is_dropped() -> None:
    """Three writers on the real per-connection loop: two write at once, one is stuck in its send (a client that
    stopped reading). The two get every frame as it is published; the stuck one is cut past the watermark."""
    feeds = LiveFeeds(LiveSettings(lag_frames=8, drop_frames=20), lambda: Registry(), prefix="t:", scheduler=True)
    stream = next(s for s in STREAMS if s.id == ISS)
    never = asyncio.Event()
    got: dict[str, list[str]] = {"a": [], "b": []}

    def writer(name: str) -> Any:
        async def emit(items: list[Any]) -> None:
            if name == "stuck":
                await never.wait()
            got[name] += [i.id for i in items if isinstance(i, Frame)]

        return emit

    async def forever() -> None:
        await never.wait()

    session = Session("s_x", "t", ISS, "0xpayer", "exact", "eip155:84532", "", 600.0, 1, time.time() + 600)
    tasks = {
        name: asyncio.create_task(
            run_stream(feeds, stream, session, _Terms(), Connection(name, "a", "p", "s"), writer(name), [], forever)
        )
        for name in ("a", "stuck", "b")
    }
    await asyncio.sleep(0.05)
    for n in range(40):
        feeds.hub.publish(frame(n))
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert got["a"][-1:] == got["b"][-1:] == [frame(n).id]  # delivered before the next one is published
    assert await asyncio.wait_for(tasks["stuck"], 2) == "dropped"
    assert len(got["a"]) == len(got["b"]) == 40
    feeds.hub.close_all()
    assert await asyncio.gather(tasks["a"], tasks["b"]) == ["closed", "closed"]
    assert feeds.hub.feed(ISS).stats.dropped == 1 and feeds.hub.feed(ISS).stats.sent == 80


class _Terms:
    renew_lead_s = 1.0
    renew_grace_s = 1.0

    async def end_of(self, session: Session) -> float | None:
        return session.end

    async def ask(self, session: Session, ends: float, *, final: bool) -> dict[str, Any]:
        return {"final": final}

    def window(self, session: Session, ends: float) -> dict[str, Any]:
        return {"window_end": ends}


def test_an_sse_batch_is_the_frames_bytes_and_events_in_order() -> None:
    body = sse([frame(1), Event("lagged", {"skipped": 3}), "heartbeat"])
    assert body.startswith(frame(1).sse)
    assert b'event: lagged\ndata: {"skipped":3}\n\n' in body and body.endswith(b": heartbeat\n\n")


async def test_upstream_down_three_refreshes_one_unreachable_each_then_ok_across_two_processes(
    redis: Any, replay: ReplayServer
) -> None:
    """Two processes (each its cache tier, scheduler, hub and bridge; one Redis): the ISS feed refreshed every
    second. With the upstream failing, every subscriber of either process gets exactly one `unreachable` frame
    (after the third failed refresh); when it is back, the next frame says `ok` again."""
    replay.reset()
    prefix = f"wgtest:{secrets.token_hex(4)}:"
    registry = Registry([replace(s, interval_s=1) if s.id == ISS else s for s in STREAMS if s.id == ISS])
    hubs, bridges, schedulers = [], [], []
    async with httpx.AsyncClient() as http:
        for _ in range(2):
            hub = Hub()
            bridge = Bridge(redis, hub, prefix=prefix)
            watch = Watch(lambda: registry, bridge)
            fetcher = Fetcher(http, replay_url=replay.url)
            quick = {"negative_error_s": 0.3, "breaker_open_s": 0.3}  # an outage's markers, short for a test
            cache = CacheTier(redis, fetcher, prefix=prefix, on_fetch=watch.fetched, **quick)
            tier = DataTier(registry, all_adapters(), cache)
            bridge.start()
            await asyncio.wait_for(bridge.connected.wait(), 5)
            hubs.append(hub)
            bridges.append(bridge)
            schedulers.append(Scheduler(tier, on_refresh=watch.refreshed))
        seen: dict[Subscriber, list[Frame]] = {hub.subscribe(ISS): [] for hub in hubs for _ in range(3)}
        try:
            for scheduler in schedulers:
                scheduler.start()
            await _frames_until(seen, lambda f: f.kind == "data", within_s=5)
            replay.fault(ISS_HOST, "status_500")
            await _frames_until(seen, lambda f: f.status == UNREACHABLE, within_s=15)
            await asyncio.sleep(2.5)  # more failed refreshes: nothing more is said
            replay.reset()
            await _frames_until(seen, lambda f: f.kind == "data" and f.status == OK, within_s=15)
        finally:
            for scheduler, bridge in zip(schedulers, bridges, strict=True):
                await scheduler.stop()
                await bridge.stop()
    for frames in seen.values():
        statuses = [f.status for f in frames]
        assert statuses.count(UNREACHABLE) == 1, statuses
        assert statuses[-1] == OK and statuses.index(UNREACHABLE) < len(statuses) - 1
    assert all(hub.feed(ISS).status == OK for hub in hubs)


async def _frames_until(seen: dict[Subscriber, list[Frame]], done: Any, within_s: float) -> None:
    """Drain every subscriber into `seen` until each has seen a frame that `done` accepts."""
    deadline = time.monotonic() + within_s
    waiting = set(seen)
    while waiting:
        assert time.monotonic() < deadline, "timed out waiting for frames"
        await asyncio.sleep(0.05)
        for subscriber in seen:
            frames = subscriber.take()[1]
            seen[subscriber] += frames
            if any(done(f) for f in frames):
                waiting.discard(subscriber)


async def test_last_event_id_resumes_from_the_hot_layer(redis: Any) -> None:
    hot = HotLayer(redis, prefix=f"wgtest:{secrets.token_hex(4)}:hist:")
    now = time.time()
    for n, at in enumerate((now - 300, now - 200, now - 100)):
        record = Record(ISS, _iso(at - 5), 1.0, float(n), {"n": n}, "test")
        await hot.offer(Snapshot.of(ISS, (record,), t=at, fetched_at=at))
    frames = await missed(hot, ISS, _unix(_iso(now - 305)))  # the first snapshot's observed time
    assert [json.loads(f.data)["records"][0]["fields"]["n"] for f in frames] == [1, 2]
    assert await missed(hot, ISS, _unix(_iso(now - 105))) == []


def _iso(unix_s: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(unix_s))


def _unix(iso: str) -> float:
    from adapters.history.snapshots import unix

    return unix(iso)


async def test_a_batch_window_that_lapses_while_the_feed_is_down_goes_on_free_until_it_is_back() -> None:
    """Nothing is charged for a window in which the feed was unreachable: a renewable window ending while the feed
    is down asks for nothing and goes on (status frames only); the feed's return holds its first frame and asks
    for the next voucher, and once renewed the frame goes out after the new window."""
    hub = Hub()
    subscriber = hub.subscribe(ISS)
    hub.publish(status_frame(ISS, UNREACHABLE, time.time(), "HTTP 500"))
    terms = _Renewable(ends=time.time() + 0.3)
    session = Session("s_x", "t", ISS, "0xpayer", "batch-settlement", "eip155:84532", "0xc", 1.0, 5, terms.ends)
    out: list[Any] = []

    async def emit(items: list[Any]) -> None:
        out.extend(items)

    task = asyncio.create_task(LiveStream(subscriber, session, terms, terms.ends).run(emit, []))
    await asyncio.sleep(0.8)  # past the end, the feed down: nothing asked, the stream goes on
    assert not [i for i in out if isinstance(i, Event)] and not task.done()
    back = frame(1)
    hub.publish(back)
    await asyncio.sleep(1.3)  # the feed is back: its frame held, the next voucher asked for
    asked = [i for i in out if isinstance(i, Event) and i.name == "payment-required"]
    assert asked == [Event("payment-required", {"final": False})] and back not in out
    terms.ends = time.time() + 5  # renewed (on whichever replica)
    await asyncio.sleep(1.3)
    names = [i.name if isinstance(i, Event) else i for i in out]
    assert names[-2:] == ["window", back]
    subscriber.close()
    assert await task == "closed"


class _Renewable(_Terms):
    renew_lead_s = 0.1
    renew_grace_s = 5.0

    def __init__(self, ends: float) -> None:
        self.ends = ends

    async def end_of(self, session: Session) -> float | None:
        return self.ends


def test_two_hubs_in_one_process_add_their_subscribers_to_the_gauge_and_a_closed_one_takes_its_own_back() -> None:
    """The subscriber gauge moves by differences: one hub's flush never overwrites another's count (an embedded
    gateway beside another in one process), and closing a hub removes only what it had added."""
    stream = f"test.gauge.{secrets.token_hex(3)}"  # a label no other test touches

    def gauge() -> float:
        return REGISTRY.get_sample_value("worldgate_live_subscribers", {"stream": stream}) or 0.0

    listening, other = Hub(), Hub()
    listening.subscribe(stream), listening.subscribe(stream)
    other.subscribe(stream)
    other.unsubscribe(other.subscribe(stream))  # the other hub: one subscriber left of two
    ours, theirs = MetricsFeed(), MetricsFeed()
    for first, second in ((ours, theirs), (theirs, ours)):  # either order of flushes
        first.flush(listening if first is ours else other)
        second.flush(listening if second is ours else other)
        assert gauge() == 3
    theirs.close()
    assert gauge() == 2
    listening.unsubscribe(next(iter(listening.feed(stream).subscribers)))
    ours.flush(listening)
    assert gauge() == 1
    ours.close()
    assert gauge() == 0
