"""Live feeds' fan-out against a bare Starlette SSE broadcast of the same frames, same run: `live_fanout_vs_raw=`.

`make bench` runs it last; alone: `.venv/bin/python bench/live.py [--subscribers N] [--frames F] [--rounds R]`.

1. One worker as `worldgate serve` runs one (uvicorn, uvloop, httptools), in this process, serving either
   - live: each connection runs the live route's own streaming path (app/edge/live_transport.py `stream_sse`:
     a hub subscriber, the per-connection loop of app/usecases/live_stream.py, frames encoded once), the
     payment left out (a session is made for each connection); or
   - raw: a Starlette `StreamingResponse` per connection reading an `asyncio.Queue`, the broadcast putting each
     frame's same SSE bytes in every queue.
2. N subscribers (default 1,000) connect from another process (plain sockets, uvloop) and count the frames
   they read. Once all are connected, F frames (an ISS record from the recorded payloads, ~0.5 kB each) are
   published one after another, each published after the loop has had a turn, and the clock runs until every
   subscriber has read all F. The live hub's watermarks are set above F, so neither side skips a frame.
3. Rounds in ABBA order (live, raw, raw, live, ...); prints frames delivered per second (N x F / time) for each,
   then `live_fanout_vs_raw=`: live's best round over raw's (on a shared 2-core machine a round varies up to
   2x with what else runs; the least disturbed round of each is the fairest pair), and the medians' ratio.
   Exit 1 if a subscriber missed a frame.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import uvicorn  # noqa: E402
from starlette.applications import Starlette  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import StreamingResponse  # noqa: E402
from starlette.routing import Route  # noqa: E402
from starlette.types import Receive, Scope, Send  # noqa: E402

from adapters import STREAMS, Record, Registry  # noqa: E402
from adapters.live import Frame, records_frame  # noqa: E402
from app.edge.live_transport import SSE_HEADERS, stream_sse  # noqa: E402
from app.runtime.settings import LiveSettings  # noqa: E402
from app.usecases.live_feeds import LiveFeeds  # noqa: E402
from app.usecases.live_sessions import Connection, Session  # noqa: E402
from payments.devnet.process import free_port  # noqa: E402

STREAM = next(s for s in STREAMS if s.id == "iss.position")
MARK = b"event: frame"


def frames(count: int) -> list[Frame]:
    """F distinct frames shaped as the ISS feed's (one record, its fields as the recorded payload has them)."""
    fields = {"altitude_km": 420.1, "velocity_kmh": 27_600.5, "visibility": "daylight", "footprint_km": 4_500.2}
    return [
        records_frame(
            STREAM.id,
            [
                Record(
                    STREAM.id, f"2024-05-21T12:{n // 60 % 60:02d}:{n % 60:02d}Z", 10.0 + n / 100, 20.0, fields, "bench"
                )
            ],
            1_716_000_000.0 + n,
        )
        for n in range(count)
    ]


class _Terms:
    """A session that never ends during the bench (the window's checks stay out of the measurement)."""

    renew_lead_s = 30.0
    renew_grace_s = 60.0

    async def end_of(self, session: Session) -> float | None:
        return session.end

    async def ask(self, session: Session, ends: float, *, final: bool) -> dict[str, Any]:
        return {}

    def window(self, session: Session, ends: float) -> dict[str, Any]:
        return {}


class LiveApp:
    def __init__(self, frames_max: int) -> None:
        settings = LiveSettings(lag_frames=frames_max + 1, drop_frames=frames_max + 2)
        self.feeds = LiveFeeds(settings, lambda: Registry(), prefix="bench:", scheduler=True)
        self.terms = _Terms()

    def subscribers(self) -> int:
        return self.feeds.hub.count(STREAM.id)

    def publish(self, frame: Frame) -> None:
        self.feeds.hub.publish(frame)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        session = Session("s_bench", "t", STREAM.id, "0xbench", "exact", "bench", "", 3600.0, 1, time.time() + 3600)
        connection = Connection("c", "127.0.0.1", "0xbench", session.id)
        await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
        await send({"type": "http.response.body", "body": b": open\n\n", "more_body": True})
        await stream_sse(self.feeds, STREAM, session, self.terms, connection, receive, send, [])


class RawApp:
    """The baseline: Starlette's own streaming response, one queue per subscriber."""

    def __init__(self) -> None:
        self.queues: set[asyncio.Queue[bytes]] = set()
        self.app = Starlette(routes=[Route("/", self.endpoint)])

    def subscribers(self) -> int:
        return len(self.queues)

    def publish(self, frame: Frame) -> None:
        for queue in self.queues:
            queue.put_nowait(frame.sse)

    async def endpoint(self, request: Request) -> StreamingResponse:
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        self.queues.add(queue)

        async def events() -> Any:
            try:
                yield b": open\n\n"
                while True:
                    yield await queue.get()
            finally:
                self.queues.discard(queue)

        return StreamingResponse(events(), media_type="text/event-stream", headers={"cache-control": "no-store"})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


