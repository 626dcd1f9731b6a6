"""Vouchers booked as a group (migration 0016's wg_batch_book_group) against a real Postgres: a group decides every
voucher as booking them one at a time (0009's wg_batch_book_voucher) would, writes the same rows and balances, and
falls back to the per-voucher path when a group holds a payment key the ledger already knows; and the booker
(app/usecases/voucher_booker.py) that forms the groups: a failing voucher isolated, a held channel never stalling
a group, a cancelled request's voucher still booked, its kept connection replaced when it breaks."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from dataclasses import replace

import asyncpg
import pytest

from app.usecases.voucher_booker import VoucherBooker
from ledger import LedgerIntegrityError, LedgerUnavailable, channels, voucher_bookings
from ledger.channels import ChannelConfig, Refusal, VoucherRefused
from ledger.verify import verify
from ledger.voucher_bookings import Booked, Booking

from .ledger_helpers import FreshDatabase, fresh_database
from .services import Database
from .test_ledger_batch import booking, config, counts

PRICES = (500, 1000, 1500)


@pytest.fixture
async def two(database: Database) -> AsyncIterator[tuple[FreshDatabase, FreshDatabase]]:
    async with fresh_database(database) as grouped, fresh_database(database) as single:
        yield grouped, single


@pytest.fixture
async def fresh(database: Database) -> AsyncIterator[FreshDatabase]:
    async with fresh_database(database) as db:
        yield db


def draw(rng: random.Random, cfgs: list[ChannelConfig], charged: dict[str, int], size: int) -> list[Booking]:
    """A group as concurrent requests make one: mostly each channel's next vouchers, some replayed, skipping ahead,
    repeated, above the deposit or for a channel never seen; sorted as the booker sorts them."""
    group = []
    for _ in range(size):
        cfg = rng.choice(cfgs)
        price = rng.choice(PRICES)
        expected = charged[cfg.channel_id] + price
        roll = rng.random()
        if roll < 0.55:
            charged[cfg.channel_id] = expected  # the client's own view: it signs on from here
            top = expected
        elif roll < 0.7:
            top = max(price, charged[cfg.channel_id])  # a replay of the last one (or the first, again)
        elif roll < 0.8:
            top = expected + price  # skips one
        elif roll < 0.9:
            top = expected + 50_000  # above any deposit here
        else:
            cfg, top = config(), price  # a channel the ledger never saw
        group.append(booking(cfg, top, price))
    return sorted(group, key=lambda b: (b.channel_id.lower(), b.max_claimable_atomic))


async def state(pool: asyncpg.Pool) -> tuple[object, ...]:
    """Everything a booking writes, without ids and clocks."""
    rows = await pool.fetch(
        "SELECT channel_id, charged_atomic, unsettled_atomic, signed_max_atomic, signature FROM batch_channels"
        " ORDER BY channel_id"
    )
    vouchers = await pool.fetch(
        "SELECT v.channel_id, v.max_claimable_atomic, v.signature, p.payment_key, p.state, p.amount_atomic"
        " FROM batch_vouchers v JOIN payments p ON p.id = v.payment_id ORDER BY p.payment_key"
    )
    balances = await pool.fetch(
        "SELECT account, asset, sum(balance_atomic) AS balance, sum(postings) AS postings FROM account_balances"
        " GROUP BY account, asset ORDER BY account, asset"
    )
    events = await pool.fetchval(
        "SELECT count(*) FROM payment_events WHERE from_state IS NULL AND to_state = 'accepted'"
    )
    return tuple(map(tuple, rows)), tuple(map(tuple, vouchers)), tuple(map(tuple, balances)), events


def verdict(result: Booked | VoucherRefused) -> str:
    return "accepted" if isinstance(result, Booked) else result.reason.value


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_a_group_books_what_one_at_a_time_would(two: tuple[FreshDatabase, FreshDatabase], seed: int) -> None:
    grouped, single = two
    rng = random.Random(seed)
    cfgs = [config() for _ in range(4)]
    for cfg in cfgs:
        balance = rng.choice((4_000, 8_000, 20_000))
        for db in (grouped, single):
            await channels.mirror_channel(db.pool, cfg, balance_atomic=balance, claimed_atomic=0)
    charged = {cfg.channel_id: 0 for cfg in cfgs}
    seen: set[str] = set()
    for _ in range(8):
        group = draw(rng, cfgs, charged, rng.randint(1, 12))
        cap = rng.choice((None, None, 30_000))
        together = await voucher_bookings.book_vouchers(grouped.pool, group, max_unsettled_atomic=cap)
        alone = [await voucher_bookings.book_voucher(single.pool, b, max_unsettled_atomic=cap) for b in group]
        assert [verdict(r) for r in together] == [verdict(r) for r in alone]  # type: ignore[arg-type]
        seen.update(verdict(r) for r in alone)
        # the client re-bases on what was really charged, as a corrective 402 makes it
        for cfg in cfgs:
            found = await channels.channel(single.pool, cfg.channel_id)
            assert found is not None
            charged[cfg.channel_id] = found.charged_atomic
    assert await state(grouped.pool) == await state(single.pool)
    assert await counts(grouped.pool) == await counts(single.pool)
    assert (await verify(grouped.pool)).ok and (await verify(single.pool)).ok
    # the draws reached the rules they are meant to compare, not only acceptances
    assert {"accepted", "cumulative_amount_mismatch", "channel_not_found"} <= seen


async def test_a_group_with_a_known_key_is_booked_voucher_by_voucher(two: tuple[FreshDatabase, FreshDatabase]) -> None:
    pool = two[0].pool
    a, b = config(), config()
    for cfg in (a, b):
        await channels.mirror_channel(pool, cfg, balance_atomic=10_000, claimed_atomic=0)
    [first] = await voucher_bookings.book_vouchers(pool, [booking(a, 1000, 1000)])
    assert isinstance(first, Booked)
    # a's first voucher again (its key is in the ledger) beside new ones: each decided on its own, as before
    group = sorted([booking(a, 1000, 1000), booking(a, 2000, 1000), booking(b, 1000, 1000)], key=lambda x: x.channel_id)
    results = dict(
        zip(
            ((x.channel_id, x.max_claimable_atomic) for x in group),
            await voucher_bookings.book_vouchers(pool, group),
            strict=True,
        )
    )
    replayed = results[(a.channel_id, 1000)]
    assert isinstance(replayed, VoucherRefused) and replayed.reason is channels.Refusal.CUMULATIVE_AMOUNT_MISMATCH
    assert isinstance(results[(a.channel_id, 2000)], Booked) and isinstance(results[(b.channel_id, 1000)], Booked)
    assert await counts(pool) == (3, 3, 3)
    assert (await verify(pool)).ok


async def test_a_voucher_whose_request_is_cancelled_while_waiting_is_still_booked(
    two: tuple[FreshDatabase, FreshDatabase],
) -> None:
    """Its data was ready: the booker's own task books it, so a request cancelled (a shutdown, a client gone) never
    leaves a served voucher unbooked; its answer is served again on retry, not charged again."""
    pool = two[0].pool
    cfgs = [config() for _ in range(3)]
    for cfg in cfgs:
        await channels.mirror_channel(pool, cfg, balance_atomic=10_000, claimed_atomic=0)
    booker = VoucherBooker(pool, in_flight_max=1)
    first = asyncio.ensure_future(booker.book(booking(cfgs[0], 1000, 1000)))  # its group goes out at once
    waiting = [asyncio.ensure_future(booker.book(booking(cfg, 1000, 1000))) for cfg in cfgs[1:]]  # the next group
    await asyncio.sleep(0)
    for task in (first, *waiting):
        task.cancel()
    await asyncio.gather(first, *waiting, return_exceptions=True)
    for _ in range(100):
        if await counts(pool) == (3, 3, 3):
            break
        await asyncio.sleep(0.05)
    await booker.close()
    assert await counts(pool) == (3, 3, 3)
    assert all(t.cancelled() for t in (first, *waiting))
    assert (await verify(pool)).ok


async def test_the_connection_kept_for_groups_is_replaced_after_it_breaks(
    two: tuple[FreshDatabase, FreshDatabase],
) -> None:
    """A group's connection is kept between groups; one Postgres dropped meanwhile is given back and the next group
    books on a fresh one, whether or not the driver has noticed the drop yet (it may refuse to send: then nothing
    reached Postgres and the group goes once more)."""
    pool = two[0].pool
    cfgs = [config() for _ in range(3)]
    for cfg in cfgs:
        await channels.mirror_channel(pool, cfg, balance_atomic=10_000, claimed_atomic=0)
    groups = voucher_bookings.GroupConnections(pool)
    booked = [await groups.book_vouchers([booking(cfgs[0], 1000, 1000)])]
    for cfg, noticed in ((cfgs[1], False), (cfgs[2], True)):
        [kept] = groups._idle
        backend = await kept.fetchval("SELECT pg_backend_pid()")
        assert await pool.fetchval("SELECT pg_terminate_backend($1)", backend)
        for _ in range(100 if noticed else 0):  # the second time, book only once the driver has seen it closed
            if not voucher_bookings._open(kept):
                break
            await asyncio.sleep(0.05)
        assert not voucher_bookings._open(kept) or not noticed
        try:
            booked.append(await groups.book_vouchers([booking(cfg, 1000, 1000)]))
        except LedgerUnavailable:  # sent before the drop was known (the backend was already gone: nothing written)
            assert not noticed and groups._idle == []  # the broken connection went back to the pool
            booked.append(await groups.book_vouchers([booking(cfg, 1000, 1000)]))  # the same voucher, on a fresh one
        [fresh] = groups._idle
        assert fresh is not kept and voucher_bookings._open(fresh)
    assert all(isinstance(r, Booked) for [r] in booked) and len(booked) >= 2
    assert await counts(pool) == (len(booked),) * 3
    await groups.close()
    assert groups._idle == []


async def test_vouchers_booked_together_are_each_booked_or_refused_on_their_own(fresh: FreshDatabase) -> None:
    pool = fresh.pool
    a, b = config(), config()
    for cfg in (a, b):
        await channels.mirror_channel(pool, cfg, balance_atomic=2_000, claimed_atomic=0)
    group = [booking(a, 1000, 1000), booking(a, 2000, 1000), booking(a, 2000, 1000), booking(b, 1500, 1500)]
    group += [booking(b, 2500, 1000), booking(config(), 1000, 1000)]  # above b's balance; an unknown channel
    results = await voucher_bookings.book_vouchers(pool, group)
    assert [type(r).__name__ for r in results] == ["Booked", "Booked", "VoucherRefused", "Booked"] + [
        "VoucherRefused"
    ] * 2
    assert [r.reason for r in results if isinstance(r, VoucherRefused)] == [
        Refusal.CUMULATIVE_AMOUNT_MISMATCH,  # the same voucher twice in one group: booked once
        Refusal.CUMULATIVE_EXCEEDS_BALANCE,
        Refusal.CHANNEL_NOT_FOUND,
    ]
    assert results[2].channel is not None and results[2].channel.charged_atomic == 2000  # for a corrective 402
    assert await counts(pool) == (3, 3, 3)
    assert (await verify(pool)).ok


async def test_the_booker_groups_concurrent_vouchers_and_isolates_a_failing_one(fresh: FreshDatabase) -> None:
    pool = fresh.pool
    cfgs = [config() for _ in range(12)]
    for cfg in cfgs:
        await channels.mirror_channel(pool, cfg, balance_atomic=10_000, claimed_atomic=0)
    booker = VoucherBooker(pool, group_max=8, in_flight_max=1)
    groups: list[int] = []
    real = voucher_bookings.book_vouchers

    async def counted(*args: object, **kwargs: object) -> list[Booked | VoucherRefused]:
        groups.append(len(args[1]))  # type: ignore[arg-type]
        return await real(*args, **kwargs)  # type: ignore[arg-type]

    wrong_terms = booking(replace(cfgs[0], receiver="0x" + "99" * 20), 1000, 1000)  # fails its whole statement
    voucher_bookings.book_vouchers = counted  # type: ignore[assignment]
    try:
        results = await asyncio.gather(
            *(booker.book(booking(cfg, 1000, 1000)) for cfg in cfgs[1:]),
            booker.book(wrong_terms),
            return_exceptions=True,
        )
    finally:
        voucher_bookings.book_vouchers = real  # type: ignore[assignment]
        await booker.close()
    assert all(isinstance(r, Booked) for r in results[:-1]), results
    assert isinstance(results[-1], LedgerIntegrityError), results[-1]
    assert groups[0] == 1 and sum(groups) == 12 and len(groups) < 12  # the first alone, the rest together
    assert await counts(pool) == (11, 11, 11)
    assert (await verify(pool)).ok


async def test_a_channel_held_elsewhere_never_stalls_the_others_booked_with_it(fresh: FreshDatabase) -> None:
    pool = fresh.pool
    held, free = config(), [config() for _ in range(4)]
    for cfg in (held, *free):
        await channels.mirror_channel(pool, cfg, balance_atomic=10_000, claimed_atomic=0)
    grouped = await voucher_bookings.book_vouchers(pool, [])
    assert grouped == []
    booker = VoucherBooker(pool, in_flight_max=1)
    async with pool.acquire() as refund, refund.transaction():  # as a cooperative refund holds its channel
        await refund.execute("SELECT 1 FROM batch_channels WHERE channel_id = $1 FOR UPDATE", held.channel_id)
        waiting = asyncio.ensure_future(booker.book(booking(held, 1000, 1000)))
        others = await asyncio.wait_for(asyncio.gather(*(booker.book(booking(cfg, 1000, 1000)) for cfg in free)), 10)
        assert all(isinstance(r, Booked) for r in others)
        await asyncio.sleep(0.2)
        assert not waiting.done()  # it waits for the channel, alone
    assert isinstance(await asyncio.wait_for(waiting, 10), Booked)
    await booker.close()
    assert await counts(pool) == (5, 5, 5)
    assert (await verify(pool)).ok


async def test_a_group_the_driver_refused_to_send_goes_once_more_on_a_fresh_connection(
    two: tuple[FreshDatabase, FreshDatabase], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race CI met: the server dropped the kept connection and the driver, mid-way through noticing, refused to
    send the group (InternalClientError, nothing sent). The group is booked on a fresh connection, once."""
    pool = two[0].pool
    cfg = config()
    await channels.mirror_channel(pool, cfg, balance_atomic=10_000, claimed_atomic=0)
    groups = voucher_bookings.GroupConnections(pool)
    real, used = voucher_bookings.book_vouchers, []

    async def refused_once(connection: object, *args: object, **kwargs: object) -> object:
        used.append(connection)
        if len(used) == 1:
            try:
                raise asyncpg.InternalClientError("cannot switch to state 12; another operation (2) is in progress")
            except asyncpg.InternalClientError as exc:
                raise LedgerUnavailable("Postgres unavailable (InternalClientError)") from exc
        return await real(connection, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(voucher_bookings, "book_vouchers", refused_once)
    [result] = await groups.book_vouchers([booking(cfg, 1000, 1000)])
    assert isinstance(result, Booked) and len(used) == 2 and used[0] is not used[1]
    assert await counts(pool) == (1, 1, 1)
    await groups.close()


async def test_the_known_key_check_stays_an_index_probe_as_payments_grows(fresh: FreshDatabase) -> None:
    """A plan made while payments is small must not be kept once it is large: planned once per session, as
    PL/pgSQL plans a plain statement, the check read every payment (migration 0018)."""
    cfg = config()
    await channels.mirror_channel(fresh.pool, cfg, balance_atomic=10**9, claimed_atomic=0)
    connection = await asyncpg.connect(fresh.admin_url)  # superuser: to load auto_explain into the session
    try:
        charged = 0

        async def group() -> None:
            nonlocal charged
            bookings = [booking(cfg, charged + 1000 * (n + 1), 1000) for n in range(4)]
            charged += 4000
            assert all(isinstance(r, Booked) for r in await voucher_bookings.book_vouchers(connection, bookings))

        for _ in range(6):  # past the five runs after which a session may keep one plan for all
            await group()
        await connection.execute(  # grown behind the session's back, with no ANALYZE since
            "INSERT INTO payments (payment_key, scheme_id, network, asset, payer, pay_to, amount_atomic, route,"
            " resource, settlement_mode, state) SELECT 'grown:' || n, 'v2-eip155-exact', 'eip155:84532', 'usdc',"
            " 'payer', 'payto', 1000, '/r', '/r', 'sync', 'claimed' FROM generate_series(1, 20000) AS n"
        )
        plans: list[str] = []
        connection.add_log_listener(lambda _c, message: plans.append(message.message))
        await connection.execute(
            "LOAD 'auto_explain'; SET auto_explain.log_min_duration = 0; SET auto_explain.log_nested_statements = on;"
            " SET auto_explain.log_level = 'notice'"
        )
        await group()
        [check] = [p for p in plans if "FROM payments WHERE payment_key = ANY" in p]
        assert "Seq Scan on payments" not in check and "payments_payment_key_key" in check, check
    finally:
        await connection.close()
