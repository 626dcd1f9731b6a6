"""A seeded ledger of 1,200 payments for tests/test_reports.py, through the real claims path (claim, advance,
record_tx_hash, settle): two networks, three stream keys (one a composite route without a stream), 40 payers,
every outcome, reversals and reconciliation flags; only the timestamps are then spread over ten days with an
UPDATE of created_at / settled_at, which the payments guard allows (it refuses identity and state changes).
The seed keeps its own records, from which the tests sum every expected number by hand."""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import asyncpg

import ledger
from ledger import audit, claims
from ledger.sql import queries

from .ledger_helpers import record

EVM = "eip155:84532"
SOLANA = "solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1"
NETWORKS = {
    EVM: (
        "0x036CbD53842c5426634e7929541eC2318f3dCF7e",
        "0x5Aa3B1f2c4D5e6F708192A3b4C5d6E7f80912345",
        "v2-eip155-exact",
    ),
    SOLANA: (
        "4zMMC9srt5Ri5X14GAgXhaHii3GnPAEERYPJgZJDncDU",
        "GqWx3kR1vXmE2zPq8tBn5yHc7dLfJ4sA9uNb6eKo3iTw",
        "v2-solana-exact",
    ),
}
# (stream, resource, route): the third is a composite route, reported under its resource
STREAMS = [
    ("static.capitals", "/v1/streams/static.capitals", "GET /v1/streams/{id}"),
    ("static.volcanoes", "/v1/streams/static.volcanoes", "GET /v1/streams/{id}"),
    (None, "/v1/world", "GET /v1/world"),
]
BASE58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
OUTCOMES = {  # final state: weight
    "settled": 55,
    "settling": 8,
    "failed": 7,
    "released": 10,
    "expired": 6,
    "claimed": 4,
    "verified": 4,
    "served": 6,
}
PATHS: dict[str, list[tuple[str, str]]] = {
    "claimed": [],
    "verified": [("claimed", "verified")],
    "served": [("claimed", "verified"), ("verified", "served")],
    "settling": [("claimed", "verified"), ("verified", "served"), ("served", "settling")],
    "settled": [("claimed", "verified"), ("verified", "served"), ("served", "settling")],
    "failed": [("claimed", "verified"), ("verified", "served"), ("served", "settling"), ("settling", "failed")],
    "released": [("claimed", "verified"), ("verified", "released")],
    "expired": [("claimed", "verified"), ("verified", "served"), ("served", "expired")],
}
BUCKETS = {
    "settled": ("settled",),
    "pending": ("settling",),
    "failed": ("failed",),
    "released": ("released", "expired"),
    "in_flight": ("claimed", "verified", "served"),
}
PAYMENTS = 1200
BASE = datetime(2025, 6, 2, tzinfo=UTC)  # a Monday; the seed spans ten days, so two ISO weeks and a bit
EVER = (datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC))
GROUP_COLUMNS = ["settled", "pending", "failed", "released", "in_flight", "revenue_atomic", "gas"]


@dataclass
class Paid:
    """One seeded payment, as the test knows it (not as the database says)."""

    network: str
    asset: str
    payer: str
    stream_key: str
    route: str
    amount: int
    state: str
    created_at: datetime
    settled_at: datetime | None = None
    gas: int | None = None
    refunded: int = 0  # revenue taken back by reversal entries
    reversals: int = 0
    flags: set[str] = field(default_factory=set)  # open flag kinds
    payment_id: int = 0

    @property
    def when(self) -> datetime:
        return self.settled_at or self.created_at

    @property
    def revenue(self) -> int:
        return self.amount - self.refunded if self.state == "settled" else 0

    def key(self, group: str) -> str:
        when = self.when
        year, week, _ = when.isocalendar()
        return {
            "hour": when.strftime("%Y-%m-%dT%H:00Z"),
            "day": when.strftime("%Y-%m-%d"),
            "week": f"{year}-W{week:02d}",
            "stream": self.stream_key,
            "route": self.route,
            "network": self.network,
            "asset": f"{self.network}/{self.asset}",
            "payer": self.payer,
        }[group]

    def matches(self, since: datetime, until: datetime, **filters: str | None) -> bool:
        mine = {"network": self.network, "stream": self.stream_key, "payer": self.payer, "state": self.state}
        return since <= self.when < until and all(v is None or mine[k] == v for k, v in filters.items())


@dataclass
class Seed:
    pool: asyncpg.Pool
    payments: list[Paid]
    seconds: dict[str, float]

    def select(self, since: datetime = EVER[0], until: datetime = EVER[1], **filters: str | None) -> list[Paid]:
        return [p for p in self.payments if p.matches(since, until, **filters)]


def _payers(rng: random.Random) -> dict[str, list[str]]:
    evm = [f"0x{rng.getrandbits(160):040x}" for _ in range(20)]
    svm = ["".join(rng.choice(BASE58) for _ in range(44)) for _ in range(20)]
    return {EVM: evm, SOLANA: svm}


