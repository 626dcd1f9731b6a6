"""The ledger side of reconciliation (ledger/audit.py), each test on a database of its own."""

from __future__ import annotations

import asyncio
import secrets
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

import ledger
from ledger import LedgerError, LedgerIntegrityError, Posting, audit, claims

from .ledger_helpers import fresh_pool_fixture, postings_for, record, settle_new, settling_new  # noqa: F401

STALE_S = 0.3


async def claimed_through(pool: asyncpg.Pool, *path: str, **changes: object) -> int:
    payment_id = await claims.claim(pool, record(**changes))
    assert payment_id is not None
    for before, after in zip(("claimed", *path), path, strict=False):
        assert await claims.advance(pool, payment_id, before, after)
    return payment_id


async def state_of(pool: asyncpg.Pool, payment_id: int) -> str:
    return await pool.fetchval("SELECT state FROM payments WHERE id = $1", payment_id)


async def test_open_payments_are_the_stale_open_ones_oldest_first(fresh_pool: asyncpg.Pool) -> None:
    deadline = datetime(2030, 1, 1, tzinfo=UTC)
    claimed = await claimed_through(fresh_pool, valid_before=deadline, payer="0xalice", stream=None)
    verified = await claimed_through(fresh_pool, "verified")
    served = await claimed_through(fresh_pool, "verified", "served")
    settling = await settling_new(fresh_pool, record(amount_atomic=4242))
    await claims.record_tx_hash(fresh_pool, settling, "0xwriteahead")
    await settle_new(fresh_pool, record())
    await claimed_through(fresh_pool, "released")
    await claimed_through(fresh_pool, "expired")
    failed = await settling_new(fresh_pool, record())
    assert await claims.advance(fresh_pool, failed, "settling", "failed")
    await asyncio.sleep(STALE_S + 0.1)
    recent = await claimed_through(fresh_pool)

    stale = await audit.open_payments(fresh_pool, STALE_S, 100)
    assert [(p.id, p.state) for p in stale] == [
        (claimed, "claimed"),
        (verified, "verified"),
        (served, "served"),
        (settling, "settling"),
    ]
    first, *_, last = stale
    assert (first.payer, first.valid_before, first.stream, first.resource) == (
        "0xalice",
        deadline,
        None,
        "/v1/streams/static.capitals",
    )
    assert (last.tx_hash, last.amount_atomic, last.network) == ("0xwriteahead", 4242, "eip155:84532")
    assert [p.updated_at for p in stale] == sorted(p.updated_at for p in stale)
    assert [p.id for p in await audit.open_payments(fresh_pool, STALE_S, 2)] == [claimed, verified]
    assert [p.id for p in await audit.open_payments(fresh_pool, 0, 100)][-1] == recent
    assert await audit.open_payments(fresh_pool, 3600, 100) == []


async def test_unbooked_candidates_are_released_and_expired_newest_first(fresh_pool: asyncpg.Pool) -> None:
    released = await claimed_through(fresh_pool, "released")
    expired = await claimed_through(fresh_pool, "verified", "served", "expired")
    reclaimed_rec = record()
    reclaimed = await claims.claim(fresh_pool, reclaimed_rec)
    assert reclaimed is not None and await claims.advance(fresh_pool, reclaimed, "claimed", "released")
    assert await claims.claim(fresh_pool, reclaimed_rec) == reclaimed  # claimed again: no longer a candidate
    await settle_new(fresh_pool, record())
    await claimed_through(fresh_pool, "verified")
    await asyncio.sleep(STALE_S + 0.1)
    late = await claimed_through(fresh_pool, "released")  # too recent to ask about yet

    candidates = await audit.unbooked_candidates(fresh_pool, STALE_S, 100)
    assert [(c.id, c.state) for c in candidates] == [(expired, "expired"), (released, "released")]
    assert candidates[0].payment_key and candidates[0].scheme_id == "v2-eip155-exact"
    assert [c.id for c in await audit.unbooked_candidates(fresh_pool, 0, 1)] == [late]


async def test_settled_after_pages_by_cursor_and_sample_is_random_settled(fresh_pool: asyncpg.Pool) -> None:
    settled = []
    for i in range(5):
        settled.append(await settle_new(fresh_pool, record(amount_atomic=1000 + i), gas=None if i == 2 else 50 + i))
        await claimed_through(fresh_pool, "verified")  # open payments in between are skipped
    pages, cursor = [], 0
    while page := await audit.settled_after(fresh_pool, cursor, 2):
        pages.append([p.id for p in page])
        cursor = page[-1].id
    assert pages == [settled[0:2], settled[2:4], settled[4:5]]

    rows = await audit.settled_after(fresh_pool, 0, 10)
    for i, row in enumerate(rows):
        assert row.amount_atomic == row.booked_atomic == 1000 + i
        assert row.gas_cost_atomic == (None if i == 2 else 50 + i)
        assert row.tx_hash.startswith("0x") and row.entry_id is not None and row.settled_at is not None
    detail = await claims.payment(fresh_pool, rows[0].id)
    assert detail is not None and detail["tx_hash"] == rows[0].tx_hash

    seen: set[int] = set()
    for _ in range(10):
        sample = await audit.settled_sample(fresh_pool, 3)
        ids = [p.id for p in sample]
        assert len(ids) == 3 and ids == sorted(set(ids)) and set(ids) <= set(settled)
        seen.update(ids)
    assert len(seen) > 3  # not the same three every time
    assert [p.id for p in await audit.settled_sample(fresh_pool, 50)] == settled


