"""The ledger's side of reconciliation with the chain: what to check, and how findings are recorded.

The chain side (does this transaction exist, did it move what was booked, was this authorization
used) lives in `payments`; an orchestrator in `app` asks this module what to look at, asks the
chain, and writes the outcome back here:

- `open_payments`: claims stuck before a final state (a settling row may have been charged on chain)
- `settled_after` / `settled_sample`: settled payments to confirm on chain, by cursor or at random
- `unbooked_candidates`: released or expired payments, whose authorization should never have been used
- `resolve_settled` / `resolve_failed` / `expire`: close a stuck payment, through the state machine
- `flag` / `resolve_flags` / `open_flags`: findings, one row per (payment, kind)
- `start_run` / `update_run` / `finish_run` / `last_runs`: runs, whose cursor lets the next one resume

Nothing here touches the chain, and no journal line is written except by `claims.settle`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from . import claims
from .errors import LedgerError, translated
from .journal import Posting
from .sql import queries
from .states import PaymentState

EXPIRABLE_STATES = (PaymentState.CLAIMED, PaymentState.VERIFIED, PaymentState.SERVED)
FLAG_KINDS = ("settlement_not_on_chain", "settlement_mismatch", "chain_transfer_not_recorded", "settlement_unknown")
RUN_TRIGGERS = ("cli", "schedule", "admin")


@dataclass(frozen=True, slots=True)
class OpenPayment:
    """A payment the chain may know more about than the ledger: open, or released/expired."""

    id: int
    payment_key: str
    scheme_id: str
    network: str
    asset: str
    payer: str
    pay_to: str
    amount_atomic: int
    route: str
    resource: str
    stream: str | None
    state: PaymentState
    tx_hash: str | None
    valid_before: datetime | None
    error_reason: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class SettledPayment:
    """A settled payment and what its settlement entry booked (in the payment's token)."""

    id: int
    payment_key: str
    scheme_id: str
    network: str
    asset: str
    payer: str
    pay_to: str
    amount_atomic: int
    stream: str | None
    resource: str
    tx_hash: str
    gas_cost_atomic: int | None  # native units; None when a remote facilitator paid the gas
    settled_at: datetime
    entry_id: int | None  # None only in a broken ledger (see `ledger verify`)
    booked_atomic: int | None


@dataclass(frozen=True, slots=True)
class Flag:
    id: int
    payment_id: int
    kind: str
    detail: str
    tx_hash: str | None
    first_seen_at: datetime
    last_seen_at: datetime
    network: str
    state: PaymentState
    amount_atomic: int


@dataclass(frozen=True, slots=True)
class Run:
    id: int
    trigger: str
    started_at: datetime
    finished_at: datetime | None
    checked: int
    resolved: int
    flagged: int
    cursor: int  # the highest settled payment id already audited; a new run starts here
    error: str | None


async def open_payments(pool: asyncpg.Pool, older_than_s: float, limit: int) -> list[OpenPayment]:
    """Payments in claimed/verified/served/settling not updated for `older_than_s` seconds, oldest first."""
    with translated():
        rows = await pool.fetch(queries["audit_open_payments"], float(older_than_s), limit)
    return [OpenPayment(**{**dict(row), "state": PaymentState(row["state"])}) for row in rows]


async def unbooked_candidates(pool: asyncpg.Pool, older_than_s: float, limit: int) -> list[OpenPayment]:
    """Released or expired payments (nothing booked) not updated for `older_than_s` seconds, newest first:
    reconcile asks the chain whether their authorization was used anyway. Newest first because an
    authorization can only be used before its `valid_before`, so recent ones are the ones at risk."""
    with translated():
        rows = await pool.fetch(queries["audit_unbooked_candidates"], float(older_than_s), limit)
    return [OpenPayment(**{**dict(row), "state": PaymentState(row["state"])}) for row in rows]


async def settled_after(pool: asyncpg.Pool, cursor: int, limit: int) -> list[SettledPayment]:
    """Settled payments with id > cursor, ascending; the last id is the next cursor."""
    with translated():
        rows = await pool.fetch(queries["audit_settled_after"], cursor, limit)
    return [SettledPayment(**dict(row)) for row in rows]


async def settled_sample(pool: asyncpg.Pool, n: int) -> list[SettledPayment]:
    """Up to n settled payments chosen at random (ordered by id)."""
    with translated():
        rows = await pool.fetch(queries["audit_settled_sample"], n)
    return [SettledPayment(**dict(row)) for row in rows]


async def resolve_settled(
    pool: asyncpg.Pool,
    payment_id: int,
    tx_hash: str,
    postings: Sequence[Posting],
    gas_cost_atomic: int | None = None,
    memo: str | None = claims.RECONCILED_MEMO,
) -> int:
    """The chain shows a settling payment's transfer: settle it and post its entry, atomically
    (`claims.settle`). Returns the entry id; raises LedgerIntegrityError if it is no longer settling."""
    return await claims.settle(pool, payment_id, tx_hash, postings, gas_cost_atomic=gas_cost_atomic, memo=memo)


async def resolve_failed(pool: asyncpg.Pool, payment_id: int, reason: str) -> bool:
    """The chain shows a settling payment was never charged: settling -> failed. False if it moved."""
    return await claims.advance(pool, payment_id, PaymentState.SETTLING, PaymentState.FAILED, reason=reason)


async def expire(pool: asyncpg.Pool, payment_id: int, from_state: PaymentState, reason: str) -> bool:
    """A claim abandoned before settlement: claimed/verified/served -> expired. False if it moved."""
    if from_state not in EXPIRABLE_STATES:
        raise LedgerError(f"only {', '.join(EXPIRABLE_STATES)} payments expire, not {from_state}")
    return await claims.advance(pool, payment_id, from_state, PaymentState.EXPIRED, reason=reason)


async def flag(pool: asyncpg.Pool, payment_id: int, kind: str, detail: str, tx_hash: str | None = None) -> bool:
    """Record a finding; True if it is newly raised (no open flag of this kind for this payment before).

    Seeing it again bumps last_seen_at and takes the new detail; a resolved flag seen again reopens
    (and counts as newly raised). Concurrent calls agree: the row is locked while deciding.
    """
    if kind not in FLAG_KINDS:
        raise LedgerError(f"unknown flag kind {kind!r}; choose one of {', '.join(FLAG_KINDS)}")
    with translated():
        async with pool.acquire() as connection, connection.transaction():
            resolved = await connection.fetchval(queries["flag_lock"], payment_id, kind)
            inserted = await connection.fetchval(queries["flag_upsert"], payment_id, kind, detail, tx_hash)
    return bool(inserted) or resolved is True


async def resolve_flags(pool: asyncpg.Pool, payment_id: int, kinds: Sequence[str]) -> int:
    """Mark a payment's open findings of these kinds resolved; returns how many were open."""
    with translated():
        status = await pool.execute(queries["flags_resolve"], payment_id, list(kinds))
    return int(status.split()[-1])


async def open_flags(pool: asyncpg.Pool, limit: int, kind: str | None = None) -> list[Flag]:
    """Unresolved findings, oldest first, optionally of one kind."""
    with translated():
        rows = await pool.fetch(queries["flags_open"], limit, kind)
    return [Flag(**{**dict(row), "state": PaymentState(row["state"])}) for row in rows]


async def start_run(pool: asyncpg.Pool, trigger: str) -> Run:
    """Open a run; its `cursor` is where the earlier runs stopped (0 for the first), so it resumes."""
    if trigger not in RUN_TRIGGERS:
        raise LedgerError(f"unknown run trigger {trigger!r}; choose one of {', '.join(RUN_TRIGGERS)}")
    with translated():
        row = await pool.fetchrow(queries["run_start"], trigger)
    assert row is not None
    return Run(**dict(row))


async def update_run(pool: asyncpg.Pool, run_id: int, checked: int, resolved: int, flagged: int, cursor: int) -> bool:
    """Save a run's progress (totals so far; the cursor only moves forward), so an interrupted run
    leaves its cursor for the next. False if the run is finished or unknown."""
    with translated():
        return await pool.fetchval(queries["run_update"], run_id, checked, resolved, flagged, cursor) is not None


async def finish_run(pool: asyncpg.Pool, run_id: int, error: str | None = None) -> Run | None:
    """Close a run (with the error that stopped it, if any); None if it was already finished or unknown."""
    with translated():
        row = await pool.fetchrow(queries["run_finish"], run_id, error)
    return Run(**dict(row)) if row else None


async def last_runs(pool: asyncpg.Pool, n: int) -> list[Run]:
    """The n most recent runs, newest first."""
    with translated():
        rows = await pool.fetch(queries["runs_last"], n)
    return [Run(**dict(row)) for row in rows]
