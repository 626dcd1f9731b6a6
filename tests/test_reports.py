"""Reports and the summary over a seeded ledger of 1,200 payments (tests/report_seed.py: the real claims path,
every outcome, reversals and flags), against totals computed by hand in Python. Nothing expected is read back
from SQL: every number is summed from the seed's own records.
"""

from __future__ import annotations

import csv
import io
import json
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest

import ledger
from ledger import LedgerError, reports

from .ledger_helpers import fresh_database
from .report_seed import (
    BASE,
    BUCKETS,
    EVER,
    EVM,
    GROUP_COLUMNS,
    NETWORKS,
    OUTCOMES,
    SOLANA,
    Paid,
    Seed,
    seed_ledger,
)
from .services import Database


@pytest.fixture(scope="module")
async def seed(database: Database) -> AsyncIterator[Seed]:
    async with fresh_database(database) as fresh:
        started = time.perf_counter()
        seeded = await seed_ledger(fresh.pool)
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
