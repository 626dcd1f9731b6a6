"""Postgres and Redis going away under a running gateway, for real: each is reached through a TCP proxy
that is cut (refusing new connections and closing the open ones), and Postgres' backends are also
terminated with `pg_terminate_backend`, as a failover does.

tests/test_fail_closed.py shows a paid request refused with 503 while Postgres is down and the recovery
after; here the database goes away at each step of a sale that is already under way (during
verification, during the broadcast, between the broadcast and the booking), all at once under live
connections, and under the routes that need no ledger. Redis goes away mid-run: exactly-once holds
through Postgres alone and the cache falls back to process memory.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import httpx
import pytest
from solders.keypair import Keypair

from app.runtime.settings import Settings
from payments.devnet.evm import EvmDevnet
from payments.devnet.solana_process import SolanaDevnetProcess

from ..chain import assert_one_served, b64, unb64
from ..conftest import Gateway, running_gateway
from ..ledger_helpers import FreshDatabase
from ..services import TcpProxy
from .proxy import FaultProxy
from .rig import (  # noqa: F401 - fixtures
    PATH,
    Sale,
    assert_safe,
    evm_payer,
    fault_db,
    fee_payer,
    gateway_settings,
    has_data,
    ledger_state,
    reconcile,
    relayer_key,
    row,
    settle_up,
    sign,
)

APPLICATION = "wg_faulted_gateway"  # the gateway's Postgres sessions, told apart from the test's own
QUAKES = "/v1/streams/quakes.usgs"  # a stream fetched from the (replayed) upstream, so it goes through the cache


async def until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "the gateway never got there"
        await asyncio.sleep(0.01)


def proxied_database(url: str) -> tuple[TcpProxy, str]:
    """A TCP proxy to the database `url` names, and the URL that reaches it through the proxy."""
    parts = urlsplit(url)
    socket_dir = dict(parse_qsl(parts.query)).get("host")  # embedded Postgres listens on a unix socket only
    proxy = TcpProxy(socket_dir or parts.hostname or "127.0.0.1", parts.port or 5432).start()
    netloc = f"{parts.username or 'postgres'}@127.0.0.1:{proxy.port}"
    return proxy, urlunsplit(parts._replace(netloc=netloc, query=f"application_name={APPLICATION}"))


@pytest.fixture(scope="module")
def evm_proxy(devnet: EvmDevnet) -> Iterator[FaultProxy]:
    proxy = FaultProxy(devnet.rpc_url).start()
    yield proxy
    proxy.stop()


@pytest.fixture(scope="module")
def pg_proxy(fault_db: FreshDatabase) -> Iterator[tuple[TcpProxy, str]]:  # noqa: F811
    proxy, url = proxied_database(fault_db.url)
    yield proxy, url
    proxy.stop()


@pytest.fixture(scope="module")
def pg_gateway(
    settings: Settings,
    pg_proxy: tuple[TcpProxy, str],
    relayer_key: str,  # noqa: F811
    fee_payer: Keypair,  # noqa: F811
    evm_proxy: FaultProxy,
) -> Iterator[Gateway]:
    faulted = gateway_settings(
        settings, pg_proxy[1], relayer_key=relayer_key, fee_payer=fee_payer, evm_rpc=evm_proxy.url
    )
    with running_gateway(faulted) as gateway:
        yield gateway


class Shop:
    """A gateway whose database (and chain RPC) the test can take away mid-sale."""

    def __init__(
        self,
        gateway: Gateway,
        pg: TcpProxy,
        rpc: FaultProxy,
        devnet: EvmDevnet,
        solana: SolanaDevnetProcess,
        db: FreshDatabase,
        settings: Settings,
    ) -> None:
        self.gateway, self.pg, self.rpc, self.devnet, self.state = gateway, pg, rpc, devnet, solana.state
        self.db, self.settings = db, settings

    async def cut_during(self, method: str, where: str = "rpc") -> Sale:
        """One paid request; `method` is slowed by half a second on the chain's proxy, and the database is cut
        as soon as the gateway makes that call. The database comes back after the answer."""
        offer = await self.gateway.offer(PATH)
        payer = evm_payer(self.devnet, offer)
        header = sign(payer, offer, self.devnet, self.state)
        seen = self.rpc.seen[method]
        self.rpc.fault(method, "pass", delay_s=0.5)  # under the RPC timeout (1 s)
        try:
            request = asyncio.create_task(self.gateway.get(PATH, headers={"PAYMENT-SIGNATURE": header}))
            await until(lambda: self.rpc.seen[method] > seen)
            self.pg.down()
            answer = await request
        finally:
            self.rpc.clear(method)
            self.pg.up()
        return Sale(payer, [answer], before_reconcile=await ledger_state(self.db.pool, payer), header=header)

    async def settle_up(self, *sales: Sale) -> None:
        await settle_up(self.db.pool, self.settings, self.devnet, self.state, sales)


@pytest.fixture
def shop(
    pg_gateway: Gateway,
    pg_proxy: tuple[TcpProxy, str],
    evm_proxy: FaultProxy,
    devnet: EvmDevnet,
    solana: SolanaDevnetProcess,
    fault_db: FreshDatabase,  # noqa: F811
    settings: Settings,
) -> Shop:
    return Shop(pg_gateway, pg_proxy[0], evm_proxy, devnet, solana, fault_db, settings)


# ---- Postgres ----


async def test_database_lost_during_verification(shop: Shop) -> None:
    """Claimed, then the database goes while the payment is being verified: 503, nothing sent; the claim
    left open is expired by reconcile; the payer is not charged."""
    sale = await shop.cut_during("eth_call")
    answer = sale.answers[0]
    assert answer.status_code == 503 and answer.json()["reason"] == "ledger_unavailable", answer.text
    assert sale.before_reconcile == ["claimed"]  # the release could not be written either
    await shop.settle_up(sale)
    assert sale.debits == 0 and sale.after_reconcile == ["expired"]
    assert_safe(sale)
    row("Postgres", "Postgres cut while the payment is verified (after the claim)",
        "1 paid GET (sync); database back; reconcile", [sale])  # fmt: skip


async def test_database_lost_during_the_broadcast(shop: Shop) -> None:
    """The database goes while the relayer's transaction is on its way (its hash written ahead, the
    broadcast lock held): the chain takes it, so the sale must end delivered or pending, never in a
    'nothing was sent' answer; reconcile books the charge."""
    sale = await shop.cut_during("eth_sendRawTransaction")
    answer = sale.answers[0]
    await shop.settle_up(sale)
    assert sale.debits == 1
    assert answer.status_code in (200, 402), answer.text
    if answer.status_code == 402:
        assert answer.json()["error"] == "settlement_pending"  # not "you were not charged": it was
    assert sale.after_reconcile == ["settled"]
    notes: tuple[str, ...] = ()
    if not has_data(answer):  # charged while the answer said pending: the same payment again gets the data
        again = await shop.gateway.get(PATH, headers={"PAYMENT-SIGNATURE": sale.header})
        sale.answers.append(again)
        assert again.status_code == 200 and has_data(again), again.text
        assert sale.payer.debited(shop.devnet, shop.state) == 1
        notes = ("the 402 said settlement_pending; reconcile booked the sale; the retry got the data under it",)
    assert_safe(sale)
    row("Postgres", "Postgres cut during the broadcast (hash written ahead, relayer lock held)",
        "1 paid GET (sync); database back; reconcile", [sale], notes=notes)  # fmt: skip


async def test_database_lost_between_broadcast_and_booking(shop: Shop) -> None:
    """Settled on chain while the database is gone: the payer gets the data (charged, so delivered), the
    row stays `settling` with its hash written ahead, and reconcile books it: nothing lost."""
    sale = await shop.cut_during("eth_getTransactionReceipt")
    answer = sale.answers[0]
    assert answer.status_code == 200 and has_data(answer), answer.text
    assert sale.before_reconcile == ["settling"]
    await shop.settle_up(sale)
    assert sale.debits == 1 and sale.after_reconcile == ["settled"]
    journal = await shop.db.pool.fetchval(
        "SELECT count(*) FROM journal_entries e JOIN payments p ON p.id = e.payment_id WHERE p.payer = $1",
        sale.payer.address,
    )
    assert journal == 1
    assert_safe(sale)
    row("Postgres", "Postgres cut after the broadcast, before the booking",
        "1 paid GET (sync); database back; reconcile", [sale])  # fmt: skip


async def test_every_connection_terminated(shop: Shop) -> None:
    """A failover: every gateway session is terminated server-side (pg_terminate_backend). Requests right
    after get a 503 (nothing charged) or are served and settled; none is a 500."""
    for _ in range(3):  # the pool lost its connections in the cuts before: have it open some again
        if (await shop.gateway.get("/v1/health")).status_code == 200:
            break
    killed = await shop.db.pool.fetchval(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1", APPLICATION
    )
    assert killed >= 1
    sales = []
    for _ in range(4):
        offer = await shop.gateway.offer(PATH)
        payer = evm_payer(shop.devnet, offer)
        header = sign(payer, offer, shop.devnet, shop.state)
        answer = await shop.gateway.get(PATH, headers={"PAYMENT-SIGNATURE": header})
        sales.append(Sale(payer, [answer], before_reconcile=await ledger_state(shop.db.pool, payer), header=header))
    await shop.settle_up(*sales)
    for sale in sales:
        assert sale.answers[0].status_code in (200, 503), sale.answers[0].text
        assert_safe(sale)
    assert has_data(sales[-1].answers[0])  # the pool has reconnected by then
    row("Postgres", f"every gateway session terminated (pg_terminate_backend: {killed})",
        "4 paid GETs right after, one at a time; reconcile", sales)  # fmt: skip


async def test_routes_without_the_ledger_keep_serving(shop: Shop) -> None:
    """Database down: free routes answer; a paid request with a payment-identifier is a 503, uncharged."""
    offer = await shop.gateway.offer(PATH)
    payer = evm_payer(shop.devnet, offer)
    document = unb64(sign(payer, offer, shop.devnet, shop.state))
    document["extensions"] = {"payment-identifier": {"info": {"id": "faults-postgres-down-0001"}}}
    with_id = b64(document)
    shop.pg.down()
    try:
        free = {path: await shop.gateway.get(path) for path in ("/v1/streams/search?q=quake", "/v1/attribution",
                                                                 "/.well-known/x402", "/openapi.json")}  # fmt: skip
        paid = await shop.gateway.get(PATH, headers={"PAYMENT-SIGNATURE": with_id})
    finally:
        shop.pg.up()
    assert {path: a.status_code for path, a in free.items()} == dict.fromkeys(free, 200)
    assert paid.status_code == 503 and paid.json()["reason"] == "ledger_unavailable"
    sale = Sale(payer, [paid], header=with_id)
    await shop.settle_up(sale)
    assert sale.debits == 0 and sale.after_reconcile == []  # never even claimed
    row("Postgres", "Postgres unreachable: free routes, and a paid request with a payment-identifier",
        f"{len(free)} free GETs ({', '.join(free)}), 1 paid GET", [sale],
        outcome=f"free routes 200 ({len(free)}/{len(free)}); paid 503 ledger_unavailable, never claimed")  # fmt: skip


# ---- Redis ----


@pytest.fixture(scope="module")
def redis_cut(
    settings: Settings,
    redis_url: str,
    relayer_key: str,  # noqa: F811
    fee_payer: Keypair,  # noqa: F811
    fault_db: FreshDatabase,  # noqa: F811
) -> Iterator[tuple[Gateway, TcpProxy]]:
    parts = urlsplit(redis_url)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 6379).start()
    proxied = urlunsplit(parts._replace(netloc=f"127.0.0.1:{proxy.port}"))
    faulted = gateway_settings(
        settings, fault_db.url, relayer_key=relayer_key, fee_payer=fee_payer, redis_url=proxied,
        cache_prefix=f"{settings.cache_prefix}redis-cut:",
    )  # fmt: skip
    try:
        with running_gateway(faulted) as gateway:
            yield gateway, proxy
    finally:
        proxy.stop()


async def test_redis_lost_mid_run(
    redis_cut: tuple[Gateway, TcpProxy],
    devnet: EvmDevnet,
    solana: SolanaDevnetProcess,
    fault_db: FreshDatabase,  # noqa: F811
    settings: Settings,
) -> None:
    """Redis goes away under a running gateway: twenty concurrent requests carrying one payment are served
    once and settled once (the claim is in Postgres); the cache falls back to process memory; no 500."""
    gateway, proxy = redis_cut
    offer = await gateway.offer(PATH)
    warm = evm_payer(devnet, offer)
    assert has_data(await gateway.get(PATH, headers={"PAYMENT-SIGNATURE": sign(warm, offer, devnet, solana.state)}))
    proxy.down()
    try:
        payer = evm_payer(devnet, offer)
        header = sign(payer, offer, devnet, solana.state)
        async with httpx.AsyncClient(base_url=gateway.url, timeout=30, limits=httpx.Limits(max_connections=20)) as c:
            answers = await asyncio.gather(*(c.get(PATH, headers={"PAYMENT-SIGNATURE": header}) for _ in range(20)))
        # a stream read through the cache tier: fetched once, then served from process memory
        quakes_offer = await gateway.offer(QUAKES)
        reads, readers = [], [evm_payer(devnet, quakes_offer) for _ in range(2)]
        for reader in readers:
            signed = sign(reader, quakes_offer, devnet, solana.state)
            reads.append(await gateway.get(QUAKES, headers={"PAYMENT-SIGNATURE": signed}))
        catalog = await gateway.get("/v1/streams")
        health = await gateway.get("/v1/health")
    finally:
        proxy.up()
    assert_one_served(answers)
    assert [r.status_code for r in reads] == [200, 200], [r.text for r in reads]
    assert [r.headers["x-cache"] for r in reads] == ["MISS", "HIT"]  # Redis gone: memory keeps the value
    assert catalog.status_code == 200
    assert health.status_code == 200 and health.json()["checks"]["redis"].startswith("error")
    sale = Sale(payer, list(answers), header=header, before_reconcile=await ledger_state(fault_db.pool, payer))
    report = await reconcile(fault_db.pool, settings)
    assert report.errors == []
    sale.after_reconcile = await ledger_state(fault_db.pool, payer)
    sale.debits = payer.debited(devnet, solana.state)
    assert sale.debits == 1 and sale.after_reconcile == ["settled"]
    assert sum(has_data(a) for a in answers) == 1
    row("Redis", "Redis cut mid-run (TCP proxy closed)", "20 concurrent paid GETs carrying one payment", [sale],
        notes=(f"/v1/streams {catalog.status_code}; /v1/health {health.status_code} "
               f"(redis: {health.json()['checks']['redis']})",))  # fmt: skip
    cached = []
    for reader, read in zip(readers, reads, strict=True):
        states = await ledger_state(fault_db.pool, reader)  # read after the reconcile run above
        cached.append(Sale(reader, [read], before_reconcile=states, after_reconcile=states))
        cached[-1].debits = reader.debited(devnet, solana.state)
        assert_safe(cached[-1])
    row("Redis", "Redis cut mid-run: a stream read through the cache tier", f"2 paid GETs of {QUAKES}", cached,
        notes=(f"X-Cache {reads[0].headers['x-cache']} then {reads[1].headers['x-cache']}: fetched once upstream, "
               "then served from process memory",))  # fmt: skip
