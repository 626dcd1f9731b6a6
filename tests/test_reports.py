"""Reports and the summary over a seeded ledger of 1,200 payments, against totals computed by hand in Python.

The seed goes through the real claims path (claim, advance, record_tx_hash, settle), two networks,
three stream keys (one a composite route without a stream), 40 payers, every outcome, reversals
and reconciliation flags; only the timestamps are then spread over ten days with an UPDATE of
created_at / settled_at, which the payments guard allows (it refuses identity and state changes).
Nothing expected is read back from SQL: every number is summed from the seed's own records.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import random
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

import ledger
from ledger import LedgerError, audit, claims, reports
from ledger.sql import queries

from .ledger_helpers import fresh_database, record
from .services import Database

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


async def _seed(pool: asyncpg.Pool) -> Seed:
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


@pytest.fixture(scope="module")
async def seed(database: Database) -> AsyncIterator[Seed]:
    async with fresh_database(database) as fresh:
        started = time.perf_counter()
        seeded = await _seed(fresh.pool)
        seeded.seconds["total"] = time.perf_counter() - started
        print(
            f"\nseeded {len(seeded.payments)} payments: "
            + ", ".join(f"{k} {v:.2f}s" for k, v in seeded.seconds.items())
        )
        yield seeded


# ---------------------------------------------------------------------------------------------
# expected values, by hand
# ---------------------------------------------------------------------------------------------


def expected_rows(payments: list[Paid], group: str) -> dict[str, dict[str, int]]:
    rows: dict[str, dict[str, Any]] = defaultdict(lambda: {**dict.fromkeys(GROUP_COLUMNS, 0), "gas": {}})
    for p in payments:
        row = rows[p.key(group)]
        for bucket, states in BUCKETS.items():
            row[bucket] += p.state in states
        row["revenue_atomic"] += p.revenue
        row["gas"][p.network] = row["gas"].get(p.network, 0) + (p.gas or 0)  # per network: wei and lamports apart
    return dict(rows)


def usdc_text(atomic: int) -> str:
    assert atomic >= 0
    return f"{atomic // 10**6}.{atomic % 10**6:06d}"


def as_dicts(rows: list[reports.ReportRow]) -> dict[str, dict[str, Any]]:
    keys = [r.key for r in rows]
    assert len(keys) == len(set(keys)), "a key appears twice"
    return {r.key: {c: getattr(r, c) for c in GROUP_COLUMNS} for r in rows}


def expected_summary(payments: list[Paid]) -> dict[str, Any]:
    def bucket(states: tuple[str, ...]) -> tuple[int, int]:
        chosen = [p for p in payments if p.state in states]
        return len(chosen), sum(p.amount for p in chosen)

    refunded = [p for p in payments if p.reversals]
    gas: dict[str, int] = defaultdict(int)
    for p in payments:
        if p.state == "settled":
            gas[p.network] += p.gas or 0
    flags = Counter(kind for p in payments for kind in p.flags)
    return {
        "settled": sum(p.state == "settled" for p in payments),
        "settled_atomic": sum(p.amount for p in payments if p.state == "settled"),
        "booked": sum(p.state == "settled" for p in payments),  # the seed books revenue only when settled
        "revenue_atomic": sum(p.revenue for p in payments),
        **dict(zip(("pending", "pending_atomic"), bucket(("settling",)), strict=True)),
        **dict(zip(("failed", "failed_atomic"), bucket(("failed",)), strict=True)),
        **dict(zip(("released", "released_atomic"), bucket(("released", "expired")), strict=True)),
        **dict(zip(("in_flight", "in_flight_atomic"), bucket(("claimed", "verified", "served")), strict=True)),
        "refunded": len(refunded),
        "refunded_atomic": sum(p.refunded for p in refunded),
        **dict(zip(("exposure", "exposure_atomic"), bucket(("served", "settling")), strict=True)),
        "gas_by_network": dict(gas),
        "open_flags": dict(flags),
    }


def summary_fields(s: reports.Summary) -> dict[str, Any]:
    return {k: getattr(s, k) for k in expected_summary([])}


# ---------------------------------------------------------------------------------------------
# the tests
# ---------------------------------------------------------------------------------------------


async def test_the_seed_is_what_the_test_thinks_it_is(seed: Seed) -> None:
    """Guards the hand sums: the mix covers every outcome, both networks, 3 streams, 40 payers, many hours."""
    payments = seed.payments
    assert len(payments) >= 1000
    assert set(Counter(p.state for p in payments)) == set(OUTCOMES)
    assert {p.network for p in payments} == set(NETWORKS)
    assert len({p.stream_key for p in payments}) == 3
    assert len({p.payer for p in payments}) == 40
    assert len({p.key("day") for p in payments}) >= 10 and len({p.key("hour") for p in payments}) > 150
    assert len({p.key("week") for p in payments}) >= 2
    assert seed.seconds["total"] < 60, seed.seconds  # keep the seed fast
    states = dict(await seed.pool.fetch("SELECT state, count(*) FROM payments GROUP BY state"))
    assert states == Counter(p.state for p in payments)
    assert (await ledger.verify.verify(seed.pool)).ok  # the seed is a clean ledger


@pytest.mark.parametrize("group", list(reports.GROUPS))
async def test_every_grouping_equals_hand_sums_in_every_format(seed: Seed, group: str) -> None:
    expected = expected_rows(seed.payments, group)
    rows = await reports.report(seed.pool, group, *EVER)
    assert as_dicts(rows) == expected
    if group in ("hour", "day", "week"):
        assert [r.key for r in rows] == sorted(expected)
    counts = [c for c in GROUP_COLUMNS if c != "gas"]
    total: dict[str, Any] = {c: sum(row[c] for row in expected.values()) for c in counts}
    total["gas"] = {n: sum(row["gas"].get(n, 0) for row in expected.values()) for n in NETWORKS}
    assert total["revenue_atomic"] == sum(p.revenue for p in seed.payments)
    columns = {n: reports.gas_column(n) for n in NETWORKS}
    assert columns == {EVM: f"gas_wei:{EVM}", SOLANA: f"gas_lamports:{SOLANA}"}

    def gas_of(cells: dict[str, str]) -> dict[str, int]:
        return {n: int(cells[c]) for n, c in columns.items()}

    def nonzero(gas: dict[str, int], row_gas: dict[str, int]) -> dict[str, int]:
        return {n: v for n, v in gas.items() if v or n in row_gas}

    parsed = list(csv.DictReader(io.StringIO(reports.render(rows, "csv", group))))
    assert "gas_native" not in parsed[0] and "gas_cost_atomic" not in parsed[0]
    assert {
        r[group]: {**{c: int(r[c]) for c in counts}, "gas": nonzero(gas_of(r), expected[r[group]]["gas"])}
        for r in parsed
    } == expected
    assert all(r["revenue_usdc"] == usdc_text(int(r["revenue_atomic"])) for r in parsed)

    document = json.loads(reports.render(rows, "json", group))
    assert document["group_by"] == group
    assert {
        r["key"]: {**{c: r[c] for c in counts}, "gas": {n: g["amount_atomic"] for n, g in r["gas"].items()}}
        for r in document["rows"]
    } == expected
    assert {c: document["totals"][c] for c in counts} == {c: total[c] for c in counts}
    assert document["totals"]["gas"] == {
        EVM: {"amount_atomic": total["gas"][EVM], "unit": "wei"},
        SOLANA: {"amount_atomic": total["gas"][SOLANA], "unit": "lamports"},
    }
    assert document["totals"]["revenue_usdc"] == usdc_text(total["revenue_atomic"])

    lines = reports.render(rows, "table", group).splitlines()
    header = lines[0].split()
    assert header[0] == group and header[-2:] == [columns[EVM], columns[SOLANA]]
    assert len(lines) == len(expected) + 4  # header, rule, rows, rule, TOTAL
    body = {}
    for line in lines[2:-2]:  # a key may hold spaces (routes): the nine numbers are the last columns
        key, *cells = line.rsplit(maxsplit=9)
        body[key.strip()] = cells
    assert {k: [int(v) for i, v in enumerate(c) if i != 5] for k, c in body.items()} == {
        k: [v[c] for c in counts] + [v["gas"].get(EVM, 0), v["gas"].get(SOLANA, 0)] for k, v in expected.items()
    }
    label, *cells = lines[-1].split()
    assert label == "TOTAL"
    # every number in the TOTAL row is in one unit: no wei + lamports sum appears anywhere
    assert cells == [
        str(total["settled"]),
        str(total["pending"]),
        str(total["failed"]),
        str(total["released"]),
        str(total["in_flight"]),
        usdc_text(total["revenue_atomic"]),
        str(total["revenue_atomic"]),
        str(total["gas"][EVM]),
        str(total["gas"][SOLANA]),
    ]
    assert str(total["gas"][EVM] + total["gas"][SOLANA]) not in cells


def _filter_cases(seed: Seed) -> list[dict[str, str]]:
    payers = sorted({p.payer for p in seed.payments})
    cases: list[dict[str, str]] = [{"network": n} for n in NETWORKS]
    cases += [{"stream": s} for s in sorted({p.stream_key for p in seed.payments})]
    cases += [{"payer": payer} for payer in payers[::8]]  # 5 payers, both networks
    cases += [{"state": s} for s in OUTCOMES]
    cases += [
        {"network": SOLANA, "state": "settled"},
        {"stream": "/v1/world", "network": EVM},
        {"payer": payers[3], "stream": "static.capitals", "state": "settled"},
        {"network": EVM, "stream": "static.volcanoes", "payer": payers[0], "state": "served"},
    ]
    return cases


async def test_each_filter_narrows_every_grouping_to_the_hand_sums(seed: Seed) -> None:
    cases = _filter_cases(seed)
    for filters in cases:
        chosen = seed.select(**filters)
        for group in reports.GROUPS:
            rows = await reports.report(seed.pool, group, *EVER, **filters)
            assert as_dicts(rows) == expected_rows(chosen, group), (filters, group)
    # a window inside the seed, with and without a filter
    since, until = BASE + timedelta(days=2, hours=5), BASE + timedelta(days=6, minutes=30)
    for filters in ({}, {"network": SOLANA}, {"state": "settled", "stream": "/v1/world"}):
        for group in ("hour", "payer", "stream"):
            rows = await reports.report(seed.pool, group, since, until, **filters)
            assert as_dicts(rows) == expected_rows(seed.select(since, until, **filters), group)


async def test_filters_are_values_not_sql(seed: Seed) -> None:
    for filters in (
        {"network": "eip155:1"},
        {"payer": "0xnobody"},
        {"stream": "static.capitals' OR '1'='1"},
        {"network": "x'); DROP TABLE payments; --"},
    ):
        assert await reports.report(seed.pool, "day", *EVER, **filters) == []
        empty = await reports.summary(seed.pool, *EVER, **filters)
        assert empty.settled == 0 and empty.revenue_atomic == 0 and empty.open_flags == {}
    assert await seed.pool.fetchval("SELECT count(*) FROM payments") == len(seed.payments)
    with pytest.raises(LedgerError, match="unknown payment state"):
        await reports.report(seed.pool, "day", *EVER, state="settled' OR 1=1 --")
    with pytest.raises(LedgerError, match="cannot group by"):
        await reports.report(seed.pool, "payer; DROP TABLE payments", *EVER)
    with pytest.raises(LedgerError, match="unknown format"):
        reports.render_summary(await reports.summary(seed.pool, *EVER), "xml")


async def test_summary_equals_hand_sums_for_every_filter_and_window(seed: Seed) -> None:
    since, until = BASE + timedelta(days=3, hours=7), BASE + timedelta(days=8)
    windows = [EVER, (since, until)]
    for window in windows:
        for filters in [{}, *_filter_cases(seed)]:
            chosen = seed.select(*window, **filters)
            got = await reports.summary(seed.pool, *window, **filters)
            assert summary_fields(got) == expected_summary(chosen), (window, filters)
            assert got.filters == filters and (got.since, got.until) == window
            # the summary agrees with the report over the same payments
            rows = await reports.report(seed.pool, "network", *window, **filters)
            assert got.revenue_atomic == sum(r.revenue_atomic for r in rows)
            assert got.settled == sum(r.settled for r in rows) and got.pending == sum(r.pending for r in rows)
    everything = expected_summary(seed.payments)
    # the seed exercises every figure (a zero would prove nothing)
    assert all(v for v in everything.values()), everything
    assert everything["refunded"] == 20 and set(everything["gas_by_network"]) == set(NETWORKS)


async def test_summary_renders_in_every_format(seed: Seed) -> None:
    filters = {"network": EVM}
    expected = expected_summary(seed.select(**filters))
    got = await reports.summary(seed.pool, *EVER, **filters)
    outcomes = [(label, count, amount) for label, count, amount in reports.SUMMARY_OUTCOMES]

    document = json.loads(reports.render_summary(got, "json"))
    assert document["filters"] == filters
    for label, count, amount in outcomes:
        assert document["payments"][label] == {
            "count": expected[count],
            "amount_atomic": expected[amount],
            "amount_usdc": usdc_text(expected[amount]),
        }
    assert document["gas"] == {
        n: {"amount_atomic": v, "unit": reports.gas_unit(n)} for n, v in expected["gas_by_network"].items()
    }
    assert "gas_native" not in document
    assert document["open_flags"] == expected["open_flags"]

    parsed = list(csv.DictReader(io.StringIO(reports.render_summary(got, "csv"))))
    by_section: dict[str, dict[str, dict[str, str]]] = defaultdict(dict)
    for row in parsed:
        by_section[row["section"]][row["key"]] = row
    for label, count, amount in outcomes:
        row = by_section["payments"][label]
        assert (int(row["count"]), int(row["amount_atomic"])) == (expected[count], expected[amount])
        assert row["amount_usdc"] == usdc_text(expected[amount])
    assert {k: int(r["amount_atomic"]) for k, r in by_section["gas_wei"].items()} == expected["gas_by_network"]
    assert {k: int(r["count"]) for k, r in by_section["open_flags"].items()} == expected["open_flags"]

    lines = reports.render_summary(got, "table").splitlines()
    assert lines[0].startswith("summary ") and "network=eip155:84532" in lines[0]
    table: dict[tuple[str, str], list[str]] = {}
    for line in lines[3:]:
        section, key, *cells = line.split()
        table[section, key] = cells
    for label, count, amount in outcomes:
        assert table["payments", label] == [str(expected[count]), str(expected[amount]), usdc_text(expected[amount])]
    assert table["gas_wei", EVM] == [str(expected["gas_by_network"][EVM])]
    for kind, n in expected["open_flags"].items():
        assert table["open_flags", kind] == [str(n)]
