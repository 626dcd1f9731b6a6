"""Live feeds through the gateway (issue 17): paid SSE with the official client, tickets and WebSocket, the window's
end, not selling an unreachable feed, batch renewal in-band, and the operator's view."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
import secrets
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import asyncpg
import httpx
import pytest
import redis.asyncio as aioredis
import websockets
from eth_account import Account
from x402 import x402Client
from x402.http.clients import x402HttpxClient
from x402.mechanisms.evm import EthAccountSigner
from x402.mechanisms.evm.batch_settlement.client import BatchSettlementEvmScheme, BatchSettlementEvmSchemeOptions
from x402.mechanisms.evm.exact.register import register_exact_evm_client

from adapters import STREAMS, Registry, ReplayServer
from adapters.history.snapshots import unix
from app.edge.admin.auth import mint
from app.runtime.settings import BatchSettings, LiveSettings, Settings
from app.usecases.live_client import SseEvent, events, renew
from app.usecases.live_sessions import LiveSessions, Session, new_session_id
from payments.devnet.evm import EvmDevnet

from .chain import new_payer, unb64, usdc_balance
from .conftest import ADMIN_SECRET, Gateway, running_gateway, with_settings

ISS = "iss.position"
ISS_HOST = "api.wheretheiss.at"
LIVE = f"/v1/streams/{ISS}/live"
WINDOW_PRICE = 10_000  # the basic tier's live window: $0.01
FAST = 2  # the ISS feed's refresh interval here (s): frames every ~1.6 s


def fast_registry() -> Registry:
    return Registry([replace(s, interval_s=FAST) if s.id == ISS else s for s in STREAMS])


def live_settings(settings: Settings, **live: Any) -> Settings:
    """The scheduler on (it is the poll loop), caps out of reach, and a cache of its own: an outage one test
    causes (an open circuit, an `unreachable` status) stays out of the others."""
    caps = {"connections_per_address": 5000, "connections_per_payer": 5000}
    fresh = f"wgtest:{secrets.token_hex(4)}:"
    return with_settings(settings, scheduler=True, cache_prefix=fresh, live=LiveSettings(**{**caps, **live}))


@pytest.fixture(scope="module")
def live_gateway(settings: Settings) -> Iterator[Gateway]:
    with running_gateway(live_settings(settings), registry=fast_registry()) as gateway:
        yield gateway


def exact_client(key: str) -> x402Client:
    client = x402Client()
    register_exact_evm_client(client, EthAccountSigner(Account.from_key(key)))
    return client


async def next_event(stream: Any, name: str | None = None, within_s: float = 10.0) -> SseEvent:
    async with asyncio.timeout(within_s):
        async for event in stream:
            if name is None or event.event == name:
                return event
    raise AssertionError("the stream ended")


async def test_the_official_client_pays_a_window_and_reads_frames_as_the_feed_refreshes(
    live_gateway: Gateway, devnet: EvmDevnet, pool: asyncpg.Pool
) -> None:
    quote = await live_gateway.get(LIVE)
    assert quote.status_code == 402
    accepts = unb64(quote.headers["payment-required"])["accepts"]
    assert {o["amount"] for o in accepts} == {str(WINDOW_PRICE)}
    assert quote.json()["resource"]["mimeType"] == "text/event-stream"
    key = new_payer(devnet)
    payer = Account.from_key(key).address
    before = usdc_balance(devnet, payer)
    async with (
        x402HttpxClient(exact_client(key), timeout=30) as http,
        http.stream("GET", live_gateway.url + LIVE, headers={"accept": "text/event-stream"}) as answer,
    ):
        assert answer.status_code == 200, await answer.aread()
        assert answer.headers["content-type"].startswith("text/event-stream")
        settled = json.loads(base64.b64decode(answer.headers["payment-response"]))
        assert settled["success"] is True
        stream = events(answer)
        window = await next_event(stream)
        assert window.event == "window"
        opened = window.json()
        assert opened["stream"] == ISS and opened["scheme"] == "exact" and opened["ticket"]
        first = await next_event(stream, within_s=1)  # the last frame, replayed at once
        assert first.event == "frame" and first.id and first.json()["feed_status"] == "ok"
        fetched = [first.json()["fetched_at"]]
        for _ in range(2):  # then one per refresh
            later = await next_event(stream, "frame", within_s=4 * FAST)
            fetched.append(later.json()["fetched_at"])
    assert fetched == sorted(fetched) and len(set(fetched)) == 3
    assert usdc_balance(devnet, payer) == before - WINDOW_PRICE
    row = await pool.fetchrow(
        "SELECT state, amount_atomic, resource FROM payments WHERE tx_hash = $1", settled["transaction"]
    )
    assert row is not None and dict(row) == {"state": "settled", "amount_atomic": WINDOW_PRICE, "resource": LIVE}


async def test_a_ticket_opens_a_websocket_whose_window_ends_with_payment_required(
    settings: Settings, devnet: EvmDevnet
) -> None:
    short = live_settings(settings, window_s=3)
    with running_gateway(short, registry=fast_registry()) as gateway:
        async with x402HttpxClient(exact_client(new_payer(devnet)), timeout=30) as http:
            bought = await http.get(gateway.url + LIVE + "/ticket")
        assert bought.status_code == 200, bought.text
        ticket = bought.json()
        assert ticket["ws"].startswith("ws://") and ticket["window_s"] == 3
        got: list[dict[str, Any]] = []
        async with websockets.connect(ticket["ws"]) as socket:
            opened_at = time.monotonic()
            async with asyncio.timeout(10):
                async for raw in socket:
                    got.append(json.loads(raw))
            closed = socket.close_code
        lasted = time.monotonic() - opened_at
        names = [m["event"] for m in got]
        assert names[0] == "window" and names[1] == "frame" and got[1]["data"]["feed_status"] == "ok"
        assert names[-1] == "payment-required" and "frame" not in names[names.index("payment-required") :]
        ended = got[-1]["data"]
        assert ended["final"] is True and ended["accepts"][0]["amount"] == str(WINDOW_PRICE)
        assert closed == 1000 and 2.5 < lasted < 5
        # the ticket is spent with its window: the socket opens only to say so, and the EventSource gets a 204
        async with websockets.connect(ticket["ws"]) as again:
            assert json.loads(await again.recv())["event"] == "payment-required"
        assert (await gateway.get(ticket["events"].removeprefix(gateway.url))).status_code == 204


async def test_an_unreachable_feed_is_not_sold_and_nothing_is_charged(
    settings: Settings, devnet: EvmDevnet, replay: ReplayServer, pool: asyncpg.Pool
) -> None:
    with running_gateway(live_settings(settings), registry=fast_registry()) as gateway:
        replay.fault(ISS_HOST, "status_500")
        try:
            deadline = time.monotonic() + 20
            while gateway.app.state.live.hub.feed(ISS).status != "unreachable":
                assert time.monotonic() < deadline, "the feed never became unreachable"
                await asyncio.sleep(0.2)
            key = new_payer(devnet)
            before = usdc_balance(devnet, Account.from_key(key).address)
            async with x402HttpxClient(exact_client(key), timeout=30) as http:
                answer = await http.get(gateway.url + LIVE)
        finally:
            replay.reset()
    assert answer.status_code == 503 and answer.json()["error"] == "feed_unreachable"
    assert usdc_balance(devnet, Account.from_key(key).address) == before
    rows = await pool.fetch("SELECT state FROM payments WHERE payer = $1", Account.from_key(key).address.lower())
    assert [r["state"] for r in rows] == ["released"]


async def test_a_renewal_where_no_batch_settlement_is_offered_is_not_offered_not_quoted(live_gateway: Gateway) -> None:
    """Renewals are paid by voucher only: on a gateway without batch-settlement the route says so (404), rather
    than a 402 that offers nothing to pay."""
    answer = await live_gateway.get(f"/v1/streams/{ISS}/live/renew?session=abc")
    assert answer.status_code == 404 and answer.json()["error"] == "renewal_not_offered", answer.text
    assert "payment-required" not in answer.headers and "/live" in answer.json()["message"]


async def test_the_operator_sees_each_feed_and_keeps_one_alive(live_gateway: Gateway, redis_url: str) -> None:
    token = mint(ADMIN_SECRET, "worldgate-admin", "ops@test", 600)
    headers = {"authorization": f"Bearer {token}"}
    ticket = await mint_ticket(live_gateway, redis_url)
    async with (
        httpx.AsyncClient(base_url=live_gateway.url, timeout=10) as watcher,
        watcher.stream("GET", f"{LIVE}/events?ticket={ticket}") as watching,
    ):
        assert watching.status_code == 200
        # the module's gateway may still be coming back from the unreachable-feed test: wait for its next fetch
        deadline = time.monotonic() + 30
        while True:
            overview = await live_gateway.get("/admin/api/live", headers=headers)
            assert overview.status_code == 200, overview.text
            feeds = {f["id"]: f for f in overview.json()["feeds"]}
            if feeds.get(ISS, {}).get("feed_status") == "ok" or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        assert ISS in feeds and "static.capitals" not in feeds and "weather.current" not in feeds
        assert feeds[ISS]["running"] is True and feeds[ISS]["feed_status"] == "ok"
        assert feeds[ISS]["subscribers_here"] >= 1 and feeds[ISS]["subscribers"] >= 1
        deadline = time.monotonic() + 5  # the metrics follow the hub's counters every 2 s
        while not re.search(
            r'worldgate_live_subscribers\{stream="iss.position"\} [1-9]',
            (scraped := (await live_gateway.get("/metrics")).text),
        ):
            assert time.monotonic() < deadline, scraped[-2000:]
            await asyncio.sleep(0.2)
        assert "worldgate_live_frames_sent_total" in scraped and "worldgate_live_lag_seconds" in scraped
    async with httpx.AsyncClient(base_url=live_gateway.url) as http:
        started = await http.post(f"/admin/api/live/{ISS}/start", headers=headers)
        assert started.status_code == 200 and started.json()["keep_alive"] is True
        again = (await http.get("/admin/api/live", headers=headers)).json()
        assert next(f for f in again["feeds"] if f["id"] == ISS)["keep_alive"] is True
        stopped = await http.post(f"/admin/api/live/{ISS}/stop", headers=headers)
        assert stopped.json()["keep_alive"] is False
        assert (await http.post("/admin/api/live/static.capitals/start", headers=headers)).status_code == 404


async def test_a_batch_session_is_renewed_in_band_and_ends_when_a_renewal_is_not_paid(
    settings: Settings, devnet: EvmDevnet, pool: asyncpg.Pool
) -> None:
    """The official client's batch-settlement scheme pays the connect (deposit and first voucher); before the
    4 s window ends the stream asks for the next voucher in-band, the client helper pays the renewal URL with the
    same client (the next voucher), and the stream goes on. The next ask is left unpaid: frames stop at the
    window's end, and after the grace period a final payment-required ends the stream."""
    timers = BatchSettings(claim_interval_s=3600, settle_interval_s=3600)
    batch = with_settings(settings, schemes=("exact", "batch-settlement"), batch=timers)
    key = new_payer(devnet)
    client = x402Client()
    client.register(devnet.network, BatchSettlementEvmScheme(Account.from_key(key), BatchSettlementEvmSchemeOptions()))
    got: list[tuple[float, SseEvent]] = []
    renewed: list[dict[str, Any] | None] = []
    with running_gateway(live_settings(batch, window_s=4, renew_grace_s=1), registry=fast_registry()) as gateway:
        async with (
            x402HttpxClient(client, timeout=30) as http,
            http.stream("GET", gateway.url + LIVE, headers={"accept": "text/event-stream"}) as answer,
        ):
            assert answer.status_code == 200, await answer.aread()
            async with asyncio.timeout(20):
                async for event in events(answer):
                    got.append((time.time(), event))
                    if event.event == "payment-required" and not renewed:
                        renewed.append(await renew(http, event.json()))  # the first renewal only
    names = [e.event for _, e in got]
    opened = got[0][1].json()
    assert names[0] == "window" and opened["scheme"] == "batch-settlement" and opened["renew"]
    first_ask = got[names.index("payment-required")][1].json()
    assert first_ask["final"] is False and first_ask["url"] == opened["renew"]
    assert (first_ask["acceptedCumulative"], first_ask["requiredCumulative"]) == (
        str(WINDOW_PRICE),
        str(2 * WINDOW_PRICE),
    )
    assert renewed[0] is not None and renewed[0]["renewed"] is True
    windows = [e.json() for _, e in got if e.event == "window"]
    assert len(windows) == 2  # the opening, and the renewal's
    ends = [unix(w["window_end"]) for w in windows]
    assert 3.5 < ends[1] - ends[0] < 4.5  # one more window, after the first
    last_ask = got[-1][1].json()
    assert names[-1] == "payment-required" and last_ask["final"] is True
    frames = [(at, e) for at, e in got if e.event == "frame"]
    assert len(frames) >= 3 and all(at <= ends[1] + 0.5 for at, _ in frames)  # nothing past the paid time
    assert got[-1][0] >= ends[1] + 0.9  # the grace period, frames held
    rows = await pool.fetch(
        "SELECT resource, amount_atomic FROM payments WHERE payer = $1 ORDER BY id",
        Account.from_key(key).address.lower(),
    )
    assert [(r["resource"], r["amount_atomic"]) for r in rows] == [
        (LIVE, WINDOW_PRICE),
        (LIVE + "/renew", WINDOW_PRICE),
    ]


