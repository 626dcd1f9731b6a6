"""A fault-injecting HTTP proxy, put between a gateway and a chain RPC node or a remote facilitator.

It runs its own event loop in a thread, speaks plain HTTP/1.1 with keep-alive (what aiohttp and httpx
send), and forwards every request to one upstream URL unless a rule matches it. Rules are keyed by the
JSON-RPC `method` of the request body (`eth_sendRawTransaction`, `simulateTransaction`, ...) or, for a
body without one, by the URL path (`/verify`, `/settle`). A rule says how to answer, and whether the
upstream sees the request first: with `forward=True` the node acts on it (a transaction IS broadcast,
a facilitator DOES settle) and only the answer is broken, which is the case where the caller cannot
know what happened.

Shapes:
- `pass`     forward and answer as the upstream did (with `delay_s`, a slow node)
- `hang`     never answer, until the caller gives up (a timeout)
- `html_502` a load balancer's HTML error page, status 502
- `truncated` a 200 whose body stops half way (Content-Length promises more), then the socket closes
- `503_success` status 503 with a body that looks like success: the upstream's own (maybe rewritten), or
               a forged one; with `status=200`, any well-formed answer the test writes
- `drop`     close the connection without a byte
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
from solders.transaction import VersionedTransaction

from payments.evm.eip712 import keccak256

SHAPES = ("pass", "hang", "html_502", "truncated", "503_success", "drop")
HANG_MAX_S = 60.0
HTML_502 = b"<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1></body></html>"


@dataclass
class Fault:
    shape: str
    forward: bool = False  # the upstream sees (and acts on) the request before the answer is broken
    delay_s: float = 0.0  # wait this long before answering (after forwarding, when forwarding)
    times: int | None = None  # only the next N matching requests; None: until cleared
    body: Callable[[dict[str, Any]], Any] | None = None  # 503_success: the JSON to answer, from the request's
    rewrite: Callable[[Any], Any] | None = None  # 503_success after forwarding: the upstream's JSON, rewritten
    status: int = 503  # 503_success: the status it comes with (200 for a well-formed answer that says something else)

    def __post_init__(self) -> None:
        assert self.shape in SHAPES, self.shape


@dataclass(frozen=True)
class _Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def document(self) -> dict[str, Any]:
        try:
            parsed = json.loads(self.body) if self.body else {}
        except ValueError:
            return {}
        return parsed if isinstance(parsed, dict) else {}

    @property
    def key(self) -> str:
        method = self.document.get("method")
        return method if isinstance(method, str) else self.path


class FaultProxy:
    """`FaultProxy(upstream).start()`; `.url` goes where the gateway expects the node or facilitator."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.rules: dict[str, Fault] = {}
        self.seen: Counter[str] = Counter()  # requests received, by key
        self.forwarded: Counter[str] = Counter()  # requests the upstream saw, by key
        self.faulted: Counter[str] = Counter()  # requests answered by a rule, by key
        self.port = 0
        self.loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._client: httpx.AsyncClient | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="fault-proxy")
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # ---- control, from the test's thread ----

    def fault(self, key: str, shape: str, **options: Any) -> FaultProxy:
        with self._lock:
            self.rules[key] = Fault(shape, **options)
        return self

    def clear(self, key: str | None = None) -> None:
        with self._lock:
            if key is None:
                self.rules.clear()
            else:
                self.rules.pop(key, None)

    def start(self) -> FaultProxy:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the fault proxy did not start")
        return self

    def stop(self) -> None:
        if self.loop is None:
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)

    # ---- the proxy, on its own loop ----

    def _run(self) -> None:
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._open())
        self._ready.set()
        self.loop.run_forever()
        self.loop.close()

    async def _open(self) -> None:
        self._client = httpx.AsyncClient(timeout=30)
        self._server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        if self._client is not None:
            await self._client.aclose()

    def _rule(self, key: str) -> Fault | None:
        with self._lock:
            rule = self.rules.get(key)
            if rule is not None and rule.times is not None:
                rule.times -= 1
                if rule.times <= 0:
                    del self.rules[key]
            return rule

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                request = await _read_request(reader)
                if request is None:
                    break
                if not await self._answer(request, reader, writer):
                    break
        except (ConnectionError, OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    async def _forward(self, request: _Request) -> tuple[int, str, bytes]:
        assert self._client is not None
        headers = {k: v for k, v in request.headers.items() if k in ("content-type", "authorization", "accept")}
        answer = await self._client.request(
            request.method, self.upstream + request.path, content=request.body, headers=headers
        )
        self.forwarded[request.key] += 1
        return answer.status_code, answer.headers.get("content-type", "application/json"), answer.content

    async def _answer(self, request: _Request, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Answer one request; False when the connection must close."""
        key = request.key
        self.seen[key] += 1
        rule = self._rule(key)
        if rule is None or rule.shape == "pass":
            answer = await self._forward(request)
            if rule is not None:
                self.faulted[key] += 1
                await asyncio.sleep(rule.delay_s)
            await _write(writer, *answer)
            return True
        self.faulted[key] += 1
        upstream = await self._forward(request) if rule.forward else None
        await asyncio.sleep(rule.delay_s)
        if rule.shape == "hang":
            with contextlib.suppress(TimeoutError):  # until the caller hangs up (its timeout)
                await asyncio.wait_for(reader.read(), HANG_MAX_S)
            return False
        if rule.shape == "drop":
            writer.transport.abort()
            return False
        if rule.shape == "html_502":
            await _write(writer, 502, "text/html", HTML_502)
            return True
        if rule.shape == "truncated":
            full = upstream[2] if upstream and len(upstream[2]) > 8 else _success_like(request)
            head = _head(200, "application/json", len(full))
            writer.write(head + full[: len(full) // 2])
            await writer.drain()
            return False
        # 503_success
        if rule.body is not None:
            body = json.dumps(rule.body(request.document)).encode()
        elif upstream is not None and rule.rewrite is not None:
            body = json.dumps(rule.rewrite(json.loads(upstream[2]))).encode()
        elif upstream is not None:
            body = upstream[2]
        else:
            body = _success_like(request)
        await _write(writer, rule.status, "application/json", body)
        return True


async def _read_request(reader: asyncio.StreamReader) -> _Request | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    lines = head.decode("latin-1").split("\r\n")
    method, path, _version = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    body = await reader.readexactly(length) if length else b""
    return _Request(method, path, headers, body)


def _head(status: int, content_type: str, length: int) -> bytes:
    reason = {200: "OK", 502: "Bad Gateway", 503: "Service Unavailable"}.get(status, "Status")
    return (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: {content_type}\r\ncontent-length: {length}\r\n"
        "connection: keep-alive\r\n\r\n"
    ).encode()


async def _write(writer: asyncio.StreamWriter, status: int, content_type: str, body: bytes) -> None:
    writer.write(_head(status, content_type, len(body)) + body)
    await writer.drain()


def _success_like(request: _Request) -> bytes:
    """What a success looks like for this request, invented (nothing was forwarded)."""
    document = request.document
    if "method" in document:  # JSON-RPC: a plausible result for the usual calls
        return json.dumps({"jsonrpc": "2.0", "id": document.get("id", 1), "result": _result_like(document)}).encode()
    return json.dumps(
        {"isValid": True, "success": True, "transaction": "0x" + "ab" * 32, "payer": "0x" + "cd" * 20}
    ).encode()


def _result_like(document: dict[str, Any]) -> Any:
    method, params = document.get("method"), document.get("params") or []
    if method == "eth_sendRawTransaction" and params:
        return evm_tx_hash(document)
    if method == "eth_call":
        return "0x"
    if method in ("simulateTransaction", "getSignatureStatuses", "getLatestBlockhash", "isBlockhashValid"):
        value: Any = {
            "simulateTransaction": {"err": None, "logs": [], "accounts": None, "unitsConsumed": 0},
            "getSignatureStatuses": [
                {"slot": 1, "confirmations": None, "err": None, "confirmationStatus": "finalized"}
            ],
            "getLatestBlockhash": {"blockhash": "11111111111111111111111111111111", "lastValidBlockHeight": 1},
            "isBlockhashValid": True,
        }[method]
        return {"context": {"slot": 1}, "value": value}
    return "0x1"


def evm_tx_hash(document: dict[str, Any]) -> str:
    """The hash of the raw transaction in an `eth_sendRawTransaction` request: what a node would answer."""
    raw = str(document["params"][0])
    return "0x" + keccak256(bytes.fromhex(raw[2:])).hex()


def svm_signature(document: dict[str, Any]) -> str:
    """The signature (id) of the transaction in a `sendTransaction` request: what a node would answer."""
    raw = base64.b64decode(str(document["params"][0]))
    return str(VersionedTransaction.from_bytes(raw).signatures[0])
