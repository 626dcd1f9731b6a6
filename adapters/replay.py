"""The replay server: every adapter's recorded payload, served over HTTP on 127.0.0.1.

For demos and tests on a machine with no internet (`worldgate serve --replay-upstreams`): requests
arrive as /<host><path> and are answered from fixtures/manifest.json, whatever their query string.
Tests can make one host misbehave (`fault(host, mode)`): HTTP 500, an HTML page, truncated JSON,
a hang past any timeout, an empty body; every request is counted per host, so a test can prove
that an open circuit or a coalesced miss made no upstream call.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

FIXTURES = Path(__file__).with_name("fixtures")
FAULTS = ("ok", "status_500", "html", "truncated", "hang", "slow")
HANG_S = 60.0
SLOW_S = 0.3


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
        path = urlsplit(raw_path).path
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
        entry = self.manifest.get(host, {}).get(rest)
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