async def mint_ticket(gateway: Gateway, redis_url: str, payer: str = "0xload") -> str:
    """A session as the ticket route sells it, kept straight in Redis (the sale itself is tested above)."""
    redis = aioredis.from_url(redis_url)
    try:
        sessions = LiveSessions(redis, prefix=gateway.app.state.settings.cache_prefix, ticket_ttl_s=600)
        session = Session(
            new_session_id(), secrets.token_urlsafe(16), ISS, payer, "exact", "eip155:84532", "", 600.0, 1
        )
        await sessions.create(session)
        return session.ticket
    finally:
        await redis.aclose()


async def opening_of(gateway: Gateway, ticket: str, last_event_id: str | None = None) -> list[SseEvent]:
    """The events a ticketed EventSource gets at once (its window, then what it missed or the last frame)."""
    headers = {"accept": "text/event-stream", **({"last-event-id": last_event_id} if last_event_id else {})}
    got: list[SseEvent] = []
    async with (
        httpx.AsyncClient(base_url=gateway.url, timeout=10) as http,
        http.stream("GET", f"{LIVE}/events?ticket={ticket}", headers=headers) as answer,
    ):
        assert answer.status_code == 200, await answer.aread()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(0.5):
                async for event in events(answer):
                    got.append(event)
    return got


