"""Booking batch-settlement vouchers: a voucher's sale is written once its data is ready, never before.

The request path: `precheck` against the channel as last known (is this voucher the channel's next, within what
it may be charged?) → the handler runs → `book_vouchers`, under each channel's row lock (migration 0009): the
rule checked again, the payment inserted accepted, the voucher kept, the channel charged, the sale booked as
revenue against `receivable:batch:<network>:<payTo>`. A refusal writes nothing; of two requests racing on one
channel the second is refused. Vouchers of concurrent requests are booked together, in one statement and one
commit (app/usecases/voucher_booker.py groups them), each refused or booked on its own: decided one by one, written
with one statement per table (migration 0016).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from .channels import Channel, Refusal, VoucherRefused, channels_by_id, payment_key
from .claims import PaymentRecord
from .errors import LedgerError, LedgerIntegrityError, LedgerUnavailable, translated
from .journal import Posting, assert_balanced, asset_id, receivable_account
from .sql import queries

_REFUSED = {
    Refusal.CHANNEL_NOT_FOUND: "no such channel is known",
    Refusal.CUMULATIVE_AMOUNT_MISMATCH: "maxClaimableAmount is not what the channel was charged plus this price",
    Refusal.CUMULATIVE_EXCEEDS_BALANCE: "maxClaimableAmount exceeds what the channel holds",
    Refusal.UNSETTLED_CAP: "the gateway holds its cap of unsettled value",
    Refusal.VOUCHER_ALREADY_USED: "this voucher was already used",
}


@dataclass(frozen=True, slots=True)
class Booking:
    """A served voucher to book: its payment, its channel and ceiling, its signature, the sale's postings."""

    record: PaymentRecord
    channel_id: str
    max_claimable_atomic: int
    signature: str
    postings: Sequence[Posting]

    def checked(self) -> Booking:
        """This booking, its channel id lowercased, once its key and postings are known to fit its price."""
        channel_id, record, price = self.channel_id.lower(), self.record, self.record.amount_atomic
        if record.payment_key != (key := payment_key(record.network, channel_id, self.max_claimable_atomic)):
            raise LedgerError(f"a batch payment's key must be {key}")
        if price <= 0:
            raise LedgerError("a batch payment's amount is the request's price, which must be positive")
        assert_balanced(self.postings)
        owed = (receivable_account(record.network, record.pay_to), asset_id(record.network, record.asset))
        revenue = -sum(p.amount_atomic for p in self.postings if p.account.startswith("revenue:"))
        receivable = sum(p.amount_atomic for p in self.postings if (p.account, p.asset) == owed)
        if revenue != price or receivable != price:
            raise LedgerIntegrityError(f"the postings book {revenue} revenue, {receivable} owed; the price is {price}")
        return Booking(record, channel_id, self.max_claimable_atomic, self.signature, self.postings)


@dataclass(frozen=True, slots=True)
class Booked:
    payment_id: int  # the sale, accepted


def precheck(found: Channel, max_claimable_atomic: int, price_atomic: int) -> VoucherRefused | None:
    """The cumulative rule, before the handler runs (the booking checks it again under the channel's lock)."""
    if max_claimable_atomic != found.charged_atomic + price_atomic:
        detail = f"maxClaimableAmount {max_claimable_atomic} is not charged {found.charged_atomic} + {price_atomic}"
        return VoucherRefused(Refusal.CUMULATIVE_AMOUNT_MISMATCH, found, detail)
    if max_claimable_atomic > found.chargeable_atomic:
        detail = f"maxClaimableAmount {max_claimable_atomic} exceeds what the channel holds ({found.chargeable_atomic})"
        return VoucherRefused(Refusal.CUMULATIVE_EXCEEDS_BALANCE, found, detail)
    return None


@dataclass(frozen=True, slots=True)
class ChannelHeld:
    """Not booked: another transaction holds the channel (a cooperative refund on its chain transaction, a claim
    being recorded). Nothing was written; book it alone with `book_voucher`, which waits."""


async def book_vouchers(
    pool: asyncpg.Pool | asyncpg.Connection, bookings: Sequence[Booking], *, max_unsettled_atomic: int | None = None
) -> list[Booked | VoucherRefused | ChannelHeld]:
    """Book served vouchers in one statement, in the order given (sort them by channel: concurrent callers then
    lock channels in one order), each under its channel's row lock: the cumulative rule (max = charged + price,
    within what the channel may be charged), the operator's cap on unsettled value (all channels), the payment
    inserted accepted, the voucher kept, the channel charged, the sale booked with its postings (e.g.
    `journal.batch_acceptance_postings`). A refusal writes nothing and refuses that voucher alone; a voucher
    whose channel is held elsewhere is not waited for (ChannelHeld); an error (LedgerError) books none of them.
    Results come in the bookings' order."""
    checked = [b.checked() for b in bookings]
    if not checked:
        return []
    columns = zip(*(_columns(b) for b in checked), strict=True)
    lines = [(n, p) for n, b in enumerate(checked, 1) for p in b.postings]  # each posting with its voucher's place
    postings = ([n for n, _ in lines], [p.account for _, p in lines], [p.asset for _, p in lines])
    with translated():
        rows = await pool.fetch(
            queries["batch_book_vouchers"],
            *columns,
            *postings,
            [p.amount_atomic for _, p in lines],
            max_unsettled_atomic,
        )
        if len(rows) != len(checked):
            raise LedgerIntegrityError(f"{len(checked)} vouchers given, {len(rows)} verdicts back")
        return await _results(pool, checked, rows)


