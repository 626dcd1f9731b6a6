"""The batch-settlement ledger (ledger/channels.py, migrations 0007 and 0009) against a real Postgres: a channel's whole
life (mirror → book xN → claim → sweep) balancing and verifying, the cumulative rule's refusals (which write nothing),
one booking per voucher under concurrency, the unsettled cap, a pending withdrawal, and the triggers' guards."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from dataclasses import replace

import asyncpg
import pytest

from ledger import (
    LedgerError,
    LedgerIntegrityError,
    PaymentRecord,
    PaymentState,
    channels,
    claims,
    journal,
    voucher_bookings,
)
from ledger.channels import ChannelConfig, Refusal, VoucherRefused
from ledger.verify import verify
from ledger.voucher_bookings import Booked, Booking

from .ledger_helpers import FreshDatabase, fresh_database, record
from .services import Database

NETWORK = "eip155:84532"
TOKEN = "0x036cbd53842c5426634e7929541ec2318f3dcf7e"
RECEIVER = "0x" + "cd" * 20
RELAYER = "0x" + "ef" * 20
STREAM = "static.capitals"


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


def config(**changes: object) -> ChannelConfig:
    fields: dict[str, object] = {
        "channel_id": "0x" + secrets.token_hex(32),
        "network": NETWORK,
        "token": "0x" + TOKEN[2:].upper(),  # mixed case in, lowercase stored
        "payer": "0x" + secrets.token_hex(20),
        "payer_authorizer": "0x" + "11" * 20,
        "receiver": RECEIVER,
        "receiver_authorizer": "0x" + "22" * 20,
        "withdraw_delay": 900,
        "salt": "0x" + "00" * 32,
    }
    fields.update(changes)
    return ChannelConfig(**fields)  # type: ignore[arg-type]


def voucher_record(cfg: ChannelConfig, max_atomic: int, price: int) -> PaymentRecord:
    return record(
        channels.payment_key(cfg.network, cfg.channel_id, max_atomic),
        scheme_id="v2-eip155-batch-settlement",
        network=cfg.network,
        asset=cfg.token,
        payer=cfg.payer,
        pay_to=cfg.receiver,
        amount_atomic=price,
    )


async def book(
    pool: asyncpg.Pool, cfg: ChannelConfig, max_atomic: int, price: int, **options: object
) -> Booked | VoucherRefused:
    """A voucher whose data is ready, booked (or refused)."""
    return await voucher_bookings.book_voucher(pool, booking(cfg, max_atomic, price), **options)  # type: ignore[arg-type]


def booking(cfg: ChannelConfig, max_atomic: int, price: int) -> Booking:
    return Booking(
        voucher_record(cfg, max_atomic, price), cfg.channel_id, max_atomic, f"0xsig{max_atomic}", acceptance(cfg, price)
    )


def acceptance(cfg: ChannelConfig, price: int) -> list[journal.Posting]:
    return journal.batch_acceptance_postings(
        network=cfg.network, asset=cfg.token, pay_to=cfg.receiver, revenue_account=STREAM, amount_atomic=price
    )


async def sale(pool: asyncpg.Pool, cfg: ChannelConfig, price: int) -> int:
    """One paid request on the channel, booked once its data is ready. Returns its payment id."""
    channel = await channels.channel(pool, cfg.channel_id)
    assert channel is not None
    booked = await book(pool, cfg, channel.charged_atomic + price, price)
    assert isinstance(booked, Booked), booked
    return booked.payment_id


async def counts(pool: asyncpg.Pool) -> tuple[int, int, int]:
    """Payments, vouchers and journal entries: what a refusal must not add to."""
    row = await pool.fetchrow(
        "SELECT (SELECT count(*) FROM payments) AS p, (SELECT count(*) FROM batch_vouchers) AS v,"
        " (SELECT count(*) FROM journal_entries) AS e"
    )
    return row["p"], row["v"], row["e"]


async def balance(pool: asyncpg.Pool, account: str, asset: str) -> int:
    value = await pool.fetchval(
        "SELECT sum(balance_atomic) FROM account_balances WHERE account = $1 AND asset = $2", account, asset
    )
    return int(value or 0)


async def states(pool: asyncpg.Pool, ids: list[int]) -> list[str]:
    return [r["state"] for r in await pool.fetch("SELECT state FROM payments WHERE id = ANY($1) ORDER BY id", ids)]


async def test_a_channel_life_balances_and_verifies(fresh: FreshDatabase) -> None:
    pool = fresh.pool
    a, b = config(), config()
    mirrored = await channels.mirror_channel(pool, a, balance_atomic=10_000, claimed_atomic=0)
    assert mirrored.config == a.normalized() and mirrored.charged_atomic == 0 and mirrored.signature is None
    await channels.mirror_channel(pool, b, balance_atomic=5_000, claimed_atomic=0)
    sold_a = [await sale(pool, a, price) for price in (1000, 1000, 250)]
    sold_b = [await sale(pool, b, price) for price in (700, 300)]
    token = journal.asset_id(NETWORK, TOKEN)
    receivable = journal.receivable_account(NETWORK, RECEIVER)
    assert await balance(pool, receivable, token) == 3250
    assert await balance(pool, f"revenue:{STREAM}", token) == -3250
    assert (await verify(pool)).ok
    channel_a = await channels.channel(pool, a.channel_id)
    assert channel_a is not None
    assert (channel_a.charged_atomic, channel_a.signed_max_atomic, channel_a.signature) == (2250, 2250, "0xsig2250")
    assert channel_a.unsettled_atomic == 2250

    owed = {o.config.channel_id: o for o in await channels.owed_channels(pool, NETWORK)}
    assert set(owed) == {a.channel_id, b.channel_id}
    assert (owed[a.channel_id].charged_atomic, owed[a.channel_id].signature) == (2250, "0xsig2250")
    assert owed[b.channel_id].owed_atomic == 1000 and owed[b.channel_id].claimable_atomic == 1000
    assert await channels.owed_channels(pool, "eip155:8453") == []

    claim_tx = "0x" + secrets.token_hex(32)
    claim = [(a.channel_id, 2250), (b.channel_id, 1000)]
    recorded = await channels.record_claim(pool, NETWORK, claim, claim_tx, 50_000, RELAYER)
    assert sorted(recorded.payment_ids) == sorted(sold_a + sold_b) and recorded.amount_atomic == 3250
    assert set(await states(pool, sold_a + sold_b)) == {PaymentState.CLAIMED_ONCHAIN}
    assert await channels.owed_channels(pool, NETWORK) == []
    again = await channels.record_claim(pool, NETWORK, claim, "0x" + claim_tx[2:].upper(), 50_000, RELAYER)
    assert again.already_recorded and again.entry_id == recorded.entry_id and again.payment_ids == []
    assert await balance(pool, f"expense:gas:{NETWORK}", f"{NETWORK}/native") == 50_000
    assert (await verify(pool)).ok

    with pytest.raises(LedgerIntegrityError, match="sum to 0 in whole claims, 3250 in all"):
        await channels.record_settlement(pool, NETWORK, RECEIVER, TOKEN, "0x" + "99" * 32, 3000, 1, RELAYER)
    settle_tx = "0x" + secrets.token_hex(32)
    swept = await channels.record_settlement(
        pool, NETWORK, "0x" + RECEIVER[2:].upper(), TOKEN, settle_tx, 3250, 30_000, RELAYER
    )
    assert sorted(swept.payment_ids) == sorted(sold_a + sold_b)
    assert set(await states(pool, sold_a + sold_b)) == {PaymentState.SETTLED}
    assert await pool.fetchval("SELECT count(DISTINCT tx_hash) FROM payments WHERE id = ANY($1)", sold_a) == 1
    assert await balance(pool, receivable, token) == 0
    assert await balance(pool, f"onchain:{NETWORK}:{RECEIVER}", token) == 3250
    assert await balance(pool, f"revenue:{STREAM}", token) == -3250
    assert await balance(pool, f"expense:gas:{NETWORK}", f"{NETWORK}/native") == 80_000
    assert await balance(pool, f"onchain:{NETWORK}:{RELAYER}", f"{NETWORK}/native") == -80_000
    entries = await pool.fetchval("SELECT count(*) FROM journal_entries")
    assert (
        await channels.record_settlement(pool, NETWORK, RECEIVER, TOKEN, settle_tx, 3250, 30_000, RELAYER)
    ).already_recorded
    assert await pool.fetchval("SELECT count(*) FROM journal_entries") == entries
    result = await verify(pool)
    assert result.ok, result.violations
    assert result.counts["channels"] == 2 and result.counts["vouchers"] == 5

    events = await pool.fetch(
        "SELECT from_state, to_state, tx_hash FROM payment_events WHERE payment_id = $1 ORDER BY id", sold_a[0]
    )
    assert [(e["from_state"], e["to_state"]) for e in events] == [
        (None, "accepted"),  # booked once its data was ready
        ("accepted", "claimed_onchain"),
        ("claimed_onchain", "settled"),
    ]
    assert (events[-2]["tx_hash"], events[-1]["tx_hash"]) == (claim_tx, settle_tx)
    status = {s.channel_id: s for s in await channels.batch_status(pool)}
    assert (status[a.channel_id].charged_atomic, status[a.channel_id].claimed_atomic) == (2250, 2250)
    assert (status[a.channel_id].settled_atomic, status[a.channel_id].unsettled_atomic) == (2250, 0)
    assert (status[a.channel_id].owed_atomic, status[a.channel_id].vouchers) == (0, 3)
    assert status[b.channel_id].balance_atomic == 5_000 and status[b.channel_id].settled_atomic == 1000


async def test_a_partial_claim_moves_only_the_vouchers_it_covers(fresh: FreshDatabase) -> None:
    pool = fresh.pool
    cfg = config()
    await channels.mirror_channel(pool, cfg, balance_atomic=10_000, claimed_atomic=0)
    first, second = await sale(pool, cfg, 1000), await sale(pool, cfg, 1000)
    with pytest.raises(LedgerIntegrityError, match="which was charged 2000"):
        await channels.record_claim(pool, NETWORK, [(cfg.channel_id, 2500)], "0x" + "01" * 32, None, None)
    recorded = await channels.record_claim(pool, NETWORK, [(cfg.channel_id, 1000)], "0x" + "02" * 32, None, None)
    assert recorded.payment_ids == [first] and recorded.entry_id is None  # no gas given, none booked
    assert await states(pool, [first, second]) == ["claimed_onchain", "accepted"]
    [owed] = await channels.owed_channels(pool, NETWORK)
    assert (owed.claimed_atomic, owed.owed_atomic) == (1000, 1000)
    assert (await verify(pool)).ok
    # a second claim recorded after the first sweep was mined: that sweep takes the first claim only
    await channels.record_claim(pool, NETWORK, [(cfg.channel_id, 2000)], "0x" + "03" * 32, None, None)
    with pytest.raises(LedgerIntegrityError, match="sum to 1000 in whole claims, 2000 in all"):
        await channels.record_settlement(pool, NETWORK, RECEIVER, TOKEN, "0x" + "04" * 32, 1500, None, None)
    first_sweep = await channels.record_settlement(pool, NETWORK, RECEIVER, TOKEN, "0x" + "04" * 32, 1000, None, None)
    assert first_sweep.payment_ids == [first]
    assert await states(pool, [first, second]) == ["settled", "claimed_onchain"]
    assert (await verify(pool)).ok
    later = await channels.record_settlement(pool, NETWORK, RECEIVER, TOKEN, "0x" + "05" * 32, 1000, None, None)
    assert later.payment_ids == [second]
    assert (await verify(pool)).ok


async def test_a_replayed_voucher_is_refused(fresh: FreshDatabase) -> None:
    pool = fresh.pool
    cfg = config()
    await channels.mirror_channel(pool, cfg, balance_atomic=10_000, claimed_atomic=0)
    await sale(pool, cfg, 1000)
    replayed = await book(pool, cfg, 1000, 1000)  # the same voucher again: its ceiling is now what we charged
    assert isinstance(replayed, VoucherRefused) and replayed.reason == Refusal.CUMULATIVE_AMOUNT_MISMATCH
    # the payment key is the backstop: a voucher whose key another claim holds is refused by the UNIQUE key
    taken = voucher_record(cfg, 2000, 1000)
    assert await claims.claim(pool, taken) is not None
    before = await counts(pool)
    refused = await book(pool, cfg, 2000, 1000)
    assert isinstance(refused, VoucherRefused) and refused.reason == Refusal.VOUCHER_ALREADY_USED
    assert await counts(pool) == before
    channel = await channels.channel(pool, cfg.channel_id)
    assert channel is not None and channel.charged_atomic == 1000


async def test_a_cumulative_amount_other_than_charged_plus_price_is_refused(fresh: FreshDatabase) -> None:
    pool = fresh.pool
    cfg = config()
    await channels.mirror_channel(pool, cfg, balance_atomic=3_000, claimed_atomic=0)
    await sale(pool, cfg, 1000)
    before = await counts(pool)
    for max_atomic, reason in (
        (1500, Refusal.CUMULATIVE_AMOUNT_MISMATCH),  # lower than charged + price
        (1000, Refusal.CUMULATIVE_AMOUNT_MISMATCH),  # equal to charged
        (2500, Refusal.CUMULATIVE_AMOUNT_MISMATCH),  # a jump above the price
    ):
        refused = await book(pool, cfg, max_atomic, 1000)
        assert isinstance(refused, VoucherRefused) and refused.reason == reason, (max_atomic, refused)
        assert voucher_bookings.precheck(refused.channel, max_atomic, 1000) is not None  # the same rule, before serving
        # what a corrective 402 carries: the charged total and the last voucher
        assert refused.channel is not None
        assert (refused.channel.charged_atomic, refused.channel.signed_max_atomic) == (1000, 1000)
        assert refused.channel.signature == "0xsig1000"
    assert await counts(pool) == before  # a refusal writes nothing
    await sale(pool, cfg, 1500)  # 2500 of 3000
    above = await book(pool, cfg, 3500, 1000)
    assert isinstance(above, VoucherRefused) and above.reason == Refusal.CUMULATIVE_EXCEEDS_BALANCE
    unknown = await book(pool, config(), 1000, 1000)
    assert (
        isinstance(unknown, VoucherRefused) and unknown.reason == Refusal.CHANNEL_NOT_FOUND and unknown.channel is None
    )
    assert (await counts(pool))[0] == before[0] + 1  # only the sale of 1500
    with pytest.raises(LedgerError, match="key must be"):
        await voucher_bookings.book_voucher(
            pool, Booking(voucher_record(cfg, 9, 1000), cfg.channel_id, 3500, "0x", acceptance(cfg, 1000))
        )


async def test_twenty_concurrent_bookings_on_one_channel_book_one(fresh: FreshDatabase) -> None:
    pool = fresh.pool
    cfg = config()
    await channels.mirror_channel(pool, cfg, balance_atomic=10_000, claimed_atomic=0)
    results = await asyncio.gather(*(book(pool, cfg, 1000, 1000) for _ in range(20)))  # one voucher, twenty times
    winners = [r for r in results if isinstance(r, Booked)]
    assert len(winners) == 1
    assert {r.reason for r in results if isinstance(r, VoucherRefused)} == {Refusal.CUMULATIVE_AMOUNT_MISMATCH}
    assert await counts(pool) == (1, 1, 1)
    # distinct vouchers (a client racing itself): one booked, the rest refused, the channel charged once
    racing = await asyncio.gather(*(book(pool, cfg, 2000 + i, 1000 + i) for i in range(20)))
    [won] = [i for i, r in enumerate(racing) if isinstance(r, Booked)]
    channel = await channels.channel(pool, cfg.channel_id)
    assert channel is not None and (channel.charged_atomic, channel.unsettled_atomic) == (2000 + won, 2000 + won)
    assert (await verify(pool)).ok


async def test_the_unsettled_cap_refuses_until_a_sweep(fresh: FreshDatabase) -> None:
    pool = fresh.pool
    first, second, third = config(), config(), config()
    for cfg in (first, second, third):
        await channels.mirror_channel(pool, cfg, balance_atomic=10_000, claimed_atomic=0)
    await sale(pool, first, 1000)  # 1000 owed, unswept
    assert isinstance(await book(pool, second, 1000, 1000, max_unsettled_atomic=2500), Booked)  # 2000
    capped = await book(pool, third, 1000, 1000, max_unsettled_atomic=2500)
    assert isinstance(capped, VoucherRefused) and capped.reason == Refusal.UNSETTLED_CAP
    assert isinstance(await book(pool, third, 500, 500, max_unsettled_atomic=2500), Booked)  # 2500: the cap, held
    refused = await book(pool, second, 2000, 1000, max_unsettled_atomic=2500)
    assert isinstance(refused, VoucherRefused) and refused.reason == Refusal.UNSETTLED_CAP
    await channels.record_claim(pool, NETWORK, [(first.channel_id, 1000)], "0x" + "03" * 32, None, None)
    await channels.record_settlement(pool, NETWORK, RECEIVER, TOKEN, "0x" + "04" * 32, 1000, None, None)
    assert isinstance(await book(pool, second, 2000, 1000, max_unsettled_atomic=2500), Booked)  # swept: room again
    assert (await verify(pool)).ok


async def test_a_pending_withdrawal_bounds_what_may_be_charged(fresh: FreshDatabase) -> None:
    pool = fresh.pool
    cfg = config()
    await channels.mirror_channel(pool, cfg, balance_atomic=5_000, claimed_atomic=0)
    await sale(pool, cfg, 1000)
    # the payer starts withdrawing 3000: once its delay ends it may take min(3000, balance - claimed)
    mirrored = await channels.mirror_channel(
        pool, cfg, balance_atomic=5_000, claimed_atomic=0, withdraw_requested_at=1, withdrawal_amount_atomic=3000
    )
    assert mirrored.chargeable_atomic == 2000
    assert isinstance(await book(pool, cfg, 2000, 1000), Booked)
    above = await book(pool, cfg, 3000, 1000)
    assert isinstance(above, VoucherRefused) and above.reason == Refusal.CUMULATIVE_EXCEEDS_BALANCE
    assert voucher_bookings.precheck(above.channel, 3000, 1000) == VoucherRefused(
        Refusal.CUMULATIVE_EXCEEDS_BALANCE,
        above.channel,
        "maxClaimableAmount 3000 exceeds what the channel holds (2000)",
    )
    # what is claimed stays ours whatever the withdrawal takes
    claimed = await channels.mirror_channel(
        pool, cfg, balance_atomic=5_000, claimed_atomic=2000, withdraw_requested_at=1, withdrawal_amount_atomic=4500
    )
    assert claimed.chargeable_atomic == 2000
    assert (await verify(pool)).ok


async def test_the_mirror_never_lowers_charged_and_keeps_the_terms(fresh: FreshDatabase) -> None:
    pool = fresh.pool
    cfg = config()
    await channels.mirror_channel(pool, cfg, balance_atomic=10_000, claimed_atomic=0)
    await sale(pool, cfg, 1000)
    stale = await channels.mirror_channel(pool, cfg, balance_atomic=9_000, claimed_atomic=0, withdraw_requested_at=7)
    assert (stale.balance_atomic, stale.charged_atomic, stale.signed_max_atomic) == (9_000, 1000, 1000)
    assert stale.withdraw_requested_at == 7
    with pytest.raises(LedgerIntegrityError, match="other terms"):
        await channels.mirror_channel(pool, replace(cfg, payer="0x" + "00" * 20), balance_atomic=1, claimed_atomic=0)
    # someone claimed beyond what we know: charged rises to it and the useless voucher is dropped
    beyond = await channels.mirror_channel(pool, cfg, balance_atomic=9_000, claimed_atomic=1500)
    assert (beyond.claimed_atomic, beyond.charged_atomic, beyond.signed_max_atomic) == (1500, 1500, None)
    assert isinstance(await book(pool, cfg, 2000, 500), Booked)
    owed_first = config()
    await channels.mirror_channel(pool, owed_first, balance_atomic=400, claimed_atomic=0)
    await sale(pool, owed_first, 400)
    await channels.mirror_channel(pool, owed_first, balance_atomic=100, claimed_atomic=0, withdraw_requested_at=1)
    owed, booked = await channels.owed_channels(pool, NETWORK)  # a withdrawing channel is claimed first
    assert owed.config.channel_id == owed_first.channel_id and owed.claimable_atomic == 100
    assert (booked.config.channel_id, booked.owed_atomic) == (cfg.channel_id, 500)


async def test_illegal_transitions_are_refused_by_the_trigger(fresh: FreshDatabase) -> None:
    pool = fresh.pool
    cfg = config()
    await channels.mirror_channel(pool, cfg, balance_atomic=10_000, claimed_atomic=0)
    accepted = await sale(pool, cfg, 1000)
    for state in ("settled", "released", "claimed", "served"):
        with pytest.raises(asyncpg.IntegrityConstraintViolationError, match=f"illegal transition accepted -> {state}"):
            await pool.execute(
                "UPDATE payments SET state = $2, settled_at = now(), tx_hash = '0x1' WHERE id = $1"
                if state == "settled"
                else "UPDATE payments SET state = $2 WHERE id = $1",
                accepted,
                state,
            )
    claimed = await claims.claim(pool, voucher_record(cfg, 2000, 1000))
    assert claimed is not None
    with pytest.raises(asyncpg.IntegrityConstraintViolationError, match="illegal transition claimed -> accepted"):
        await pool.execute("UPDATE payments SET state = 'accepted' WHERE id = $1", claimed)
    for before, after in (("claimed", "verified"), ("verified", "served")):
        assert await claims.advance(pool, claimed, before, after)
    with pytest.raises(asyncpg.IntegrityConstraintViolationError, match="accepted without"):  # no entry, at commit
        await pool.execute("UPDATE payments SET state = 'accepted' WHERE id = $1", claimed)
    for state, refusal in (("settled", "inserted claimed or accepted, not settled"), ("swept", "not swept")):
        with pytest.raises(asyncpg.IntegrityConstraintViolationError, match=refusal):  # born claimed or accepted
            await pool.execute(
                "INSERT INTO payments (payment_key, scheme_id, network, asset, payer, pay_to, amount_atomic, route,"
                " resource, settlement_mode, state) SELECT payment_key || ':x', scheme_id, network, asset, payer,"
                " pay_to, amount_atomic, route, resource, settlement_mode, $2 FROM payments WHERE id = $1",
                claimed,
                state,
            )
    with pytest.raises(asyncpg.IntegrityConstraintViolationError, match="accepted without"):  # no entry, at commit
        await pool.execute(
            "INSERT INTO payments (payment_key, scheme_id, network, asset, payer, pay_to, amount_atomic, route,"
            " resource, settlement_mode, state) SELECT payment_key || ':y', scheme_id, network, asset, payer,"
            " pay_to, amount_atomic, route, resource, settlement_mode, 'accepted' FROM payments WHERE id = $1",
            claimed,
        )
    with pytest.raises(LedgerIntegrityError, match="the price is 1000"):  # revenue and receivable: the price
        await voucher_bookings.book_voucher(
            pool, Booking(voucher_record(cfg, 2000, 1000), cfg.channel_id, 2000, "0xsig", acceptance(cfg, 999))
        )
    edges = {(r["from_state"], r["to_state"]) for r in await pool.fetch("SELECT * FROM payment_transitions")}
    assert edges >= channels.BATCH_TRANSITIONS and edges >= claims.TRANSITIONS
    assert edges == claims.TRANSITIONS | channels.BATCH_TRANSITIONS
    constraint = await pool.fetchval(
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'payments_state_check'"
    )
    assert all(f"'{state}'" in constraint for state in PaymentState)


async def test_the_batch_books_and_channels_are_guarded(fresh: FreshDatabase) -> None:
    pool = fresh.pool
    cfg = config()
    await channels.mirror_channel(pool, cfg, balance_atomic=10_000, claimed_atomic=0)
    payment_id = await sale(pool, cfg, 1000)
    await channels.record_claim(pool, NETWORK, [(cfg.channel_id, 1000)], "0x" + "05" * 32, 10, RELAYER)
    refused = {
        "UPDATE journal_postings SET amount_atomic = amount_atomic + 1": "append-only|immutable|refused",
        "DELETE FROM journal_entries": "refused",
        "UPDATE batch_channels SET charged_atomic = 0": "never decrease",
        "UPDATE batch_channels SET claimed_atomic = 0": "never decrease",
        "UPDATE batch_channels SET payer = '0x00'": "immutable",
        "DELETE FROM batch_channels": "refused",
        "UPDATE batch_vouchers SET max_claimable_atomic = 1": "only its signature",
        "DELETE FROM batch_vouchers": "refused",
        "UPDATE batch_transactions SET amount_atomic = 0": "refused",
        "DELETE FROM batch_transactions": "refused",
    }
    for statement, message in refused.items():
        with pytest.raises(asyncpg.IntegrityConstraintViolationError, match=message):
            await pool.execute(statement)
    with pytest.raises(asyncpg.CheckViolationError):  # charged above the voucher ceiling
        await pool.execute("UPDATE batch_channels SET charged_atomic = 5000")
    with pytest.raises(
        asyncpg.IntegrityConstraintViolationError, match="illegal transition claimed_onchain -> released"
    ):
        await pool.execute("UPDATE payments SET state = 'released' WHERE id = $1", payment_id)
    assert (await verify(pool)).ok


async def test_verify_names_tampered_batch_rows(fresh: FreshDatabase, superuser: asyncpg.Connection) -> None:
    pool = fresh.pool
    cfg = config()
    await channels.mirror_channel(pool, cfg, balance_atomic=10_000, claimed_atomic=0)
    await sale(pool, cfg, 1000)
    swept = await sale(pool, cfg, 500)
    await channels.record_claim(pool, NETWORK, [(cfg.channel_id, 1500)], "0x" + "06" * 32, None, None)
    await channels.record_settlement(pool, NETWORK, RECEIVER, TOKEN, "0x" + "07" * 32, 1500, None, None)
    assert (await verify(pool)).ok
    await superuser.execute("ALTER TABLE batch_channels DISABLE TRIGGER ALL")
    await superuser.execute("UPDATE batch_channels SET unsettled_atomic = 1")
    await superuser.execute("ALTER TABLE batch_channels ENABLE TRIGGER ALL")
    await superuser.execute("ALTER TABLE payments DISABLE TRIGGER ALL")
    await superuser.execute("UPDATE payments SET state = 'claimed_onchain', settled_at = NULL WHERE id = $1", swept)
    exact = await claims.claim(pool, record())  # an `exact` payment forged into a batch state
    await superuser.execute("UPDATE payments SET state = 'accepted' WHERE id = $1", exact)
    await superuser.execute("ALTER TABLE payments ENABLE TRIGGER ALL")
    result = await verify(pool)
    failed = {v.check for v in result.violations}
    assert failed == {"batch_payment", "batch_receivable", "batch_channel", "batch_sweep", "event_chain"}, failed
    assert [v.detail for v in result.by_check("batch_payment")] == [
        f"payment {exact} (accepted) is accepted but has no batch voucher"
    ]
    [receivable] = [v.detail for v in result.by_check("batch_receivable")]
    assert receivable.endswith("holds 0; its accepted and claimed sales sum to 500")
    [channel] = [v.detail for v in result.by_check("batch_channel")]
    assert channel == f"channel {cfg.channel_id}: unsettled is 1 but its accepted and claimed sales sum to 500"