async def test_last_event_id_replays_what_the_hot_layer_kept_after_it(live_gateway: Gateway, redis_url: str) -> None:
    fresh = await opening_of(live_gateway, await mint_ticket(live_gateway, redis_url))
    assert [e.event for e in fresh[:2]] == ["window", "frame"]
    latest = fresh[1].id
    assert latest is not None
    resumed = await opening_of(live_gateway, await mint_ticket(live_gateway, redis_url), "2000-01-01T00:00:00Z")
    replayed = [e for e in resumed if e.event == "frame" and e.id]  # data frames (a status frame has no id)
    assert replayed and replayed[-1].id == latest  # the recorded states since then, the newest last
    current = await opening_of(live_gateway, await mint_ticket(live_gateway, redis_url), latest)
    assert current[0].event == "window"
    seen = fresh[1].json()["fetched_at"]  # nothing replayed: only refreshes made since, if any came by
    assert all(e.json()["fetched_at"] > seen for e in current[1:] if e.event == "frame" and e.id)


async def test_connections_are_capped_per_address_and_a_session_is_open_once(
    settings: Settings, redis_url: str
) -> None:
    capped = live_settings(settings, connections_per_address=1)
    with running_gateway(capped, registry=fast_registry()) as gateway:
        first, second = await mint_ticket(gateway, redis_url), await mint_ticket(gateway, redis_url)
        async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as http:
            async with http.stream("GET", f"{LIVE}/events?ticket={first}") as held:
                assert held.status_code == 200
                again = await http.get(f"{LIVE}/events?ticket={first}")
                assert again.status_code == 409 and again.json()["error"] == "session_in_use"
                other = await http.get(f"{LIVE}/events?ticket={second}")
                assert other.status_code == 429 and other.json()["error"] == "too_many_live_connections"
            deadline = time.monotonic() + 5  # closed: its slot is free again
            while True:
                async with http.stream("GET", f"{LIVE}/events?ticket={second}") as answer:
                    if answer.status_code == 200:
                        break
                    assert answer.status_code == 429 and time.monotonic() < deadline
                await asyncio.sleep(0.1)


