"""`ledger verify` against a clean ledger and against ledgers tampered with as a superuser can.

Each test seeds a database of its own through the real claims path, then breaks one rule behind the
triggers' back (disabling them, editing rows, re-enabling them) and checks that verify names what
was broken, and only that.
"""

from __future__ import annotations

import json
import secrets
from collections import defaultdict
from collections.abc import AsyncIterator

import asyncpg
import pytest

import ledger
from ledger import audit, claims
from ledger.sql import queries
from ledger.verify import VerifyResult, render_verify, verify

from .ledger_helpers import FreshDatabase, fresh_database, postings_for, record, settle_new, settling_new
from .services import Database


@pytest.fixture
async def fresh(database: Database) -> AsyncIterator[FreshDatabase]:
    async with fresh_database(database) as db:
        yield db


@pytest.fixture
async def superuser(fresh: FreshDatabase) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(fresh.admin_url)
    try:
        yield connection
    finally:
        await connection.close()


async def seed(pool: asyncpg.Pool) -> dict[str, list[int]]:
    """A small ledger with every kind of row verify reads: each outcome, a re-claim, a write-ahead hash,
    gas and no gas, a refund (reversal entry) and an adjustment entry without a payment."""
    ids: dict[str, list[int]] = defaultdict(list)
    streams = ["static.capitals", "static.volcanoes", None]
    for i in range(12):
        rec = record(payer=f"0xpayer{i % 4}", stream=streams[i % 3], amount_atomic=1000 + 17 * i)
        ids["settled"].append(await settle_new(pool, rec, gas=None if i % 5 == 0 else 21_000 + i))
    for _ in range(3):
        payment_id = await settling_new(pool, record())
        await claims.record_tx_hash(pool, payment_id, "0x" + secrets.token_hex(32))
        ids["settling"].append(payment_id)
    for _ in range(2):
        payment_id = await settling_new(pool, record())
        assert await claims.advance(pool, payment_id, "settling", "failed", reason="reverted")
        ids["failed"].append(payment_id)
    rec = record()
    payment_id = await claims.claim(pool, rec)
    assert payment_id is not None and await claims.advance(pool, payment_id, "claimed", "released")
    ids["released"].append(payment_id)
    reclaimed = record()  # released, claimed again, and settled the second time
    payment_id = await claims.claim(pool, reclaimed)
    assert payment_id is not None and await claims.advance(pool, payment_id, "claimed", "released")
    assert await settle_new(pool, reclaimed) == payment_id
    ids["reclaimed"].append(payment_id)
    payment_id = await claims.claim(pool, record())
    assert payment_id is not None
    assert await audit.expire(pool, payment_id, "claimed", "abandoned")
    ids["expired"].append(payment_id)
    for path in ([], ["verified"], ["verified", "served"]):
        payment_id = await claims.claim(pool, record())
        assert payment_id is not None
        for before, after in zip(["claimed", *path], path, strict=False):
            assert await claims.advance(pool, payment_id, before, after)
        ids["in_flight"].append(payment_id)
    async with pool.acquire() as connection, connection.transaction():
        refunded = ids["settled"][1]
        settlement = await connection.fetchval(
            "SELECT id FROM journal_entries WHERE payment_id = $1 AND kind = 'settlement'", refunded
        )
        entry = await connection.fetchval(queries["insert_journal_entry"], refunded, "reversal", settlement, "refund")
        token = "eip155:84532/0xasset"
        await connection.execute(
            queries["insert_journal_postings"],
            entry,
            ["revenue:static.volcanoes", "onchain:eip155:84532:0xpayto"],
            [token, token],
            [400, -400],
        )
        adjustment = await connection.fetchval(queries["insert_journal_entry"], None, "adjustment", None, "opening")
        await connection.execute(
            queries["insert_journal_postings"], adjustment, ["equity:opening", "onchain:x:y"], ["x/native"] * 2, [5, -5]
        )
    return ids


def details(result: VerifyResult, check: str) -> list[str]:
    return [v.detail for v in result.by_check(check)]


def failed_checks(result: VerifyResult) -> set[str]:
    return {v.check for v in result.violations}


async def settlement_lines(pool: asyncpg.Pool, payment_id: int) -> list[asyncpg.Record]:
    return await pool.fetch(
        "SELECT e.id AS entry_id, p.id, p.account, p.asset, p.amount_atomic"
        " FROM journal_entries e JOIN journal_postings p ON p.entry_id = e.id"
        " WHERE e.payment_id = $1 AND e.kind = 'settlement' ORDER BY p.id",
        payment_id,
    )


