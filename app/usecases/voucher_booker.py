"""Vouchers of concurrent requests booked together: one statement and one commit for many (group commit).

Each served voucher waits for its booking before its answer leaves. Booked one by one, under load, most of a
voucher's cost was the statement and the commit around its few rows; booked together, that cost is shared.
A voucher arriving while no group is in flight is booked at once (no added latency when idle); those arriving
while `in_flight_max` groups are in flight wait for the next group, up to `group_max` per group. A group is
sorted by channel, so concurrent groups (other processes, replicas) take channel locks in one order, and never
waits for a channel another transaction holds (a cooperative refund on its chain transaction): such a voucher
is booked alone, waiting, beside the groups. If a group's statement fails (an integrity error in one voucher,
a deadlock), its vouchers are booked one by one, so one bad voucher never costs the others their booking.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

import asyncpg

import ledger
from ledger.channels import VoucherRefused
from ledger.voucher_bookings import Booked, Booking, ChannelHeld, GroupConnections, book_voucher

log = logging.getLogger("worldgate.batch")
GROUP_MAX = 64
# One group at a time per process: measured with bench/batch.py (c16, 2 cores) after migration 0016, 1 in flight
# booked ~1,450 vouchers/s against ~1,180 with 2 and ~1,120 with 3 (smaller groups pay the statement and the
# commit more often; 64 or 8 at most per group made no difference); after 0018, 1,650 to 1,770 against 1,390
# with 2 (`--vouchers-only --requests 16000`). Other workers and replicas run their own.
IN_FLIGHT_MAX = 1

_Waiting = tuple[Booking, "asyncio.Future[Booked | VoucherRefused]"]


class VoucherBooker:
    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        max_unsettled_atomic: int | None = None,
        group_max: int = GROUP_MAX,
        in_flight_max: int = IN_FLIGHT_MAX,
    ) -> None:
        self._pool = pool
        self._groups = GroupConnections(pool)  # kept between groups: no pool round trip in a group's path
        self._max_unsettled = max_unsettled_atomic
        self._group_max = group_max
        self._in_flight_max = in_flight_max
        self._waiting: list[_Waiting] = []
        self._in_flight = 0
        self._tasks: set[asyncio.Task[None]] = set()  # the loop keeps only weak references to tasks

    async def book(self, booking: Booking) -> Booked | VoucherRefused:
        """Book one served voucher with whatever others are waiting. Raises as `book_vouchers` does. The booking
        is done by the booker's own task: a caller cancelled while it waits leaves the voucher booked."""
        future: asyncio.Future[Booked | VoucherRefused] = asyncio.get_running_loop().create_future()
        self._waiting.append((booking, future))
        self._start()
        return await future

    async def close(self) -> None:
        """Give back the connections kept for groups (before the pool closes: it waits for them)."""
        await self._groups.close()

    def _start(self) -> None:
        while self._waiting and self._in_flight < self._in_flight_max:
            group, self._waiting = self._waiting[: self._group_max], self._waiting[self._group_max :]
            self._in_flight += 1
            self._spawn(self._book(group))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work, name="voucher-bookings")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _book(self, group: list[_Waiting]) -> None:
        try:
            ordered = sorted(group, key=lambda w: (w[0].channel_id.lower(), w[0].max_claimable_atomic))
            try:
                results = await self._groups.book_vouchers(
                    [b for b, _ in ordered], max_unsettled_atomic=self._max_unsettled
                )
            except ledger.LedgerUnavailable as exc:
                for _, future in ordered:
                    _settle(future, exc)
                return
            except ledger.LedgerError as exc:
                if len(ordered) == 1:
                    _settle(ordered[0][1], exc)
                    return
                log.warning("a group of vouchers failed; booking them one by one", extra={"detail": str(exc)})
                await self._one_by_one(ordered)
                return
            for waiting, result in zip(ordered, results, strict=True):
                if isinstance(result, ChannelHeld):
                    self._spawn(self._one_by_one([waiting]))  # waits for the channel, outside the group slots
                else:
                    _settle(waiting[1], result)
        except BaseException as exc:  # cancelled, or a bug: no waiter is left hanging
            for _, future in group:
                _settle(future, exc if isinstance(exc, Exception) else ledger.LedgerUnavailable("cancelled"))
            raise
        finally:
            self._in_flight -= 1
            self._start()

    async def _one_by_one(self, ordered: list[_Waiting]) -> None:
        try:
            for booking, future in ordered:
                try:
                    booked = await book_voucher(self._pool, booking, max_unsettled_atomic=self._max_unsettled)
                    _settle(future, booked)
                except ledger.LedgerError as exc:
                    _settle(future, exc)
        except BaseException:  # cancelled while waiting for a channel: no waiter is left hanging
            for _, future in ordered:
                _settle(future, ledger.LedgerUnavailable("cancelled"))
            raise


def _settle(future: asyncio.Future[Booked | VoucherRefused], outcome: Booked | VoucherRefused | Exception) -> None:
    if future.done():
        return
    if isinstance(outcome, Exception):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)
