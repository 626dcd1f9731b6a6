"""Payment claims and their state machine: a claim is an INSERT under a UNIQUE key, made before serving.

The transition table below mirrors `payment_transitions` in the migration; each move is checked
here before the UPDATE and by the database trigger during it, and the UPDATE itself only matches a
row still in the expected state (`WHERE state = $expected`), so two workers cannot both move it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from .entries import insert_entry
from .errors import LedgerIntegrityError, translated
from .journal import Posting, assert_balanced
from .leases import Lease
from .sql import queries
from .states import PaymentState

_NEXT: dict[PaymentState, tuple[PaymentState, ...]] = {
    PaymentState.CLAIMED: (PaymentState.VERIFIED, PaymentState.RELEASED, PaymentState.EXPIRED),
    PaymentState.VERIFIED: (PaymentState.SERVED, PaymentState.SETTLING, PaymentState.RELEASED, PaymentState.EXPIRED),
    PaymentState.SERVED: (PaymentState.SETTLING, PaymentState.RELEASED, PaymentState.EXPIRED),
    PaymentState.SETTLING: (PaymentState.SETTLED, PaymentState.FAILED),
    PaymentState.RELEASED: (PaymentState.CLAIMED,),
}
TRANSITIONS: frozenset[tuple[PaymentState, PaymentState]] = frozenset(
    (before, after) for before, nexts in _NEXT.items() for after in nexts
)


@dataclass(frozen=True, slots=True)
class PaymentRecord:
    """What the ledger needs to claim a payment; the app builds it from what `payments` inspected."""

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
    valid_before: datetime | None
    settlement_mode: str = "sync"  # the only mode built; the column keeps room for others


@dataclass(frozen=True, slots=True)
class Holder:
    """The claim that already holds a payment key, with what the retry of its payment needs to resolve it."""

    payment_id: int
    state: PaymentState
    route: str
    resource: str  # the path it bought
    amount_atomic: int
    tx_hash: str | None
    payment_key: str = ""
    network: str = ""
    asset: str = ""
    payer: str = ""
    pay_to: str = ""
    stream: str | None = None
    valid_before: datetime | None = None
    updated_at: datetime | None = None
    delivered: bool = False  # a settled sale whose answer reached its caller
    lease: Lease | None = None  # who holds it (migration 0014); None: a claim made before leases
    held: bool = False  # a request may still be working on it: its holder's lease runs (see `holder`)


UNLEASED_HELD_S = 120.0  # a claim made before leases (no lease row) counts as held this long after its last change


async def claim(pool: asyncpg.Pool, record: PaymentRecord, *, lease: int | None = None) -> int | None:
    """The payment's id if this request now holds its key; None if another claim holds or consumed it.
    `lease`: the instance (ledger/leases.py) whose request holds the claim."""
    assert record.amount_atomic > 0
    with translated():
        return await pool.fetchval(
            queries["claim_payment"],
            record.payment_key,
            record.scheme_id,
            record.network,
            record.asset,
            record.payer,
            record.pay_to,
            record.amount_atomic,
            record.route,
            record.resource,
            record.stream,
            record.settlement_mode,
            record.valid_before,
            lease,
        )


async def holder(pool: asyncpg.Pool, payment_key: str, *, unleased_held_s: float = UNLEASED_HELD_S) -> Holder | None:
    """The claim holding `payment_key`, if any. A claim made before leases existed counts as held for
    `unleased_held_s` seconds after its last change (its request cannot be told dead otherwise)."""
    with translated():
        row = await pool.fetchrow(queries["payment_state_by_key"], payment_key, float(unleased_held_s))
    if row is None:
        return None
    lease = (
        Lease(row["instance_id"], row["host"], row["pid"], row["pid_started"], bool(row["held"]))
        if row["leased"]
        else None
    )
    return Holder(
        row["id"],
        PaymentState(row["state"]),
        row["route"],
        row["resource"],
        row["amount_atomic"],
        row["tx_hash"],
        payment_key=row["payment_key"],
        network=row["network"],
        asset=row["asset"],
        payer=row["payer"],
        pay_to=row["pay_to"],
        stream=row["stream"],
        valid_before=row["valid_before"],
        updated_at=row["updated_at"],
        delivered=row["delivered"],
        lease=lease,
        held=bool(row["held"]),
    )


async def advance(
    pool: asyncpg.Pool | asyncpg.Connection,
    payment_id: int,
    from_state: PaymentState,
    to_state: PaymentState,
    *,
    reason: str | None = None,
    tx_hash: str | None = None,
    lease: int | None = None,
) -> bool:
    """Move one edge; False if the payment was no longer in `from_state` (someone else moved it), or if
    `lease` (an instance) no longer holds the claim (a retry took it over)."""
    if (from_state, to_state) not in TRANSITIONS:
        raise LedgerIntegrityError(f"illegal payment transition {from_state} -> {to_state}")
    with translated():
        moved = await pool.fetchval(
            queries["advance_payment"], payment_id, from_state, to_state, reason, tx_hash, lease
        )
    return moved is not None


async def record_tx_hash(pool: asyncpg.Pool, payment_id: int, tx_hash: str, *, lease: int | None = None) -> None:
    """Store a settlement's hash before it is broadcast (raises if the payment is not `settling`, or if `lease`
    no longer holds the claim: then nothing may be broadcast)."""
    with translated():
        if await pool.fetchval(queries["record_tx_hash"], payment_id, tx_hash, lease) is None:
            raise LedgerIntegrityError(f"payment {payment_id} is not settling under this lease; refusing {tx_hash}")


async def settle(
    pool: asyncpg.Pool,
    payment_id: int,
    tx_hash: str,
    postings: Sequence[Posting],
    *,
    gas_cost_atomic: int | None = None,
    memo: str | None = None,
) -> int:
    """Mark a settling payment settled and post its journal entry, atomically; returns the entry id."""
    assert_balanced(postings)
    with translated():
        async with pool.acquire() as connection, connection.transaction():
            if await connection.fetchval(queries["mark_settled"], payment_id, tx_hash, gas_cost_atomic) is None:
                raise LedgerIntegrityError(f"payment {payment_id} is not settling; not marking it settled")
            entry_id = await insert_entry(connection, "settlement", postings, payment_id=payment_id, memo=memo)
    return entry_id


async def payment(pool: asyncpg.Pool, payment_id: int) -> dict[str, Any] | None:
    """One payment with its events and journal lines (for reports, admin and tests)."""
    with translated():
        row = await pool.fetchrow(queries["payment_by_id"], payment_id)
        if row is None:
            return None
        events = await pool.fetch(queries["payment_events"], payment_id)
        lines = await pool.fetch(queries["journal_for_payment"], payment_id)
    return {**dict(row), "events": [dict(e) for e in events], "journal": [dict(line) for line in lines]}


async def mark_delivered(pool: asyncpg.Pool, payment_id: int) -> None:
    """The settled sale's answer was handed to its transport: it is never served again."""
    with translated():
        await pool.execute(queries["mark_delivered"], payment_id)


RECONCILED_MEMO = "booked by reconciliation"  # the journal memo of a sale reconciliation settled
RESOLVED_MEMO = "booked when its payment came back"  # ... and of one the retry of its payment settled
UNATTENDED_MEMOS = (RECONCILED_MEMO, RESOLVED_MEMO)  # booked with no request of its own left to answer


async def take_redelivery(pool: asyncpg.Pool, payment_id: int, settled_for_s: float, lease_s: float) -> bool:
    """Lease the redelivery of a sale never delivered (one retry at a time): settled `settled_for_s` ago by its
    own request, or at any time by reconciliation or a retry."""
    with translated():
        taken = await pool.fetchval(
            queries["take_redelivery"], payment_id, settled_for_s, lease_s, list(UNATTENDED_MEMOS)
        )
    return taken is not None


async def drop_redelivery(pool: asyncpg.Pool, payment_id: int) -> None:
    with translated():
        await pool.execute(queries["drop_redelivery"], payment_id)