async def test_a_clean_ledger_passes(fresh: FreshDatabase) -> None:
    ids = await seed(fresh.pool)
    result = await verify(fresh.pool)
    assert result.ok, result.violations
    assert result.counts["payments"] == sum(len(v) for v in ids.values())
    assert result.counts["entries"] == len(ids["settled"]) + len(ids["reclaimed"]) + 2
    assert result.totals == {}
    table = render_verify(result, "table")
    assert table.splitlines()[-1] == f"OK: {len(ledger.verify.CHECKS)} checks, no violations"
    document = json.loads(render_verify(result, "json"))
    assert document["ok"] is True and document["violations"] == [] and document["checks"] == list(result.checks)
    with pytest.raises(ledger.LedgerError):
        render_verify(result, "csv")


async def test_an_edited_posting_is_named_by_its_entry_and_account_balance(
    fresh: FreshDatabase, superuser: asyncpg.Connection
) -> None:
    ids = await seed(fresh.pool)
    payment_id = ids["settled"][0]
    lines = await settlement_lines(fresh.pool, payment_id)
    [revenue] = [line for line in lines if line["account"].startswith("revenue:")]
    await superuser.execute("ALTER TABLE journal_postings DISABLE TRIGGER ALL")
    await superuser.execute(
        "UPDATE journal_postings SET amount_atomic = amount_atomic - 1 WHERE id = $1", revenue["id"]
    )
    await superuser.execute("ALTER TABLE journal_postings ENABLE TRIGGER ALL")

    result = await verify(fresh.pool)
    assert not result.ok
    assert failed_checks(result) == {"entry_balanced", "settlement_entry", "account_balances"}
    assert details(result, "entry_balanced") == [
        f"journal entry {revenue['entry_id']} does not balance in {revenue['asset']}: off by -1"
    ]
    [balance] = details(result, "account_balances")
    assert balance.startswith(f"account {revenue['account']} in {revenue['asset']}: account_balances says ")
    [settlement] = details(result, "settlement_entry")
    amount = await fresh.pool.fetchval("SELECT amount_atomic FROM payments WHERE id = $1", payment_id)
    assert settlement == (
        f"settlement entry {revenue['entry_id']} for payment {payment_id} (settled): "
        f"revenue credit {amount + 1}, payment amount {amount}"
    )
    assert result.totals == {"entry_balanced": 1, "settlement_entry": 1, "account_balances": 1}
    table = render_verify(result, "table")
    assert f"journal entry {revenue['entry_id']} does not balance" in table
    assert table.splitlines()[-1].startswith("FAILED: 3 violation(s)")
    document = json.loads(render_verify(result, "json"))
    assert document["ok"] is False and len(document["violations"]) == 3


async def test_a_deleted_posting_and_a_forged_balance_row_are_reported(
    fresh: FreshDatabase, superuser: asyncpg.Connection
) -> None:
    ids = await seed(fresh.pool)
    lines = await settlement_lines(fresh.pool, ids["settled"][2])
    onchain = next(line for line in lines if line["account"].startswith("onchain:") and line["amount_atomic"] > 0)
    gas = [line for line in lines if line["asset"].endswith("/native")]
    assert len(gas) == 2
    await superuser.execute("ALTER TABLE journal_postings DISABLE TRIGGER ALL")
    await superuser.execute("DELETE FROM journal_postings WHERE id = ANY($1::bigint[])", [g["id"] for g in gas[:1]])
    await superuser.execute("ALTER TABLE journal_postings ENABLE TRIGGER ALL")
    # a row for an account nobody posted to is a forgery: refused outright, so forged with the guard off
    forge = (
        "INSERT INTO account_balances (account, asset, balance_atomic, postings) VALUES ('revenue:ghost', 'x/y', 9, 1)"
    )
    with pytest.raises(asyncpg.IntegrityConstraintViolationError, match="written by the ledger's triggers only"):
        await superuser.execute(forge)
    await superuser.execute("ALTER TABLE account_balances DISABLE TRIGGER account_balances_guard")
    await superuser.execute(forge)
    await superuser.execute("ALTER TABLE account_balances ENABLE TRIGGER account_balances_guard")
    result = await verify(fresh.pool)
    assert failed_checks(result) == {"entry_balanced", "account_balances"}
    assert details(result, "entry_balanced") == [
        f"journal entry {onchain['entry_id']} does not balance in {gas[0]['asset']}: off by {-gas[0]['amount_atomic']}"
    ]
    balances = details(result, "account_balances")
    assert "account revenue:ghost in x/y: has an account_balances row but no postings" in balances
    assert any(
        b.startswith(f"account {gas[0]['account']} in {gas[0]['asset']}: account_balances says") for b in balances
    )

    # and an entry left with a single posting
    await superuser.execute("ALTER TABLE journal_postings DISABLE TRIGGER ALL")
    await superuser.execute("DELETE FROM journal_postings WHERE id = $1", gas[1]["id"])
    await superuser.execute("DELETE FROM journal_postings WHERE id = $1", onchain["id"])
    await superuser.execute("ALTER TABLE journal_postings ENABLE TRIGGER ALL")
    result = await verify(fresh.pool)
    assert details(result, "entry_postings") == [
        f"journal entry {onchain['entry_id']} (settlement, payment {ids['settled'][2]}) has 1 posting(s); "
        "double entry needs at least 2"
    ]


