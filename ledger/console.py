"""The operator's console in Postgres: the admin audit log (append-only), the admin sessions seen, the payers seen
lately, sales by network and scheme, and the sales still waiting for their settlement (console.sql)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from .errors import LedgerError, translated
from .sql import queries

AUDIT_LIST_MAX = 500
PENDING_MAX = 500
PAYERS_MAX = 200
SYSTEM = "system"  # the actor of what the gateway changes on its own (the health watch's maintenance)


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    at: datetime
    actor: str
    action: str
    target: str | None
    detail: dict[str, Any]


def _text(value: Any) -> str:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return str(value)


def _entry(row: asyncpg.Record) -> AuditEntry:
    detail = row["detail"]  # the pool's jsonb codec decodes it; a bare connection hands over the text
    return AuditEntry(
        row["id"],
        row["at"],
        row["actor"],
        row["action"],
        row["target"],
        json.loads(detail) if isinstance(detail, str) else detail,
    )


async def record(
    connection: asyncpg.Pool | asyncpg.Connection,
    actor: str,
    action: str,
    target: str | None,
    detail: dict[str, Any] | None = None,
) -> AuditEntry:
    """Keep one admin action; on a connection inside a transaction, it is kept with the change it records."""
    if not actor.strip() or not action.strip():
        raise LedgerError("an audit entry names who acted and what they did")
    with translated():
        plain = json.loads(json.dumps(detail or {}, default=_text))  # datetimes and the like as text
        row = await connection.fetchrow(queries["audit_insert"], actor, action, target, plain)
    return _entry(row)


async def audit_log(
    pool: asyncpg.Pool,
    *,
    action: str | None = None,
    actor: str | None = None,
    before_id: int | None = None,
    limit: int = 100,
) -> list[AuditEntry]:
    """Newest first; `action` is one action, or a prefix ending in '.' (`ban.` is every ban and unban)."""
    if not 1 <= limit <= AUDIT_LIST_MAX:
        raise LedgerError(f"limit must be 1 to {AUDIT_LIST_MAX}")
    with translated():
        rows = await pool.fetch(queries["audit_list"], action, actor, before_id, limit)
    return [_entry(r) for r in rows]


async def session_seen(
    pool: asyncpg.Pool, session: str, subject: str, via: str, client: str | None, expires_at: int
) -> None:
    with translated():
        await pool.execute(queries["session_seen"], session, subject, via, client, float(expires_at))


async def sessions(pool: asyncpg.Pool, within_s: float) -> list[dict[str, Any]]:
    """Admin sessions seen within `within_s` seconds and not expired (old ones are pruned on the way)."""
    with translated():
        await pool.execute(queries["sessions_prune"])
        rows = await pool.fetch(queries["sessions_recent"], float(within_s))
    return [dict(r) for r in rows]


async def payers(pool: asyncpg.Pool, within_s: float, limit: int = PAYERS_MAX) -> list[dict[str, Any]]:
    """Payers seen within `within_s` seconds, per network: payments, settled ones and their sum, last seen."""
    with translated():
        rows = await pool.fetch(queries["payers_recent"], float(within_s), limit)
    return [dict(r) for r in rows]


async def sales(pool: asyncpg.Pool, since: datetime, until: datetime) -> list[dict[str, Any]]:
    """Per network and scheme: sales, settled, revenue, unsettled value and payments never charged."""
    with translated():
        rows = await pool.fetch(queries["sales_by_network_scheme"], since, until)
    return [dict(r) for r in rows]


async def pending(pool: asyncpg.Pool, limit: int = 100) -> list[dict[str, Any]]:
    """Sales served but not final, the longest waiting first."""
    if not 1 <= limit <= PENDING_MAX:
        raise LedgerError(f"limit must be 1 to {PENDING_MAX}")
    with translated():
        rows = await pool.fetch(queries["settlement_pending"], limit)
    return [dict(r) for r in rows]
