"""The ledger against a real Postgres: claims, the state machine, the journal's rules, migrations, reports."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import shutil
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

import ledger
from app.wiring import MIGRATIONS_DIR
from ledger import LedgerError, LedgerIntegrityError, Posting, claims, reports

from .ledger_helpers import fresh_pool_fixture, record, settle_new  # noqa: F401  (the fresh_pool fixture)
from .services import Database


async def test_fifty_concurrent_claims_of_one_key_make_one_claim(pool: asyncpg.Pool) -> None:
    rec = record()
    ids = await asyncio.gather(*(claims.claim(pool, rec) for _ in range(50)))
    winners = [i for i in ids if i is not None]
    assert len(winners) == 1
    assert await pool.fetchval("SELECT count(*) FROM payments WHERE payment_key = $1", rec.payment_key) == 1


async def test_release_and_reclaim_but_never_after_settlement(pool: asyncpg.Pool) -> None:
    rec = record()
    payment_id = await claims.claim(pool, rec)
    assert payment_id is not None
    assert await claims.advance(pool, payment_id, "claimed", "released", reason="simulation failed")
    assert await claims.claim(pool, rec) == payment_id  # a released key may be claimed again
    assert await claims.claim(pool, rec) is None  # ...but only once at a time
    holder = await claims.holder(pool, rec.payment_key)
    assert holder is not None and holder.state == "claimed"
    settled = await settle_new(pool, record())
    settled_key = await pool.fetchval("SELECT payment_key FROM payments WHERE id = $1", settled)
    assert await claims.claim(pool, record(settled_key)) is None


async def test_transitions_are_checked_in_python_and_in_sql(pool: asyncpg.Pool) -> None:
    payment_id = await settle_new(pool, record())
    with pytest.raises(LedgerIntegrityError):
        await claims.advance(pool, payment_id, "settled", "claimed")
    with pytest.raises(asyncpg.IntegrityConstraintViolationError, match="illegal transition settled -> claimed"):
        await pool.execute("UPDATE payments SET state = 'claimed' WHERE id = $1", payment_id)
    with pytest.raises(asyncpg.IntegrityConstraintViolationError, match="immutable"):
        await pool.execute("UPDATE payments SET amount_atomic = 1 WHERE id = $1", payment_id)
    # a move from the wrong state matches no row: someone else moved it first
    other = await claims.claim(pool, record())
    assert other is not None
    assert not await claims.advance(pool, other, "verified", "served")


async def test_every_transition_is_in_the_event_log(pool: asyncpg.Pool) -> None:
    payment_id = await settle_new(pool, record())
    events = await pool.fetch(
        "SELECT from_state, to_state, tx_hash FROM payment_events WHERE payment_id = $1 ORDER BY id", payment_id
    )
    moves = [(e["from_state"], e["to_state"]) for e in events]
    assert moves == [
        (None, "claimed"),
        ("claimed", "verified"),
        ("verified", "served"),
        ("served", "settling"),
        ("settling", "settled"),
    ]
    assert events[-1]["tx_hash"] is not None


async def test_journal_refuses_edits_imbalance_and_double_settlement(pool: asyncpg.Pool) -> None:
    payment_id = await settle_new(pool, record())
    for statement in (
        "UPDATE journal_postings SET amount_atomic = amount_atomic + 1",
        "DELETE FROM journal_postings",
        "DELETE FROM journal_entries",
        "UPDATE payment_events SET reason = 'x'",
        "DELETE FROM payment_events",
        "TRUNCATE journal_postings CASCADE",
        "TRUNCATE payment_events CASCADE",
    ):
        with pytest.raises(asyncpg.IntegrityConstraintViolationError, match="append-only"):
            await pool.execute(statement)

    async def post(lines: list[tuple[str, str, int]], kind: str = "adjustment", payment: int | None = None) -> None:
        async with pool.acquire() as connection, connection.transaction():
            entry = await connection.fetchval(
                "INSERT INTO journal_entries (payment_id, kind) VALUES ($1, $2) RETURNING id", payment, kind
            )
            for account, asset, amount in lines:
                await connection.execute(
                    "INSERT INTO journal_postings (entry_id, account, asset, amount_atomic) VALUES ($1, $2, $3, $4)",
                    entry,
                    account,
                    asset,
                    amount,
                )

    with pytest.raises(asyncpg.CheckViolationError, match="does not balance"):
        await post([("a", "usdc", 5), ("b", "usdc", -4)])
    with pytest.raises(asyncpg.CheckViolationError, match="does not balance"):
        await post([("a", "usdc", 5), ("b", "eth", -5)])  # balanced in sum, not per asset
    with pytest.raises(asyncpg.CheckViolationError, match="at least 2"):
        await post([("a", "usdc", 5)])
    with pytest.raises(asyncpg.UniqueViolationError):
        await post([("a", "usdc", 5), ("b", "usdc", -5)], kind="settlement", payment=payment_id)
    await post([("a", "usdc", 5), ("b", "usdc", -5)])  # a balanced adjustment is fine
    # A posting added later to an entry written before (its own check ran at that commit) is checked again.
    old = await pool.fetchval("SELECT max(id) FROM journal_entries WHERE kind = 'adjustment'")
    async with pool.acquire() as connection:
        with pytest.raises(asyncpg.CheckViolationError, match="does not balance"):
            async with connection.transaction():
                await connection.execute(
                    "INSERT INTO journal_postings (entry_id, account, asset, amount_atomic) VALUES ($1, $2, $3, 1)",
                    old,
                    "a",
                    "usdc",
                )
    with pytest.raises(LedgerIntegrityError):
        ledger.journal.assert_balanced([Posting("a", "usdc", 5), Posting("b", "usdc", -4)])


async def test_amounts_beyond_64_bits_stay_exact(pool: asyncpg.Pool) -> None:
    huge = 2**200 + 12345
    payment_id = await settle_new(pool, record(amount_atomic=huge), gas=None)
    row = await claims.payment(pool, payment_id)
    assert row is not None
    assert row["amount_atomic"] == huge and isinstance(row["amount_atomic"], int)
    assert sorted(line["amount_atomic"] for line in row["journal"]) == [-huge, huge]


async def test_migrations_are_recorded_and_immutable(database: Database, tmp_path: Path) -> None:
    assert await ledger.migrate(database.url, MIGRATIONS_DIR) == []  # already applied: nothing to do
    changed = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, changed)
    first = sorted(changed.glob("0001_*.sql"))[0]
    first.write_text(first.read_text() + "\n-- edited after release\n")
    with pytest.raises(LedgerError, match="changed after it was applied"):
        await ledger.migrate(database.url, changed)


async def test_report_totals_equal_hand_sums(fresh_pool: asyncpg.Pool) -> None:
    networks = ["eip155:84532", "eip155:8453"]
    streams = ["static.capitals", "static.volcanoes", "static.other"]
    expected: dict[str, dict[str, int]] = {g: defaultdict(int) for g in ("network", "stream", "payer", "route")}
    counts: dict[str, int] = defaultdict(int)
    for i in range(60):
        rec = record(
            network=networks[i % 2],
            stream=streams[i % 3],
            payer=f"0xpayer{i % 7}",
            amount_atomic=1000 + i,
            resource=f"/v1/streams/{streams[i % 3]}",
        )
        if i % 10 == 9:  # some payments are released, not settled: no revenue
            payment_id = await claims.claim(fresh_pool, rec)
            assert payment_id is not None
            await claims.advance(fresh_pool, payment_id, "claimed", "released")
            counts[f"released:{rec.network}"] += 1
            continue
        await settle_new(fresh_pool, rec)
        counts[f"settled:{rec.network}"] += 1
        for group, key in (
            ("network", rec.network),
            ("stream", rec.stream),
            ("payer", rec.payer),
            ("route", rec.route),
        ):
            expected[group][str(key)] += rec.amount_atomic

    since, until = datetime(2000, 1, 1, tzinfo=UTC), datetime.now(UTC) + timedelta(days=1)
    for group in expected:
        rows = await reports.report(fresh_pool, group, since, until)
        assert {r.key: r.revenue_atomic for r in rows} == dict(expected[group])
    by_network = {r.key: r for r in await reports.report(fresh_pool, "network", since, until)}
    for network in networks:
        assert by_network[network].settled == counts[f"settled:{network}"]
        assert by_network[network].released == counts[f"released:{network}"]
    total = sum(expected["network"].values())

    day_rows = await reports.report(fresh_pool, "day", since, until)
    assert [r.key for r in day_rows] == [datetime.now(UTC).strftime("%Y-%m-%d")]
    assert day_rows[0].revenue_atomic == total
    parsed = list(csv.DictReader(io.StringIO(reports.render(day_rows, "csv", "day"))))
    assert int(parsed[0]["revenue_atomic"]) == total and parsed[0]["revenue_usdc"] == f"{total / 10**6:.6f}"
    document = json.loads(reports.render(day_rows, "json", "day"))
    assert document["totals"]["revenue_atomic"] == total
    table = reports.render(day_rows, "table", "day")
    assert table.splitlines()[-1].startswith("TOTAL") and str(total) in table.splitlines()[-1]
    # the journal agrees: revenue credits sum to minus the same total
    credits = await fresh_pool.fetchval(
        "SELECT sum(amount_atomic) FROM journal_postings WHERE account LIKE 'revenue:%'"
    )
    assert credits == -total
    empty = await reports.report(fresh_pool, "day", until, until + timedelta(days=1))
    assert empty == []
    with pytest.raises(LedgerError):
        await reports.report(fresh_pool, "payer; DROP TABLE payments", since, until)