async def test_a_disabled_trigger_is_reported_until_it_is_enabled_again(
    fresh: FreshDatabase, superuser: asyncpg.Connection
) -> None:
    await seed(fresh.pool)
    await superuser.execute("ALTER TABLE payments DISABLE TRIGGER payments_guard")
    await superuser.execute("ALTER TABLE journal_postings ENABLE REPLICA TRIGGER journal_postings_immutable")
    await superuser.execute("DROP TRIGGER journal_postings_balance ON journal_postings")
    result = await verify(fresh.pool)
    assert failed_checks(result) == {"triggers"}
    assert sorted(details(result, "triggers")) == [
        "trigger journal_postings_balance on journal_postings is missing",
        "trigger journal_postings_immutable on journal_postings is enabled only for replica sessions "
        "(never fires in normal use)",
        "trigger payments_guard on payments is disabled",
    ]
    await superuser.execute("ALTER TABLE payments ENABLE TRIGGER payments_guard")
    await superuser.execute("ALTER TABLE journal_postings ENABLE TRIGGER journal_postings_immutable")
    result = await verify(fresh.pool)
    assert details(result, "triggers") == ["trigger journal_postings_balance on journal_postings is missing"]

    await superuser.execute("ALTER TABLE journal_entries DISABLE TRIGGER ALL")  # constraint triggers too
    result = await verify(fresh.pool)
    assert {d.split()[1] for d in details(result, "triggers")} == {
        "journal_entries_balanced",
        "journal_entries_immutable",
        "journal_entries_no_truncate",
        "journal_postings_balance",
    }


async def test_a_forged_event_is_reported(fresh: FreshDatabase) -> None:
    ids = await seed(fresh.pool)
    claimed = ids["in_flight"][0]
    forge = (
        "INSERT INTO payment_events (payment_id, from_state, to_state) VALUES ($1, 'claimed', 'settled') RETURNING id"
    )
    with pytest.raises(asyncpg.IntegrityConstraintViolationError, match="written by the ledger's triggers only"):
        await fresh.pool.fetchval(forge, claimed)  # only the payments trigger writes the log
    async with fresh.pool.acquire() as connection, connection.transaction():
        await connection.execute("ALTER TABLE payment_events DISABLE TRIGGER payment_events_insert_guard")
        forged = await connection.fetchval(forge, claimed)  # a superuser with the guard off
        await connection.execute("ALTER TABLE payment_events ENABLE TRIGGER payment_events_insert_guard")
    result = await verify(fresh.pool)
    assert failed_checks(result) == {"event_chain"}
    assert details(result, "event_chain") == [
        f"payment {claimed}: event {forged} is an illegal transition claimed -> settled",
        f"payment {claimed}: is claimed but its last event {forged} entered settled",
    ]


