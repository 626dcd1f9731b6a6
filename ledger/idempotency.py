"""The payment-identifier store: one delivery per client-supplied id, replayed to its retries.

`begin` either makes this request the id's first (it will deliver and `complete`, or `abandon`), or
reports the id taken: by the same payment (wait and replay with `lookup`) or by another (a conflict).
Rows expire; `purge_expired` removes them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import asyncpg

from .errors import translated
from .sql import queries

ID_LENGTH_MIN = 16
ID_LENGTH_MAX = 128
ID_PATTERN = "^[A-Za-z0-9_-]+$"
_ID = re.compile(rf"^[A-Za-z0-9_-]{{{ID_LENGTH_MIN},{ID_LENGTH_MAX}}}$")


def valid_id(value: object) -> bool:
    """16-128 letters, digits, hyphens or underscores (the x402 payment-identifier rule)."""
    return isinstance(value, str) and _ID.match(value) is not None


@dataclass(frozen=True, slots=True)
class Held:
    first: bool  # this request inserted the id: it runs the sale
    conflict: str | None = None  # the id belongs to another payment or transport


@dataclass(frozen=True, slots=True)
class Stored:
    response: bytes | None  # None while the first attempt still runs


async def begin(pool: asyncpg.Pool, id_: str, payment_key: str, transport: str, ttl_s: float) -> Held:
    with translated():
        async with pool.acquire() as connection:
            await connection.execute(queries["idempotency_drop_expired_id"], id_)
            if await connection.fetchval(queries["idempotency_insert"], id_, payment_key, transport, float(ttl_s)):
                return Held(first=True)
            row = await connection.fetchrow(queries["idempotency_get"], id_)
    if row is None:  # expired between the two statements: rare enough to let the client retry
        return Held(first=False, conflict="this payment id is being reset; retry")
    if row["payment_key"] != payment_key:
        return Held(first=False, conflict="this payment id was used with a different payment")
    if row["transport"] != transport:
        return Held(first=False, conflict=f"this payment id was used over {row['transport']}")
    return Held(first=False)


async def lookup(pool: asyncpg.Pool, id_: str) -> Stored | None:
    with translated():
        row = await pool.fetchrow(queries["idempotency_get"], id_)
    return None if row is None else Stored(bytes(row["response"]) if row["response"] is not None else None)


async def complete(pool: asyncpg.Pool, id_: str, response: bytes) -> None:
    with translated():
        await pool.execute(queries["idempotency_complete"], id_, response)


async def abandon(pool: asyncpg.Pool, id_: str) -> None:
    """The first attempt delivered nothing: free the id, so a retry runs the sale itself."""
    with translated():
        await pool.execute(queries["idempotency_abandon"], id_)


async def purge_expired(pool: asyncpg.Pool) -> int:
    with translated():
        status = await pool.execute(queries["idempotency_purge"])
    return int(status.split()[-1])
