"""Voucher sales' delivery marks, written together instead of one statement per request.

A sale's answer handed to its transport is marked delivered so it is never served again to the same voucher
(batch_checkout.py `_served_again`). The mark comes after the answer, so it is best effort already (a sale
left unmarked may be served once more to the same voucher, never charged again); gathering the marks of
`interval_s` into one statement keeps that promise and saves a round trip per voucher. `close` writes
what is left, on shutdown.
"""

from __future__ import annotations

import asyncio
import logging

import asyncpg

import ledger
from ledger import batch_recovery

log = logging.getLogger("worldgate.batch")
MARK_INTERVAL_S = 0.01


class DeliveryMarks:
    def __init__(self, pool: asyncpg.Pool, interval_s: float = MARK_INTERVAL_S) -> None:
        self._pool = pool
        self._interval_s = interval_s
        self._pending: list[int] = []
        self._writer: asyncio.Task[None] | None = None

    def add(self, payment_id: int) -> None:
        self._pending.append(payment_id)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._write_soon(), name="delivery-marks")

    async def _write_soon(self) -> None:
        await asyncio.sleep(self._interval_s)
        await self._write()

    async def _write(self) -> None:
        ids, self._pending = self._pending, []
        if not ids:
            return
        try:
            await batch_recovery.mark_delivered_many(self._pool, ids)
        except ledger.LedgerError as exc:
            log.error("could not mark voucher sales delivered", extra={"detail": str(exc), "sales": len(ids)})

    async def close(self) -> None:
        if self._writer is not None and not self._writer.done():
            self._writer.cancel()
        await self._write()