async def test_a_state_that_skips_a_transition_is_reported(fresh: FreshDatabase, superuser: asyncpg.Connection) -> None:
    ids = await seed(fresh.pool)
    claimed, verified = ids["in_flight"][0], ids["in_flight"][1]
    # the guard off, the log on: the log records the illegal step claimed -> settling
    await superuser.execute("ALTER TABLE payments DISABLE TRIGGER payments_guard")
    await superuser.execute("UPDATE payments SET state = 'settling' WHERE id = $1", claimed)
    await superuser.execute("ALTER TABLE payments ENABLE TRIGGER payments_guard")
    # every trigger off: no event at all, the state simply differs from the log
    await superuser.execute("ALTER TABLE payments DISABLE TRIGGER ALL")
    await superuser.execute("UPDATE payments SET state = 'released' WHERE id = $1", verified)
    await superuser.execute("ALTER TABLE payments ENABLE TRIGGER ALL")
    step = await fresh.pool.fetchval("SELECT max(id) FROM payment_events WHERE payment_id = $1", claimed)
    last = await fresh.pool.fetchval("SELECT max(id) FROM payment_events WHERE payment_id = $1", verified)
    result = await verify(fresh.pool)
    assert failed_checks(result) == {"event_chain"}
    assert details(result, "event_chain") == [
        f"payment {claimed}: event {step} is an illegal transition claimed -> settling",
        f"payment {verified}: is released but its last event {last} entered verified",
    ]


async def test_a_settled_payment_without_its_settlement_entry_is_reported(
    fresh: FreshDatabase, superuser: asyncpg.Connection
) -> None:
    ids = await seed(fresh.pool)
    forged, legal, booked_early = ids["settling"]
    await superuser.execute("ALTER TABLE payments DISABLE TRIGGER ALL")
    await superuser.execute(
        "UPDATE payments SET state = 'settled', settled_at = now(), tx_hash = '0xforged' WHERE id = $1", forged
    )
    await superuser.execute("ALTER TABLE payments ENABLE TRIGGER ALL")
    # settling -> settled is a legal edge, but not without the entry: refused at commit (0003)
    with pytest.raises(asyncpg.IntegrityConstraintViolationError, match="without a settlement journal entry"):
        await fresh.pool.execute("UPDATE payments SET state = 'settled', settled_at = now() WHERE id = $1", legal)
    # and the converse: a settlement entry (balanced, so the journal accepts it) for a payment still settling
    rec = record(amount_atomic=1000)
    async with fresh.pool.acquire() as connection, connection.transaction():
        entry = await connection.fetchval(queries["insert_journal_entry"], booked_early, "settlement", None, None)
        lines = postings_for(rec, gas=None)
        await connection.execute(
            queries["insert_journal_postings"],
            entry,
            [p.account for p in lines],
            [p.asset for p in lines],
            [p.amount_atomic for p in lines],
        )
    assert await fresh.pool.fetchval("SELECT state FROM payments WHERE id = $1", legal) == "settling"
    forged_last = await fresh.pool.fetchval("SELECT max(id) FROM payment_events WHERE payment_id = $1", forged)
    result = await verify(fresh.pool)
    assert failed_checks(result) == {"settled_payment", "settlement_entry", "event_chain"}
    assert details(result, "settled_payment") == [
        f"settled payment {forged} (tx 0xforged) has 0 settlement entries; it needs exactly 1",
    ]
    assert details(result, "settlement_entry") == [
        f"settlement entry {entry} for payment {booked_early} (settling): revenue credit 1000, payment amount 1000;"
        " the payment is not settled"
    ]
    # the triggers were off for the forged one, so its log still ends in settling; the legal one's log is fine
    assert details(result, "event_chain") == [
        f"payment {forged}: is settled but its last event {forged_last} entered settling"
    ]


async def test_many_violations_are_listed_up_to_the_limit_and_counted(
    fresh: FreshDatabase, superuser: asyncpg.Connection
) -> None:
    await seed(fresh.pool)
    rows = await superuser.fetchval("SELECT count(*) FROM (SELECT DISTINCT account, asset FROM account_balances) kept")
    await superuser.execute("ALTER TABLE account_balances DISABLE TRIGGER account_balances_guard")
    await superuser.execute("UPDATE account_balances SET balance_atomic = balance_atomic + 1")
    await superuser.execute("ALTER TABLE account_balances ENABLE TRIGGER account_balances_guard")
    result = await verify(fresh.pool, limit=3)
    listed = details(result, "account_balances")
    assert len(listed) == 4 and listed[-1] == f"... and {rows - 3} more"
    assert result.totals == {"account_balances": rows}
    assert render_verify(result, "table").splitlines()[-1] == f"FAILED: {rows} violation(s): account_balances {rows}"