class Worker:
    """uvicorn in a thread of its own, with its loop at hand (the publisher runs on it)."""

    def __init__(self, app: Any) -> None:
        self.port = free_port()
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=self.port,
            http="httptools",
            loop="uvloop",
            log_level="warning",
            lifespan="off",
            backlog=4096,
        )
        self.server = uvicorn.Server(config)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import uvloop

        self.loop = uvloop.new_event_loop()
        self.loop.run_until_complete(self.server.serve())

    def __enter__(self) -> Worker:
        self.thread.start()
        while not self.server.started:
            time.sleep(0.01)
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.should_exit = True
        self.server.force_exit = True
        self.thread.join(10)


async def _publish(app: LiveApp | RawApp, frames: list[Frame]) -> float:
    started = time.perf_counter()
    for frame in frames:
        app.publish(frame)
        await asyncio.sleep(0)  # the writers get a turn between two frames, on both sides
    return started


def round_(mode: str, subscribers: int, count: int) -> float:
    """One round: frames delivered per second."""
    app: LiveApp | RawApp = LiveApp(count) if mode == "live" else RawApp()
    published = frames(count)
    with Worker(app) as worker:
        clients = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--clients",
                str(subscribers),
                "--port",
                str(worker.port),
                "--frames",
                str(count),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert clients.stdout is not None and clients.stdin is not None
        if clients.stdout.readline().strip() != "connected":
            raise SystemExit("the subscribers could not connect")
        deadline = time.monotonic() + 30
        while app.subscribers() < subscribers:
            if time.monotonic() > deadline:
                raise SystemExit(f"only {app.subscribers()} subscribers reached the {mode} worker")
            time.sleep(0.01)
        assert worker.loop is not None
        started = asyncio.run_coroutine_threadsafe(_publish(app, published), worker.loop).result()
        line = clients.stdout.readline().strip()
        ended = time.perf_counter()
        clients.stdin.close()
        clients.wait(30)
    report = json.loads(line)
    if report["missed"]:
        print(f"{mode}: {report['missed']} subscribers missed frames", file=sys.stderr)
        raise SystemExit(1)
    return subscribers * count / (ended - started)


# ---- the subscribers' process ----


async def _subscribers(count: int, port: int, frames_max: int) -> None:
    done = asyncio.Event()
    finished = 0
    counts = [0] * count

    async def one(n: int, reader: asyncio.StreamReader) -> None:
        nonlocal finished
        tail = b""
        while counts[n] < frames_max:
            chunk = await reader.read(262_144)
            if not chunk:
                break
            seen = tail + chunk
            counts[n] += seen.count(MARK) - tail.count(MARK)
            tail = seen[-len(MARK) :]
        finished += 1
        if finished == count:
            done.set()

    async def connect() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nhost: 127.0.0.1\r\naccept: text/event-stream\r\n\r\n")
        await reader.readuntil(b"\r\n\r\n")
        return reader, writer

    opened = []
    for start in range(0, count, 100):
        opened += await asyncio.gather(*(connect() for _ in range(start, min(count, start + 100))))
    tasks = [asyncio.create_task(one(n, reader)) for n, (reader, _) in enumerate(opened)]
    print("connected", flush=True)
    await done.wait()
    print(json.dumps({"missed": sum(1 for c in counts if c < frames_max)}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until the bench is done with us
    for task in tasks:
        task.cancel()
    for _, writer in opened:
        writer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=8, help="ABBA: live, raw, raw, live, ...")
    parser.add_argument("--clients", type=int, help=argparse.SUPPRESS)  # the subscribers' process
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.clients:
        import uvloop

        uvloop.run(_subscribers(args.clients, args.port, args.frames))
        return
    order = ["live", "raw", "raw", "live"] * (args.rounds // 4 + 1)
    rates: dict[str, list[float]] = {"live": [], "raw": []}
    print(f"live fan-out: {args.subscribers} SSE subscribers, {args.frames} frames, one worker, cpus {os.cpu_count()}")
    for mode in order[: max(2, args.rounds)]:
        rate = round_(mode, args.subscribers, args.frames)
        rates[mode].append(rate)
        print(f"  {mode:4} {rate:>12,.0f} frames delivered/s")
    live, raw = max(rates["live"]), max(rates["raw"])
    median = statistics.median(rates["live"]) / statistics.median(rates["raw"])
    print(f"live_fanout_rps={live:.0f}  (best round; median {statistics.median(rates['live']):.0f})")
    print(f"raw_broadcast_rps={raw:.0f}  (best round; median {statistics.median(rates['raw']):.0f})")
    print(f"live_fanout_vs_raw_median={median:.2f}")
    print(f"live_fanout_vs_raw={live / raw:.2f}")


if __name__ == "__main__":
    main()
