"""Reconcile findings as an operator works through them: list by state, acknowledge, close.

A finding is about a payment, a batch-settlement channel or a recorded claim/sweep transaction (exactly one
of `payment_id`, `channel_id`, `batch_tx_hash`). Reconcile raises them (`audit.flag`, `channel_audit.flag_*`);
an operator acknowledges one ("seen, on it") or closes it, each time with a note, and every action is kept
(reconcile_flag_actions, append-only) with who did it. A finding an operator closed stays closed when reconcile
sees it again; one reconcile resolved reopens.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from .errors import LedgerError, translated
from .sql import queries

STATES = ("open", "acknowledged", "closed")
ACTIONS = {"acknowledge": "finding_acknowledge", "close": "finding_close"}
NOTE_MAX = 2000
LIST_MAX = 1000


class FindingNotFound(LedgerError):
    """No finding has this id."""


@dataclass(frozen=True, slots=True)
class Finding:
    id: int
    payment_id: int | None  # None: the finding is about a channel or a batch transaction
    kind: str
    detail: str
    tx_hash: str | None
    first_seen_at: datetime
    last_seen_at: datetime
    state: str
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    closed_at: datetime | None
    closed_by: str | None  # None with closed_at set: reconcile resolved it (the chain agreed)
    note: str | None
    network: str
    payment_state: str | None
    amount_atomic: int | None  # the payment's, or what a channel or transaction finding puts at stake
    channel_id: str | None = None
    batch_tx_hash: str | None = None


async def findings(pool: asyncpg.Pool, state: str | None = None, limit: int = LIST_MAX) -> list[Finding]:
    """Findings in `state` (None: all), oldest first."""
    if state is not None and state not in STATES:
        raise LedgerError(f"unknown finding state {state!r}; choose one of {', '.join(STATES)}")
    if not 1 <= limit <= LIST_MAX:
        raise LedgerError(f"limit must be 1 to {LIST_MAX}")
    with translated():
        rows = await pool.fetch(queries["findings_list"], state, limit, None)
    return [Finding(**dict(row)) for row in rows]


async def finding(pool: asyncpg.Pool, finding_id: int) -> Finding | None:
    with translated():
        row = await pool.fetchrow(queries["findings_list"], None, 1, finding_id)
    return Finding(**dict(row)) if row else None


async def actions(pool: asyncpg.Pool, finding_id: int) -> list[dict[str, object]]:
    """What operators did to a finding, in order: action, note, actor, at."""
    with translated():
        rows = await pool.fetch(queries["finding_actions"], finding_id)
    return [dict(r) for r in rows]


async def act(pool: asyncpg.Pool, finding_id: int, action: str, note: str, actor: str) -> Finding:
    """Acknowledge or close a finding that is not closed, with a note; raises FindingNotFound, or
    LedgerError when it is closed already or the note is empty or too long."""
    if action not in ACTIONS:
        raise LedgerError(f"unknown action {action!r}; choose one of {', '.join(ACTIONS)}")
    text = note.strip()
    if not 1 <= len(text) <= NOTE_MAX:
        raise LedgerError(f"a note of 1 to {NOTE_MAX} characters is required")
    if not actor.strip():
        raise LedgerError("who acts must be named")
    with translated():
        async with pool.acquire() as connection, connection.transaction():
            row = await connection.fetchrow(queries["finding_lock"], finding_id)
            if row is None:
                raise FindingNotFound(f"no finding {finding_id}")
            if row["resolved_at"] is not None:
                raise LedgerError(f"finding {finding_id} is closed already")
            await connection.execute(queries[ACTIONS[action]], finding_id, actor, text)
            await connection.execute(queries["finding_action_insert"], finding_id, action, text, actor)
    found = await finding(pool, finding_id)
    assert found is not None
    return found