def _plan(rng: random.Random) -> list[Paid]:
    payers = _payers(rng)
    states = rng.choices(list(OUTCOMES), weights=list(OUTCOMES.values()), k=PAYMENTS)
    plan = []
    for i, state in enumerate(states):
        network = EVM if i % 2 == 0 else SOLANA
        stream, resource, route = STREAMS[rng.randrange(3)]
        created = BASE + timedelta(seconds=rng.randrange(10 * 24 * 3600))
        paid = Paid(
            network=network,
            asset=NETWORKS[network][0],
            payer=rng.choice(payers[network]),
            stream_key=stream or resource,
            route=route,
            amount=rng.choice([1000, 2500, 10_000, 100_000]) + rng.randrange(1_000_000),
            state=state,
            created_at=created,
        )
        if state == "settled":
            paid.settled_at = created + timedelta(seconds=rng.randrange(3 * 3600))  # may cross an hour or a day
            if rng.random() < 0.9:  # else a remote facilitator paid the gas and nobody booked it
                paid.gas = rng.randrange(10**12, 10**14) if network == EVM else 5000 * rng.randrange(1, 4)
        plan.append(paid)
    plan[7].amount = 2**70 + 12345  # far beyond 64 bits, to stay exact end to end
    plan[7].state, plan[7].settled_at, plan[7].gas = "settled", plan[7].created_at, 21000
    return plan


async def _create(pool: asyncpg.Pool, paid: Paid, index: int, rng: random.Random) -> int:
    stream = None if paid.stream_key.startswith("/") else paid.stream_key
    resource = paid.stream_key if stream is None else f"/v1/streams/{stream}"
    rec = record(
        f"seed:{paid.network}:{index}",
        scheme_id=NETWORKS[paid.network][2],
        network=paid.network,
        asset=paid.asset,
        payer=paid.payer,
        pay_to=NETWORKS[paid.network][1],
        amount_atomic=paid.amount,
        route=paid.route,
        resource=resource,
        stream=stream,
    )
    payment_id = await claims.claim(pool, rec)
    assert payment_id is not None
    if index % 37 == 0:  # released once and claimed again: the chain has a released -> claimed step
        assert await claims.advance(pool, payment_id, "claimed", "released", reason="simulation failed")
        assert await claims.claim(pool, rec) == payment_id
    for before, after in PATHS[paid.state]:
        assert await claims.advance(pool, payment_id, before, after)
        if after == "settling":
            await claims.record_tx_hash(pool, payment_id, f"0x{rng.getrandbits(256):064x}")
    if paid.state == "settled":
        postings = ledger.settlement_postings(
            network=paid.network,
            asset=paid.asset,
            pay_to=NETWORKS[paid.network][1],
            revenue_account=stream or paid.route,
            amount_atomic=paid.amount,
            relayer="0xrelayer",
            gas_cost_atomic=paid.gas,
        )
        await claims.settle(pool, payment_id, f"0x{rng.getrandbits(256):064x}", postings, gas_cost_atomic=paid.gas)
    return payment_id


async def _reverse(pool: asyncpg.Pool, paid: Paid, amount: int) -> None:
    """A refund as the journal books it: a reversal entry debiting revenue back, by the named queries."""
    token = ledger.journal.asset_id(paid.network, paid.asset)
    async with pool.acquire() as connection, connection.transaction():
        settlement = await connection.fetchval(
            "SELECT id FROM journal_entries WHERE payment_id = $1 AND kind = 'settlement'", paid.payment_id
        )
        revenue_account = await connection.fetchval(
            "SELECT account FROM journal_postings WHERE entry_id = $1 AND account LIKE 'revenue:%'", settlement
        )
        onchain = f"onchain:{paid.network}:{NETWORKS[paid.network][1].lower()}"
        entry = await connection.fetchval(
            queries["insert_journal_entry"], paid.payment_id, "reversal", settlement, "refund"
        )
        await connection.execute(
            queries["insert_journal_postings"], entry, [revenue_account, onchain], [token, token], [amount, -amount]
        )
    paid.refunded += amount
    paid.reversals += 1


async def seed_ledger(pool: asyncpg.Pool) -> Seed:
    rng = random.Random(20251122)
    plan = _plan(rng)
    seconds: dict[str, float] = {}

    started = time.perf_counter()
    gate = asyncio.Semaphore(16)

    async def one(index: int, paid: Paid) -> None:
        async with gate:
            paid.payment_id = await _create(pool, paid, index, random.Random(index))

    await asyncio.gather(*(one(i, p) for i, p in enumerate(plan)))
    seconds["claims"] = time.perf_counter() - started

    started = time.perf_counter()
    # Spread the timestamps (columns the guard lets change; it refreshes updated_at itself).
    await pool.execute(
        "UPDATE payments SET created_at = t.created_at, settled_at = t.settled_at"
        " FROM unnest($1::bigint[], $2::timestamptz[], $3::timestamptz[]) AS t (id, created_at, settled_at)"
        " WHERE payments.id = t.id",
        [p.payment_id for p in plan],
        [p.created_at for p in plan],
        [p.settled_at for p in plan],
    )
    seconds["timestamps"] = time.perf_counter() - started

    started = time.perf_counter()
    settled = [p for p in plan if p.state == "settled" and p.amount < 2**64]
    for paid in settled[:12]:  # full refunds
        await _reverse(pool, paid, paid.amount)
    for paid in settled[12:20]:  # partial refunds, one of them in two steps
        await _reverse(pool, paid, paid.amount // 3)
    await _reverse(pool, settled[19], 100)
    kinds = audit.FLAG_KINDS
    for i, paid in enumerate(rng.sample(plan, 60)):
        kind = kinds[i % len(kinds)]
        assert await audit.flag(pool, paid.payment_id, kind, f"seeded finding {i}")
        paid.flags.add(kind)
        if i % 5 == 0:  # seen and then resolved: no longer open
            assert await audit.resolve_flags(pool, paid.payment_id, [kind]) == 1
            paid.flags.discard(kind)
    seconds["refunds_and_flags"] = time.perf_counter() - started
    return Seed(pool, plan, seconds)
