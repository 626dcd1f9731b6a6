"""The benches' load generator: C asyncio workers, each with one keep-alive connection (a minimal HTTP/1.1
client, or httpx); the quote and paid phases they run against a server and what a phase measured; and
`drive`, one server's turn in bench/paid.py (warm-ups, then the timed quote and paid phases).

bench/batch.py runs its own phases on the same raw connections and phase results.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

import httpx

from bench.harness import PATH, CpuProbe
from tests.chain import unb64

REQUEST_TIMEOUT_S = 60.0
T = TypeVar("T")


@dataclass
class Answer:
    status: int
    headers: Mapping[str, str]  # looked up by lower-case name
    body: bytes

    def text(self, limit: int = 200) -> str:
        return self.body[:limit].decode("utf-8", "replace")


class Connection(Protocol):
    async def get(self, path: str, headers: dict[str, str]) -> Answer: ...


# What a request can fail with at the transport level (counted as a failure, never raised).
TRANSPORT_ERRORS = (httpx.HTTPError, OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError)


class HttpxLoad:
    """The default client: one httpx.AsyncClient whose pool holds C keep-alive connections."""

    def __init__(self, url: str, concurrency: int) -> None:
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        self._client = httpx.AsyncClient(base_url=url, timeout=REQUEST_TIMEOUT_S, limits=limits)

    def connection(self, index: int) -> Connection:
        return self

    async def get(self, path: str, headers: dict[str, str]) -> Answer:
        answer = await self._client.get(path, headers=headers)
        return Answer(answer.status_code, answer.headers, answer.content)

    async def aclose(self) -> None:
        await self._client.aclose()


class RawConnection:
    """A minimal HTTP/1.1 keep-alive GET over asyncio streams: ~50x less client CPU than httpx."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def get(self, path: str, headers: dict[str, str]) -> Answer:
        if self._writer is None or self._reader is None or self._writer.is_closing():
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        reader, writer = self._reader, self._writer
        lines = [f"GET {path} HTTP/1.1", f"host: {self.host}:{self.port}", *(f"{k}: {v}" for k, v in headers.items())]
        try:
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
            status = int(head[0].split(" ", 2)[1])
            fields: dict[str, str] = {}
            for line in head[1:]:
                name, sep, value = line.partition(":")
                if sep:
                    fields[name.strip().lower()] = value.strip()
            if "content-length" in fields:
                body = await reader.readexactly(int(fields["content-length"]))
            elif fields.get("transfer-encoding", "").lower() == "chunked":
                body = await self._chunked(reader)
            else:
                body = await reader.read()
                self.close()
            if fields.get("connection", "").lower() == "close":
                self.close()
            return Answer(status, fields, body)
        except BaseException:
            self.close()  # the stream is out of step: reconnect on the next request
            raise

    @staticmethod
    async def _chunked(reader: asyncio.StreamReader) -> bytes:
        chunks = []
        while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
            chunks.append(await reader.readexactly(size))
            await reader.readexactly(2)
        await reader.readuntil(b"\r\n")  # the empty trailer
        return b"".join(chunks)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None


class RawLoad:
    def __init__(self, url: str, concurrency: int) -> None:
        parts = urlsplit(url)
        assert parts.hostname and parts.port
        self._connections = [RawConnection(parts.hostname, parts.port) for _ in range(concurrency)]

    def connection(self, index: int) -> Connection:
        return self._connections[index]

    async def aclose(self) -> None:
        for connection in self._connections:
            connection.close()


Load = HttpxLoad | RawLoad
CLIENTS: dict[str, Callable[[str, int], Load]] = {"httpx": HttpxLoad, "raw": RawLoad}


