"""The operator's controls kept in Postgres (payer and address bans, stream sharing), payment search, the
settlement queue, and a listener that tells a worker when bans or sharing changed (NOTIFY worldgate_admin).

Every change is kept in the admin audit log (ledger/console.py) in the transaction that makes it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from . import console
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
    expires_at: datetime | None = None  # None: until lifted


@dataclass(frozen=True, slots=True)
class AddressBan:
    address: str  # a client address or network, as Postgres writes a cidr ("203.0.113.7/32", "2001:db8::/64")
    reason: str
    created_by: str
    created_at: datetime
    expires_at: datetime | None = None


async def bans(pool: asyncpg.Pool) -> dict[str, Ban]:
    """The payer bans in force (an expired one is not)."""
    with translated():
        rows = await pool.fetch(queries["list_bans"])
    return {r["payer"]: Ban(**dict(r)) for r in rows}


async def ban(pool: asyncpg.Pool, payer: str, reason: str, by: str, expires_at: datetime | None = None) -> Ban:
    if not payer or not reason:
        raise LedgerError("a ban needs a payer and a reason")
    with translated():
        async with pool.acquire() as connection, connection.transaction():
            row = await connection.fetchrow(queries["insert_ban"], payer, reason, by, expires_at)
            await console.record(
                connection, by, "ban.add", payer, {"kind": "payer", "reason": reason, "expires_at": expires_at}
            )
    return Ban(**dict(row))


async def unban(pool: asyncpg.Pool, payer: str, by: str) -> bool:
    with translated():
        async with pool.acquire() as connection, connection.transaction():
            gone = await connection.fetchval(queries["delete_ban"], payer) is not None
            if gone:
                await console.record(connection, by, "ban.remove", payer, {"kind": "payer"})
    return gone


async def address_bans(pool: asyncpg.Pool) -> list[AddressBan]:
    """The client address bans in force."""
    with translated():
        rows = await pool.fetch(queries["list_address_bans"])
    return [AddressBan(**dict(r)) for r in rows]


async def ban_address(
    pool: asyncpg.Pool, address: str, reason: str, by: str, expires_at: datetime | None = None
) -> AddressBan:
    """Ban a client address or network (text Postgres reads as a cidr: a malformed one is LedgerError)."""
    if not address or not reason:
        raise LedgerError("a ban needs an address and a reason")
    try:
        with translated():
            async with pool.acquire() as connection, connection.transaction():
                row = await connection.fetchrow(queries["insert_address_ban"], address, reason, by, expires_at)
                detail = {"kind": "address", "reason": reason, "expires_at": expires_at}
                await console.record(connection, by, "ban.add", row["address"], detail)
    except asyncpg.DataError as exc:  # not an address: the caller's mistake, said in its terms
        raise LedgerError(f"{address!r} is not an IP address or network") from exc
    return AddressBan(**dict(row))


async def unban_address(pool: asyncpg.Pool, address: str, by: str) -> str | None:
    """Lift an address ban; the address as stored, or None when it was not banned."""
    try:
        with translated():
            async with pool.acquire() as connection, connection.transaction():
                gone = await connection.fetchval(queries["delete_address_ban"], address)
                if gone is not None:
                    await console.record(connection, by, "ban.remove", gone, {"kind": "address"})
    except asyncpg.DataError as exc:
        raise LedgerError(f"{address!r} is not an IP address or network") from exc
    return gone


async def sharing(pool: asyncpg.Pool) -> dict[str, str]:
    """Stream id → sharing state, as the operator last set it (streams not listed keep their default)."""
    with translated():
        rows = await pool.fetch(queries["list_sharing"])
    return {r["stream_id"]: r["sharing"] for r in rows}


async def sharing_rows(pool: asyncpg.Pool) -> dict[str, dict[str, Any]]:
    """Stream id → its stored sharing with who set it and when."""
    with translated():
        rows = await pool.fetch(queries["list_sharing"])
    return {r["stream_id"]: dict(r) for r in rows}


async def set_sharing(pool: asyncpg.Pool, stream_id: str, state: str, by: str) -> None:
    """Store a stream's sharing state. Its vocabulary is the caller's (the table's CHECK refuses others:
    LedgerIntegrityError)."""
    with translated():
        async with pool.acquire() as connection, connection.transaction():
            await connection.execute(queries["upsert_sharing"], stream_id, state, by)
            await console.record(connection, by, "sharing.set", stream_id, {"sharing": state})


async def search_payments(
    pool: asyncpg.Pool,
    *,
    payer: str | None = None,
    state: str | None = None,
    network: str | None = None,
    stream: str | None = None,
    tx_hash: str | None = None,
    payment_key: str | None = None,
    scheme: str | None = None,
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
        rows = await pool.fetch(queries["search_payments"], *filters, limit, scheme)
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
