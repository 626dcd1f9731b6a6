"""The payment-identifier store: one delivery per client-supplied id, replayed to its retries.

`begin` either makes this request the id's first (it will deliver and `complete`, `park` a pending
settlement, or `abandon`), or reports the id taken: by a retry it may answer with the id's outcome (wait
and replay with `lookup`) or by another request or payment (a conflict). An id is bound to its transport,
to the request's fingerprint (what was asked, at what price: migration 0011) and to its payment. Rows
expire; `purge_expired` removes them.
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
_FINGERPRINT = re.compile(r"^[0-9a-f]{64}$")
# A payment in one of these states was never charged: an id it holds, with nothing delivered, may be reused.
_UNCHARGED = frozenset({"failed", "expired", "released"})
OTHER_REQUEST = "this payment id was used for another request (route, query or price); use a new id for a new request"
OTHER_PAYMENT = "this payment id was used with a different payment"


def valid_id(value: object) -> bool:
    """16-128 letters, digits, hyphens or underscores (the x402 payment-identifier rule)."""
    return isinstance(value, str) and _ID.match(value) is not None


@dataclass(frozen=True, slots=True)
class Held:
    first: bool  # this request inserted the id: it runs the sale
    conflict: str | None = None  # the id belongs to another request, payment or transport
    payment_key: str | None = None  # a retry: the id's payment, whose outcome answers it


@dataclass(frozen=True, slots=True)
class Stored:
    response: bytes | None  # None while the first attempt still runs, or when it ended pending
    pending: bool = False  # the first attempt ended without data: its settlement's outcome was unknown


async def begin(
    pool: asyncpg.Pool,
    id_: str,
    payment_key: str,
    transport: str,
    ttl_s: float,
    fingerprint: str | None = None,
    payer: str | None = None,
    *,
    resigned_replays: bool = False,
) -> Held:
    """Take the id for this request, or say whose it is. `fingerprint` (None: not bound) is the request's;
    `payer` is the one the payment's signature speaks for (checked before): the same payer re-signing the
    same request under an id whose payment has no answer yet is a retry, answered with that payment's outcome.
    `resigned_replays`: so is one whose payment has its answer stored (a batch voucher re-signed for a retry is
    never booked, so replaying the answer charges nothing; an `exact` payment re-signed is a conflict)."""
    assert fingerprint is None or _FINGERPRINT.match(fingerprint), fingerprint
    for _ in range(2):  # a second pass once an uncharged payment's id was freed
        with translated():
            async with pool.acquire() as connection:
                await connection.execute(queries["idempotency_drop_expired_id"], id_)
                inserted = await connection.fetchval(
                    queries["idempotency_insert"], id_, payment_key, transport, float(ttl_s), fingerprint
                )
                if inserted:
                    return Held(first=True)
                row = await connection.fetchrow(queries["idempotency_get"], id_)
                if row is None:  # expired between the two statements: rare enough to let the client retry
                    return Held(first=False, conflict="this payment id is being reset; retry")
                if row["transport"] != transport:
                    return Held(first=False, conflict=f"this payment id was used over {row['transport']}")
                if row["fingerprint"] and fingerprint and row["fingerprint"] != fingerprint:
                    return Held(first=False, conflict=OTHER_REQUEST)
                if row["payment_key"] == payment_key:
                    return Held(first=False, payment_key=payment_key)
                same_payer = payer is not None and row["payer"] == payer
                if row["response"] is not None:
                    if resigned_replays and same_payer:
                        return Held(first=False, payment_key=row["payment_key"])
                    return Held(first=False, conflict=OTHER_PAYMENT)
                if row["payment_state"] in _UNCHARGED:
                    await connection.execute(queries["idempotency_free_uncharged"], id_, row["payment_key"])
                    continue
                if same_payer:
                    return Held(first=False, payment_key=row["payment_key"])
                return Held(first=False, conflict=OTHER_PAYMENT)
    return Held(first=False, conflict="this payment id is being reset; retry")


async def lookup(pool: asyncpg.Pool, id_: str) -> Stored | None:
    with translated():
        row = await pool.fetchrow(queries["idempotency_get"], id_)
    if row is None:
        return None
    if row["response"] is not None:
        return Stored(bytes(row["response"]))
    return Stored(None, pending=row["completed_at"] is not None)


async def complete(pool: asyncpg.Pool, id_: str, response: bytes) -> None:
    with translated():
        await pool.execute(queries["idempotency_complete"], id_, response)


async def park(pool: asyncpg.Pool, id_: str) -> None:
    """The first attempt ended with its settlement pending: keep the id bound to its payment, marked ended,
    so that its retries are answered with that payment's outcome (never a new charge)."""
    with translated():
        await pool.execute(queries["idempotency_park"], id_)


async def abandon(pool: asyncpg.Pool, id_: str) -> None:
    """The first attempt delivered nothing: free the id, so a retry runs the sale itself."""
    with translated():
        await pool.execute(queries["idempotency_abandon"], id_)


async def purge_expired(pool: asyncpg.Pool) -> int:
    with translated():
        status = await pool.execute(queries["idempotency_purge"])
    return int(status.split()[-1])
