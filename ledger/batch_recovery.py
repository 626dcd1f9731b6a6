"""batch-settlement's recovery: the settler's transactions written ahead, and voucher sales served again.

Write-ahead: the settler stores each claim or sweep's hash (`write_ahead`) before the transaction leaves the
process, with what it carries (the channels and totals of a claim, the receiver and token of a sweep). Once
it is recorded (ledger/channels.py `record_claim` / `record_settlement`) or known to have failed, it is
`resolve`d. A settler that died in between finds it in `open_pending` on its next run and settles it from
the receipt; recording a hash twice books nothing, so a crash between the record and the resolution is safe.

Redelivery: a voucher booked (accepted) whose answer never left (a crash after the booking, a client gone)
may be served again to the same voucher, never charged again (`take_redelivery`, as claims.take_redelivery
does for a settled `exact` sale; claims.mark_delivered / drop_redelivery close or free the lease).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import asyncpg

from .errors import LedgerError, translated
from .sql import queries

KINDS = ("claim", "settle")


class Outcome(StrEnum):
    RECORDED = "recorded"  # booked in batch_transactions
    FAILED = "failed"  # mined and reverted: nothing moved
    DROPPED = "dropped"  # never on chain (refused by the node, or lost before it was sent)


@dataclass(frozen=True, slots=True)
class Pending:
    """A claim or sweep written ahead and not yet resolved."""

    tx_hash: str
    network: str
    kind: str  # "claim" | "settle"
    rows: dict[str, Any]
    created_at: datetime
    age: timedelta

    @property
    def claims(self) -> list[tuple[str, int]]:
        """A claim's (channel id, total) rows, as record_claim takes them."""
        return [(channel_id, int(total)) for channel_id, total in self.rows.get("claims", [])]


@dataclass(frozen=True, slots=True)
class Redelivery:
    payment_id: int
    state: str


def claim_rows(claims: list[tuple[str, int]]) -> dict[str, Any]:
    """What a claim carries, as stored (totals as text: they may exceed a JSON number's precision)."""
    return {"claims": [[channel_id.lower(), str(total)] for channel_id, total in claims]}


def sweep_rows(receiver: str, token: str) -> dict[str, Any]:
    return {"receiver": receiver.lower(), "token": token.lower()}


async def write_ahead(pool: asyncpg.Pool, tx_hash: str, network: str, kind: str, rows: dict[str, Any]) -> None:
    """Store a transaction's hash before it is broadcast. Raises LedgerError if it could not be stored, so
    the caller sends nothing."""
    if kind not in KINDS:
        raise LedgerError(f"a batch transaction is a claim or a settle, not {kind!r}")
    with translated():
        await pool.execute(queries["batch_pending_insert"], tx_hash.lower(), network, kind, json.dumps(rows))


async def open_pending(pool: asyncpg.Pool, network: str, limit: int = 100) -> list[Pending]:
    """The network's unresolved transactions: claims first, then sweeps, oldest first."""
    with translated():
        rows = await pool.fetch(queries["batch_pending_open"], network, limit)
    return [
        Pending(r["tx_hash"], r["network"], r["kind"], json.loads(r["rows"]), r["created_at"], r["age"]) for r in rows
    ]


async def resolve(pool: asyncpg.Pool, tx_hash: str, outcome: Outcome) -> bool:
    """Close a pending transaction; False if it was already resolved (or never written)."""
    with translated():
        return await pool.fetchval(queries["batch_pending_resolve"], tx_hash.lower(), outcome.value) is not None


async def take_redelivery(
    pool: asyncpg.Pool,
    *,
    payment_key: str,
    signature: str,
    resource: str,
    amount_atomic: int,
    booked_for_s: float,
    lease_s: float,
) -> Redelivery | None:
    """Lease the redelivery of the voucher sale under `payment_key` if it may be served again: the same
    signature, resource and price, booked `booked_for_s` ago or more and never delivered, no other retry on
    it. None: not redeliverable (the caller keeps its refusal)."""
    with translated():
        row = await pool.fetchrow(
            queries["batch_take_redelivery"], payment_key, signature, resource, amount_atomic, booked_for_s, lease_s
        )
    return None if row is None else Redelivery(row["id"], row["state"])


async def mark_delivered_many(pool: asyncpg.Pool, payment_ids: list[int]) -> None:
    """These voucher sales' answers were handed to their transports: they are never served again."""
    with translated():
        await pool.execute(queries["batch_mark_delivered"], payment_ids)
