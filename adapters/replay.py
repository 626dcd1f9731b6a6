"""The replay server: every adapter's recorded payload, served over HTTP on 127.0.0.1.

For demos and tests on a machine with no internet (`worldgate serve --replay-upstreams`): requests
arrive as /<host><path> and are answered from fixtures/manifest.json. A path read at a point holds
`recordings`, each at the point its upstream answered for: a request is answered with the nearest one
within the path's `within_km` (plus the request's 0.1-degree rounding), and with 404 when none is,
so a replay never passes one place's data off as another's. Other paths answer whatever the query.
Tests can make one host misbehave (`fault(host, mode)`): HTTP 500, an HTML page, truncated JSON,
a hang past any timeout, an empty body; every request is counted per host, so a test can prove
that an open circuit or a coalesced miss made no upstream call.
"""

from __future__ import annotations

import functools
import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .filters import distance_km
from .upstream.base import Point

FIXTURES = Path(__file__).with_name("fixtures")
FAULTS = ("ok", "status_500", "html", "truncated", "hang", "slow")
HANG_S = 60.0
SLOW_S = 0.3
ROUNDING_KM = 8.0  # adapters ask at a point rounded to 0.1 degree: up to ~7.9 km from the caller's


def recordings(entry: dict[str, Any]) -> list[dict[str, Any]]:
    """A manifest path's recordings: one for a path read without a point (and its variants), one per point."""
    return list(entry["recordings"]) if "recordings" in entry else [entry, *entry.get("variants", {}).values()]


def nearest(entry: dict[str, Any], lat: float, lon: float, slack_km: float = 0.0) -> dict[str, Any] | None:
    """The recording of a point path nearest (lat, lon), if within the path's `within_km` (+ slack)."""
    found = [(distance_km(lat, lon, *r["point"]), r) for r in recordings(entry) if "point" in r]
    distance, recording = min(found, key=lambda pair: pair[0], default=(0.0, None))
    return recording if recording is not None and distance <= entry["within_km"] + slack_km else None


def variant(entry: dict[str, Any] | None, query: str) -> dict[str, Any] | None:
    """A path that answers by what is asked (Open-Meteo's /v1/gfs: `current=` live, `hourly=` for the
    backfill): its `variants` map a query parameter's name to the recording that answers when it is given."""
    if entry is None or "variants" not in entry:
        return entry
    asked = parse_qs(query)
    return next((found for name, found in entry["variants"].items() if name in asked), entry)


def _asked_point(query: str) -> tuple[float, float] | None:
    asked = parse_qs(query)
    try:
        return float(asked["latitude"][0]), float(asked["longitude"][0])
    except (KeyError, IndexError, ValueError):
        return None


class ReplayServer:
    def __init__(self, port: int = 0, fixtures: Path = FIXTURES) -> None:
        self.fixtures = fixtures
        self.manifest: dict[str, dict[str, dict[str, Any]]] = json.loads((fixtures / "manifest.json").read_text())
        self.faults: dict[str, str] = {}
        self.overrides: dict[tuple[str, str], bytes] = {}  # (host, path) → body, for tests
        self.hits: Counter[str] = Counter()
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> ReplayServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def fault(self, host: str, mode: str) -> None:
        assert mode in FAULTS, mode
        with self._lock:
            self.faults[host] = mode

    def serve(self, host: str, path: str, body: bytes) -> None:
        """Answer (host, path) with `body` instead of its recording (e.g. an empty result)."""
        with self._lock:
            self.overrides[(host, path)] = body

    def reset(self) -> None:
        with self._lock:
            self.faults.clear()
            self.overrides.clear()

    def answer(self, raw_path: str) -> tuple[int, str, bytes]:
        split = urlsplit(raw_path)
        path = split.path
        host, _, rest = path.lstrip("/").partition("/")
        rest = "/" + rest
        with self._lock:
            self.hits[host] += 1
            mode = self.faults.get(host, "ok")
            override = self.overrides.get((host, rest))
        if mode == "hang":
            time.sleep(HANG_S)
        if mode == "slow":
            time.sleep(SLOW_S)
        if mode == "status_500":
            return 500, "application/json", b'{"error": "internal server error"}'
        if mode == "html":
            return 200, "text/html", b"<html><body><h1>502 Bad Gateway</h1></body></html>"
        if override is not None:
            return 200, "application/json", override
        entry = variant(self.manifest.get(host, {}).get(rest), split.query)
        if entry is not None and "within_km" in entry:  # read at a point: only a recording near it answers
            asked = _asked_point(split.query)
            entry = nearest(entry, *asked, slack_km=ROUNDING_KM) if asked else None
            rest += f" near {asked[0]:g},{asked[1]:g}" if asked and entry is None else ""
        if entry is None:
            return 404, "application/json", json.dumps({"error": f"nothing recorded for {host}{rest}"}).encode()
        body = (self.fixtures / entry["file"]).read_bytes()
        if mode == "truncated":
            body = body[: max(1, len(body) // 2)]
        return 200, entry.get("content_type", "application/json"), body

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        replay = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def do_GET(self) -> None:
                status, content_type, body = replay.answer(self.path)
                self.send_response(status)
                self.send_header("content-type", content_type)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


# ---- replay coverage: what a process whose upstreams are replayed can answer ----

Coverage = Callable[[str], list["Point"] | None]  # a stream id → the points it can be answered at; None: anywhere


def live_coverage(stream_id: str) -> list[Point] | None:
    """Live upstreams answer any point."""
    return None


def recorded_coverage(fixtures: Path = FIXTURES) -> Coverage:
    """Upstreams replayed from recordings: a point stream answers only where a recording is, so the query
    rules refuse other points before any quote."""
    return functools.partial(recorded_points, fixtures=fixtures)


def recorded_points(stream_id: str, fixtures: Path = FIXTURES) -> list[Point] | None:
    """The points a point stream has recordings at (None: not a point stream, or not recorded by host and
    path, e.g. a test adapter), from the manifest the replay server answers from."""
    from .registry import STREAMS  # here: the registry and adapters import nothing of the replay server
    from .sources import all_adapters

    stream = next((s for s in STREAMS if s.id == stream_id), None)
    adapter = all_adapters().get(stream.adapter or "") if stream is not None and stream.point else None
    if adapter is None:
        return None
    request = adapter.request(Point(0.0, 0.0))
    entry = _manifest(fixtures).get(request.host, {}).get(request.path)
    if entry is None:
        return []
    return [Point(*r["point"]) for r in recordings(entry) if "point" in r]


@functools.lru_cache(maxsize=4)
def _manifest(fixtures: Path) -> dict[str, dict[str, dict[str, Any]]]:
    return json.loads((fixtures / "manifest.json").read_text())  # type: ignore[no-any-return]