async def test_with_the_scheduler_off_a_feed_is_polled_while_watched_or_kept_alive(
    settings: Settings, redis_url: str
) -> None:
    """No scheduler: the live feeds poll what someone watches (a subscriber here, or the operator's keep-alive),
    through the same cache, and nothing else."""
    quiet = with_settings(live_settings(settings), scheduler=False)
    with running_gateway(quiet, registry=fast_registry()) as gateway:
        feeds = gateway.app.state.live
        assert feeds.poller is not None and feeds.poller.tasks == {}
        ticket = await mint_ticket(gateway, redis_url)
        fetched: list[str] = []
        async with (
            httpx.AsyncClient(base_url=gateway.url, timeout=10) as http,
            http.stream("GET", f"{LIVE}/events?ticket={ticket}") as answer,
        ):
            assert answer.status_code == 200
            async with asyncio.timeout(6 * FAST):
                async for event in events(answer):
                    if event.event == "frame" and event.id:
                        fetched.append(event.json()["fetched_at"])
                    if len(fetched) == 3:
                        break
            assert set(feeds.poller.tasks) == {"iss.position"}
        assert len(set(fetched)) == 3  # the one at connect, then the poll loop's refreshes
        deadline = time.monotonic() + 5
        while feeds.poller.tasks:  # nobody watches: no more polling
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)
        headers = {"authorization": "Bearer " + mint(ADMIN_SECRET, "worldgate-admin", "ops@test", 600)}
        async with httpx.AsyncClient(base_url=gateway.url, headers=headers) as admin:
            assert (await admin.post(f"/admin/api/live/{ISS}/start")).status_code == 200
            await asyncio.sleep(0.3)
            assert set(feeds.poller.tasks) == {"iss.position"}
            assert (await admin.post(f"/admin/api/live/{ISS}/stop")).status_code == 200
            await asyncio.sleep(0.3)
            assert feeds.poller.tasks == {}