def run_async(coroutine: Coroutine[Any, Any, T]) -> T:
    """The load generator's event loop: uvloop, as on the servers."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of an ascending list; NaN when empty."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


@dataclass
class PhaseResult:
    wall_s: float = 0.0
    latencies_s: list[float] = field(default_factory=list)  # of the requests that succeeded
    statuses: Counter[int | str] = field(default_factory=Counter)
    ok: int = 0
    total: int = 0
    failures: list[str] = field(default_factory=list)
    cpu_s: dict[str, float] = field(default_factory=dict)  # CPU seconds per process during the phase

    @property
    def rps(self) -> float:
        return self.ok / self.wall_s if self.wall_s > 0 else math.nan

    def cpu_percent(self, name: str) -> float:
        """How busy a process was during the phase, in % of one core."""
        return self.cpu_s.get(name, math.nan) / self.wall_s * 100 if self.wall_s > 0 else math.nan

    def merge(self, other: PhaseResult) -> None:
        self.wall_s += other.wall_s
        self.latencies_s += other.latencies_s
        self.statuses.update(other.statuses)
        self.ok += other.ok
        self.total += other.total
        self.failures = (self.failures + other.failures)[:5]
        for name, seconds in other.cpu_s.items():
            self.cpu_s[name] = self.cpu_s.get(name, 0.0) + seconds

    def p_ms(self, p: float) -> float:
        return percentile(sorted(self.latencies_s), p) * 1000

    def record(self, elapsed_s: float, status: int | str, problem: str | None) -> None:
        self.total += 1
        self.statuses[status] += 1
        if problem is None:
            self.ok += 1
            self.latencies_s.append(elapsed_s)
        elif len(self.failures) < 5:
            self.failures.append(problem)


async def quote_phase(load: Load, concurrency: int, seconds: float) -> PhaseResult:
    """GET without payment for `seconds`; a success is a 402 carrying PAYMENT-REQUIRED."""
    result = PhaseResult()
    deadline = time.perf_counter() + seconds

    async def worker(index: int) -> None:
        connection = load.connection(index)
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            try:
                answer = await connection.get(PATH, {})
            except TRANSPORT_ERRORS as exc:
                result.record(0.0, type(exc).__name__, f"{type(exc).__name__}: {exc}")
                continue
            ok = answer.status == 402 and "payment-required" in answer.headers
            result.record(time.perf_counter() - started, answer.status, None if ok else answer.text())

    started = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    result.wall_s = time.perf_counter() - started
    return result


async def paid_phase(
    load: Load,
    concurrency: int,
    headers: list[str],
    body_ok: Callable[[bytes], bool],
) -> PhaseResult:
    """Send each pre-signed payment once; a success is a 200 with a successful PAYMENT-RESPONSE and the payload."""
    result = PhaseResult()
    queue = iter(headers)  # shared by the workers; safe, they all run on this one event loop

    async def worker(index: int) -> None:
        connection = load.connection(index)
        for header in queue:
            started = time.perf_counter()
            try:
                answer = await connection.get(PATH, {"payment-signature": header})
            except TRANSPORT_ERRORS as exc:
                result.record(0.0, type(exc).__name__, f"{type(exc).__name__}: {exc}")
                continue
            elapsed = time.perf_counter() - started
            receipt = answer.headers.get("payment-response")
            problem = None
            if answer.status != 200:
                problem = f"status {answer.status}: {answer.text()}"
            elif receipt is None:
                problem = "200 without a payment-response header"
            elif not _receipt_ok(receipt):
                problem = f"200 with an unsuccessful payment-response {receipt[:120]}"
            elif not body_ok(answer.body):
                problem = f"200 with an unexpected body: {answer.text()}"
            result.record(elapsed, answer.status, problem)

    started = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    result.wall_s = time.perf_counter() - started
    return result


def _receipt_ok(value: str) -> bool:
    try:
        receipt = unb64(value)
    except ValueError:
        return False
    return receipt.get("success") is True and bool(receipt.get("transaction"))


@dataclass
class ServerRun:
    """What driving one server measured; `merge` adds a later turn's."""

    name: str
    quote: PhaseResult
    paid: PhaseResult
    chain_delta_atomic: int
    notes: list[str] = field(default_factory=list)

    def merge(self, other: ServerRun) -> None:
        self.quote.merge(other.quote)
        self.paid.merge(other.paid)
        self.chain_delta_atomic += other.chain_delta_atomic
        self.notes += other.notes


async def drive(
    name: str,
    url: str,
    *,
    client: str,
    concurrency: int,
    quote_seconds: float,
    warmup_seconds: float,
    warmup_payments: list[str],
    payments: list[str],
    body_ok: Callable[[bytes], bool],
    balance: Callable[[], int],
    cpu: CpuProbe,
) -> ServerRun:
    """One turn on one server: untimed warm-ups, then the timed quote and paid phases, each with the CPU
    used, and payTo's balance change over the paid phase (`balance` reads it)."""
    load = CLIENTS[client](url, concurrency)
    try:
        await quote_phase(load, concurrency, warmup_seconds)
        if warmup_payments:
            warm = await paid_phase(load, concurrency, warmup_payments, body_ok)
            if warm.ok != warm.total:
                print(f"  {name}: warm-up paid {warm.ok}/{warm.total} ok: {warm.failures[:1]}", flush=True)
        cpu_before = cpu()
        quote = await quote_phase(load, concurrency, quote_seconds)
        quote.cpu_s = {k: v - cpu_before[k] for k, v in cpu().items()}
        before = balance()  # blocking, but nothing is in flight between the phases
        cpu_before = cpu()
        paid = await paid_phase(load, concurrency, payments, body_ok)
        paid.cpu_s = {k: v - cpu_before[k] for k, v in cpu().items()}
        after = balance()
    finally:
        await load.aclose()
    return ServerRun(name, quote, paid, after - before)


def fmt(value: float, digits: int = 1) -> str:
    """A measurement as the reports print it: "n/a" for NaN (nothing was measured)."""
    return "n/a" if math.isnan(value) else f"{value:.{digits}f}"