async def test_resolve_settled_posts_one_balanced_entry(fresh_pool: asyncpg.Pool) -> None:
    rec = record(amount_atomic=123_456)
    payment_id = await settling_new(fresh_pool, rec)
    await claims.record_tx_hash(fresh_pool, payment_id, "0xwriteahead")
    with pytest.raises(LedgerIntegrityError, match="does not balance"):
        await audit.resolve_settled(fresh_pool, payment_id, "0xfound", [Posting("a", "x", 5), Posting("b", "x", -4)])
    assert await state_of(fresh_pool, payment_id) == "settling"  # refused before anything was written

    entry_id = await audit.resolve_settled(fresh_pool, payment_id, "0xfound", postings_for(rec, gas=900), 900)
    detail = await claims.payment(fresh_pool, payment_id)
    assert detail is not None
    assert (detail["state"], detail["tx_hash"], detail["gas_cost_atomic"]) == ("settled", "0xfound", 900)
    assert {line["entry_id"] for line in detail["journal"]} == {entry_id}
    per_asset: dict[str, int] = defaultdict(int)
    for line in detail["journal"]:
        per_asset[line["asset"]] += line["amount_atomic"]
    assert per_asset == {"eip155:84532/0xasset": 0, "eip155:84532/native": 0}
    revenue = [line["amount_atomic"] for line in detail["journal"] if line["account"].startswith("revenue:")]
    assert revenue == [-123_456]
    memo = await fresh_pool.fetchval("SELECT memo FROM journal_entries WHERE id = $1", entry_id)
    assert memo == "booked by reconciliation"
    with pytest.raises(LedgerIntegrityError, match="not settling"):
        await audit.resolve_settled(fresh_pool, payment_id, "0xfound", postings_for(rec), 900)
    assert await fresh_pool.fetchval("SELECT count(*) FROM journal_entries") == 1
    assert (await ledger.verify.verify(fresh_pool)).ok


async def test_resolve_failed_and_expire_refuse_when_the_state_moved(fresh_pool: asyncpg.Pool) -> None:
    unpaid = await settling_new(fresh_pool, record())
    assert await audit.resolve_failed(fresh_pool, unpaid, "not on chain after 10 minutes")
    detail = await claims.payment(fresh_pool, unpaid)
    assert detail is not None and (detail["state"], detail["error_reason"]) == (
        "failed",
        "not on chain after 10 minutes",
    )
    assert not await audit.resolve_failed(fresh_pool, unpaid, "again")

    rec = record()
    raced = await settling_new(fresh_pool, rec)
    await claims.settle(fresh_pool, raced, "0xgate", postings_for(rec))  # the gate booked it first
    assert not await audit.resolve_failed(fresh_pool, raced, "late")
    assert await state_of(fresh_pool, raced) == "settled"

    abandoned = await claimed_through(fresh_pool)
    assert await audit.expire(fresh_pool, abandoned, "claimed", "client went away")
    assert await state_of(fresh_pool, abandoned) == "expired"
    assert not await audit.expire(fresh_pool, abandoned, "claimed", "again")

    moving = await claimed_through(fresh_pool)
    assert await claims.advance(fresh_pool, moving, "claimed", "verified")  # a worker moved it meanwhile
    assert not await audit.expire(fresh_pool, moving, "claimed", "stale view")
    assert await state_of(fresh_pool, moving) == "verified"
    assert await audit.expire(fresh_pool, moving, "verified", "abandoned after verification")

    served = await claimed_through(fresh_pool, "verified", "served")
    assert await audit.expire(fresh_pool, served, "served", "settlement never started")
    for state in ("settling", "settled", "released", "expired"):
        with pytest.raises(LedgerError, match="only claimed, verified, served"):
            await audit.expire(fresh_pool, served, state, "no")
    assert (await ledger.verify.verify(fresh_pool)).ok


