"""The operator's controls kept in Postgres (payer bans, stream sharing), payment search, the settlement
queue, and a listener that tells a worker when bans or sharing changed (NOTIFY worldgate_admin)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from .errors import LedgerError, translated
from .sql import queries

log = logging.getLogger("worldgate.ledger")
CHANNEL = "worldgate_admin"
SEARCH_LIMIT_MAX = 500


@dataclass(frozen=True, slots=True)
class Ban:
    payer: str
    reason: str
    created_by: str
    created_at: datetime


async def bans(pool: asyncpg.Pool) -> dict[str, Ban]:
    with translated():
        rows = await pool.fetch(queries["list_bans"])
    return {r["payer"]: Ban(**dict(r)) for r in rows}


async def ban(pool: asyncpg.Pool, payer: str, reason: str, by: str) -> Ban:
    if not payer or not reason:
        raise LedgerError("a ban needs a payer and a reason")
    with translated():
        row = await pool.fetchrow(queries["insert_ban"], payer, reason, by)
    return Ban(**dict(row))


async def unban(pool: asyncpg.Pool, payer: str) -> bool:
    with translated():
        return await pool.fetchval(queries["delete_ban"], payer) is not None


async def sharing(pool: asyncpg.Pool) -> dict[str, str]:
    """Stream id → sharing state, as the operator last set it (streams not listed keep their default)."""
    with translated():
        rows = await pool.fetch(queries["list_sharing"])
    return {r["stream_id"]: r["sharing"] for r in rows}


async def set_sharing(pool: asyncpg.Pool, stream_id: str, state: str, by: str) -> None:
    """Store a stream's sharing state. Its vocabulary is the caller's (the table's CHECK refuses others:
    LedgerIntegrityError)."""
    with translated():
        await pool.execute(queries["upsert_sharing"], stream_id, state, by)


async def search_payments(
    pool: asyncpg.Pool,
    *,
    payer: str | None = None,
    state: str | None = None,
    network: str | None = None,
    stream: str | None = None,
    tx_hash: str | None = None,
    payment_key: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    before_id: int | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """Payments matching every given filter, newest first; page with `before_id` = the last id seen."""
    if not 1 <= limit <= SEARCH_LIMIT_MAX:
        raise LedgerError(f"limit must be 1 to {SEARCH_LIMIT_MAX}")
    with translated():
        filters = (payer, state, network, stream, tx_hash, since, until, payment_key, before_id)
        rows = await pool.fetch(queries["search_payments"], *filters, limit)
    return [dict(r) for r in rows]


async def settlement_queue(pool: asyncpg.Pool) -> list[dict[str, Any]]:
    with translated():
        rows = await pool.fetch(queries["settlement_queue"])
    return [dict(r) for r in rows]


async def gauges(pool: asyncpg.Pool) -> dict[str, dict[str, int]]:
    """What /metrics reports of the ledger: exposure per network, open payments per state, open flags."""
    with translated():
        exposure = await pool.fetch(queries["exposure_by_network"])
        queue = await pool.fetch(queries["settlement_queue"])
        flags = await pool.fetch(queries["open_flags_by_kind"])
    return {
        "exposure": {r["network"]: int(r["amount_atomic"]) for r in exposure},
        "exposure_age_s": {r["network"]: int(r["oldest_s"]) for r in exposure},
        "queue": {r["state"]: int(r["payments"]) for r in queue},
        "flags": {r["kind"]: int(r["flags"]) for r in flags},
    }


@contextlib.asynccontextmanager
async def listening(dsn: str, on_change: Callable[[str], None]) -> AsyncIterator[None]:
    """Call `on_change(table)` whenever bans or sharing change, from any worker or replica.

    One dedicated connection; if it drops, it is reopened (changes missed meanwhile are caught by
    the caller's periodic reload)."""
    stop = asyncio.Event()

    async def run() -> None:
        while not stop.is_set():
            connection: asyncpg.Connection | None = None
            try:
                connection = await asyncpg.connect(dsn)
                lost = asyncio.Event()
                connection.add_termination_listener(lambda _c, gone=lost: gone.set())
                await connection.add_listener(CHANNEL, lambda _c, _pid, _channel, payload: on_change(payload))
                on_change("*")  # anything may have changed while we were not listening
                await _first(stop.wait(), lost.wait())
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("admin change listener lost Postgres; retrying", extra={"error": type(exc).__name__})
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 2.0)
            finally:
                if connection is not None and not connection.is_closed():
                    with contextlib.suppress(Exception):
                        await connection.close(timeout=2)

    task = asyncio.create_task(run(), name="ledger:listen")
    try:
        yield
    finally:
        stop.set()
        await task


async def _first(*waits: Any) -> None:
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