async def test_a_thousand_subscribers_get_every_frame_and_two_gateways_make_one_upstream_call_per_refresh(
    settings: Settings, replay: ReplayServer, redis_url: str
) -> None:
    """Two gateways (one cache, one Redis, each its scheduler: two replicas), 1,000 SSE subscribers on one and 50 on
    the other, opened with tickets. Every subscriber gets every frame, and the upstream is called once per refresh
    for all of them: as many calls as frames, at the scheduler's cadence, not per subscriber or per replica."""
    replay.reset()
    shared = live_settings(settings)
    redis = aioredis.from_url(redis_url)
    sessions = LiveSessions(redis, prefix=shared.cache_prefix, ticket_ttl_s=600)
    try:
        with (
            running_gateway(shared, registry=fast_registry()) as one,
            running_gateway(shared, registry=fast_registry()) as two,
        ):
            tickets = []
            for n in range(1050):  # sessions as the ticket route sells them
                session = Session(
                    new_session_id(),
                    f"t{n}-{secrets.token_hex(8)}",
                    ISS,
                    "0xload",
                    "exact",
                    "eip155:84532",
                    "",
                    600.0,
                    1,
                )
                await sessions.create(session)
                tickets.append(session.ticket)
            streams = [SseReader(one if n < 1000 else two, ticket) for n, ticket in enumerate(tickets)]
            for batch in range(0, len(streams), 50):
                await asyncio.gather(*(s.open() for s in streams[batch : batch + 50]))
            assert all(s.status == 200 for s in streams), {s.status for s in streams}
            readers = [asyncio.create_task(s.read()) for s in streams]
            await asyncio.sleep(1.0)
            started, calls_before = time.time(), upstream_calls(one, two)
            await asyncio.sleep(4 * FAST)
            ended, calls = time.time(), upstream_calls(one, two) - calls_before
            await asyncio.sleep(1.0)  # what was fetched before `ended` reaches everyone
            for stream in streams:
                stream.close()
            await asyncio.gather(*readers, return_exceptions=True)
            deadline = time.monotonic() + 10
            while one.app.state.live.hub.count(ISS) or two.app.state.live.hub.count(ISS):
                assert time.monotonic() < deadline, "the gateways did not see their subscribers go"
                await asyncio.sleep(0.1)
    finally:
        await redis.aclose()
    published = set().union(*(s.fetched for s in streams))
    window = {f for f in published if started <= unix(f) <= ended}
    for stream in streams:
        assert window <= stream.fetched, f"a subscriber missed {sorted(window - stream.fetched)}"
    assert len(window) >= 3
    assert abs(calls - len(window)) <= 1, (calls, sorted(window))  # one upstream call per frame, fleet-wide
    assert calls <= (ended - started) / (0.8 * 0.9 * FAST) + 1  # at the scheduler's cadence


def upstream_calls(*gateways: Gateway) -> int:
    """The ISS upstream calls these gateways made (the replay server also serves the other tests' gateways)."""
    return sum(g.app.state.services.tier.cache.upstream_calls.get("iss.position", 0) for g in gateways)


class SseReader:
    """A bare SSE client on a socket (a thousand of them must be light): the fetch times of its data frames."""

    def __init__(self, gateway: Gateway, ticket: str) -> None:
        self.port = gateway.server.port
        self.path = f"{LIVE}/events?ticket={ticket}"
        self.status = 0
        self.fetched: set[str] = set()
        self._buffer = b""

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.writer.write(f"GET {self.path} HTTP/1.1\r\nhost: 127.0.0.1\r\naccept: text/event-stream\r\n\r\n".encode())
        head = await self.reader.readuntil(b"\r\n\r\n")
        self.status = int(head.split(b" ", 2)[1])

    async def read(self) -> None:
        with contextlib.suppress(Exception):
            while chunk := await self.reader.read(65536):
                self._buffer += chunk
                self.fetched |= {m.decode() for m in re.findall(rb'"fetched_at":"([^"]+)"', self._buffer)}
                self._buffer = self._buffer[-2048:]  # a frame split across reads is found whole next time

    def close(self) -> None:
        self.writer.close()