async def test_flagging_is_idempotent_and_resolvable(fresh_pool: asyncpg.Pool) -> None:
    payment_id = await settle_new(fresh_pool, record())
    other = await settling_new(fresh_pool, record())
    assert await audit.flag(fresh_pool, payment_id, "settlement_not_on_chain", "first look", "0xtx")
    assert not await audit.flag(fresh_pool, payment_id, "settlement_not_on_chain", "second look")
    rows = await fresh_pool.fetch("SELECT * FROM reconcile_flags")
    assert len(rows) == 1
    row = rows[0]
    assert (row["detail"], row["tx_hash"], row["resolved_at"]) == ("second look", "0xtx", None)
    assert row["last_seen_at"] > row["first_seen_at"]

    # concurrent reconcilers agree that exactly one of them raised it
    raised = await asyncio.gather(
        *(audit.flag(fresh_pool, other, "settlement_unknown", f"worker {i}") for i in range(10))
    )
    assert sorted(raised) == [False] * 9 + [True]
    assert await audit.flag(fresh_pool, payment_id, "settlement_mismatch", "moved 999, booked 1000")

    flags = await audit.open_flags(fresh_pool, 100)
    assert [(f.payment_id, f.kind) for f in flags] == [
        (payment_id, "settlement_not_on_chain"),
        (other, "settlement_unknown"),
        (payment_id, "settlement_mismatch"),
    ]
    assert flags[1].state == "settling" and flags[0].amount_atomic == 1000 and flags[0].network == "eip155:84532"
    assert [f.kind for f in await audit.open_flags(fresh_pool, 100, kind="settlement_unknown")] == [
        "settlement_unknown"
    ]
    assert len(await audit.open_flags(fresh_pool, 1)) == 1

    assert await audit.resolve_flags(fresh_pool, payment_id, ["settlement_not_on_chain", "settlement_mismatch"]) == 2
    assert await audit.resolve_flags(fresh_pool, payment_id, ["settlement_not_on_chain"]) == 0
    assert [f.payment_id for f in await audit.open_flags(fresh_pool, 100)] == [other]

    # seen again after it was resolved: reopened (newly raised), still one row, first_seen_at kept
    assert await audit.flag(fresh_pool, payment_id, "settlement_not_on_chain", "back again")
    again = await fresh_pool.fetchrow(
        "SELECT * FROM reconcile_flags WHERE payment_id = $1 AND kind = 'settlement_not_on_chain'", payment_id
    )
    assert again["resolved_at"] is None and again["first_seen_at"] == row["first_seen_at"]
    assert await fresh_pool.fetchval("SELECT count(*) FROM reconcile_flags") == 3
    with pytest.raises(LedgerError, match="unknown flag kind"):
        await audit.flag(fresh_pool, payment_id, "looks_odd", "no such kind")


async def test_runs_record_progress_and_resume_at_the_cursor(fresh_pool: asyncpg.Pool) -> None:
    assert await audit.last_runs(fresh_pool, 5) == []
    first = await audit.start_run(fresh_pool, "cli")
    assert (first.cursor, first.checked, first.finished_at) == (0, 0, None)
    assert await audit.update_run(fresh_pool, first.id, 5, 1, 2, 10)
    assert await audit.update_run(fresh_pool, first.id, 6, 1, 2, 4)  # a cursor never moves back
    done = await audit.finish_run(fresh_pool, first.id)
    assert done is not None and done.finished_at is not None
    assert (done.checked, done.resolved, done.flagged, done.cursor, done.error) == (6, 1, 2, 10, None)
    assert await audit.finish_run(fresh_pool, first.id) is None
    assert not await audit.update_run(fresh_pool, first.id, 7, 1, 2, 11)  # finished runs are closed

    second = await audit.start_run(fresh_pool, "schedule")
    assert second.cursor == 10  # resumes where the finished run stopped
    assert await audit.update_run(fresh_pool, second.id, 3, 0, 0, 25)
    # ... and the process dies: the run is never finished, its progress stays
    third = await audit.start_run(fresh_pool, "admin")
    assert third.cursor == 25
    failed = await audit.finish_run(fresh_pool, third.id, error="RPC unavailable for solana")
    assert failed is not None and failed.error == "RPC unavailable for solana" and failed.cursor == 25
    assert [r.id for r in await audit.last_runs(fresh_pool, 2)] == [third.id, second.id]
    with pytest.raises(LedgerError, match="unknown run trigger"):
        await audit.start_run(fresh_pool, "cron")


async def test_an_interrupted_audit_resumes_without_gaps_or_repeats(fresh_pool: asyncpg.Pool) -> None:
    """The loop an orchestrator runs over settled payments: page, audit, save progress; killed halfway."""
    settled = [await settle_new(fresh_pool, record(payer=f"0x{secrets.token_hex(4)}")) for _ in range(7)]
    audited: list[int] = []

    async def run(pages: int | None) -> None:
        current = await audit.start_run(fresh_pool, "schedule")
        cursor, checked = current.cursor, 0
        while pages is None or pages > 0:
            page = await audit.settled_after(fresh_pool, cursor, 3)
            if not page:
                break
            audited.extend(p.id for p in page)
            cursor, checked = page[-1].id, checked + len(page)
            await audit.update_run(fresh_pool, current.id, checked, 0, 0, cursor)
            pages = None if pages is None else pages - 1
        if pages is None:
            await audit.finish_run(fresh_pool, current.id)

    await run(pages=1)  # interrupted after one page
    await run(pages=None)
    assert audited == settled
    newer = await settle_new(fresh_pool, record())
    await run(pages=None)
    assert audited == [*settled, newer]
    runs = await audit.last_runs(fresh_pool, 10)
    assert [r.cursor for r in runs] == [newer, settled[-1], settled[2]]
    assert [r.finished_at is not None for r in runs] == [True, True, False]
    assert datetime.now(UTC) - runs[0].started_at < timedelta(minutes=1)