class GroupConnections:
    """Pool connections kept for booking groups back to back: `book_vouchers` on one of them, taken from the pool
    once and kept while it books cleanly (any failure gives it back, and the pool resets or replaces it).

    Measured with bench/batch.py: taking a connection and giving it back around every group cost a round trip
    (asyncpg's session reset) in the path of every voucher waiting on the group, ~5% of vouchers/s. The booking
    statement leaves nothing in the session to reset (no session lock, setting or cursor). `close` gives them
    all back; call it before the pool closes, which waits for them."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._idle: list[asyncpg.Connection] = []
        self._closed = False

    async def book_vouchers(
        self, bookings: Sequence[Booking], *, max_unsettled_atomic: int | None = None
    ) -> list[Booked | VoucherRefused | ChannelHeld]:
        for sends in (1, 2):
            connection = await self._connection()
            try:
                results = await book_vouchers(connection, bookings, max_unsettled_atomic=max_unsettled_atomic)
            except BaseException as exc:
                await self._give_back(connection)
                # The driver refused to send (the server had just dropped the kept connection): nothing reached
                # Postgres, so the group goes once more on a fresh connection. Any other failure is the caller's.
                refused = isinstance(exc, LedgerUnavailable) and isinstance(exc.__cause__, asyncpg.InternalClientError)
                if sends == 2 or not refused:
                    raise
                continue
            if self._closed:  # a group that finished after close: its connection goes back too
                await self._give_back(connection)
            else:
                self._idle.append(connection)
            return results
        raise AssertionError("unreachable: the second send returns or raises")

    async def _connection(self) -> asyncpg.Connection:
        """A kept connection still open, else a fresh one from the pool (one the server closed goes back)."""
        while self._idle:
            connection = self._idle.pop()
            if _open(connection):
                return connection
            await self._give_back(connection)
        with translated():
            return await self._pool.acquire()

    async def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for connection in idle:
            await self._give_back(connection)

    async def _give_back(self, connection: asyncpg.Connection) -> None:
        with contextlib.suppress(LedgerUnavailable), translated():
            await self._pool.release(connection)


def _open(connection: asyncpg.Connection) -> bool:
    try:
        return not connection.is_closed()
    except asyncpg.InterfaceError:  # the pool took it back when the server closed it
        return False


async def book_voucher(
    pool: asyncpg.Pool, booking: Booking, *, max_unsettled_atomic: int | None = None
) -> Booked | VoucherRefused:
    """One served voucher, booked as `book_vouchers` books it, waiting for its channel if another holds it."""
    checked = booking.checked()
    with translated():
        row = await pool.fetchrow(queries["batch_book_voucher"], *_arguments(checked), max_unsettled_atomic)
        [result] = await _results(pool, [checked], [row])
    assert not isinstance(result, ChannelHeld)  # it waited
    return result


def _arguments(booking: Booking) -> tuple[object, ...]:
    """One voucher's arguments, in the order of wg_batch_book_voucher's (its postings as JSON)."""
    postings = json.dumps([[p.account, p.asset, str(p.amount_atomic)] for p in booking.postings])
    return (*_columns(booking), postings)


def _columns(booking: Booking) -> tuple[object, ...]:
    """A voucher's own columns, in the order the booking functions take them (their postings apart)."""
    record = booking.record
    return (
        booking.channel_id,
        record.payment_key,
        record.scheme_id,
        record.network,
        record.asset.lower(),
        record.payer,
        record.pay_to.lower(),
        record.amount_atomic,
        record.route,
        record.resource,
        record.stream,
        record.settlement_mode,
        booking.max_claimable_atomic,
        booking.signature,
    )


async def _results(
    pool: asyncpg.Pool | asyncpg.Connection, checked: Sequence[Booking], rows: Sequence[asyncpg.Record]
) -> list[Booked | VoucherRefused | ChannelHeld]:
    refused = [b.channel_id for b, row in zip(checked, rows, strict=True) if row["verdict"] not in _NOT_REFUSED]
    found = await channels_by_id(pool, refused) if refused else {}
    results: list[Booked | VoucherRefused | ChannelHeld] = []
    for booking, row in zip(checked, rows, strict=True):
        if row["verdict"] == "accepted":
            results.append(Booked(row["booked_id"]))
        elif row["verdict"] == "channel_locked":
            results.append(ChannelHeld())
        else:
            reason = Refusal(row["verdict"])
            results.append(VoucherRefused(reason, found.get(booking.channel_id), _REFUSED[reason]))
    return results


_NOT_REFUSED = ("accepted", "channel_locked")
