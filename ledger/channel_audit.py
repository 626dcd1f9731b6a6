"""The ledger's side of reconciling batch-settlement: what the books hold per channel and which recorded claims
and sweeps to check, and the findings about them.

Reconcile (app/usecases/channel_reconcile.py) reads `channel_books` for a network, asks the contract for the
same channels, mirrors what the chain says (`channels.mirror_channel`) and raises or resolves findings here.
A finding's subject is a channel or a recorded batch transaction (migration 0012); payment findings stay in
ledger/audit.py. Nothing here touches the chain or the journal.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from .channels import ChannelConfig
from .errors import LedgerError, translated
from .sql import queries

CHANNEL_KINDS = (
    "channel_claimed_mismatch",
    "channel_claimed_above_charged",
    "channel_underfunded",
    "channel_withdrawal_unclaimed",
)
TX_KINDS = ("batch_tx_not_on_chain", "batch_tx_reverted", "batch_tx_mismatch")
_NO_CHANNEL = ""  # below every channel id: the first page


@dataclass(frozen=True, slots=True)
class ChannelBooks:
    """One channel as the ledger holds it."""

    config: ChannelConfig
    balance_atomic: int  # the mirror's, as last read from the chain
    claimed_atomic: int  # the mirror's claimed total
    charged_atomic: int  # what we charged in all (accepted vouchers)
    refunded_atomic: int  # of which refunded by the operator before a claim: never to be claimed
    recorded_claimed_atomic: int  # what the claims the ledger recorded add up to
    claim_in_flight: bool  # a claim of it was written ahead and is not resolved: the chain may be ahead of us
    last_payment_id: int | None  # its latest voucher's payment (None: never charged)
    withdraw_requested_at: int  # the mirror's pending withdrawal (unix s, 0: none), its amount, the refund nonce
    withdrawal_amount_atomic: int
    refund_nonce: int

    @property
    def channel_id(self) -> str:
        return self.config.channel_id

    @property
    def due_atomic(self) -> int:
        """What the payer owes us in all on this channel: charged, less sales refunded before their claim."""
        return self.charged_atomic - self.refunded_atomic


@dataclass(frozen=True, slots=True)
class RecordedTx:
    """A claim or sweep transaction as recorded (batch_transactions)."""

    tx_hash: str
    network: str
    kind: str  # "claim" | "settle"
    receiver: str | None
    token: str | None
    amount_atomic: int  # a sweep's amount; a claim's newly claimed total
    recorded_at: datetime


@dataclass(frozen=True, slots=True)
class OpenFinding:
    id: int
    channel_id: str | None
    batch_tx_hash: str | None
    network: str
    kind: str
    detail: str
    tx_hash: str | None
    amount_atomic: int | None
    first_seen_at: datetime
    last_seen_at: datetime


_TERMS = tuple(ChannelConfig.__dataclass_fields__)


async def channel_books(
    pool: asyncpg.Pool, network: str, after: str = _NO_CHANNEL, limit: int = 500
) -> list[ChannelBooks]:
    """The channels of `network` after channel id `after`, in id order: pass the last id back for the next page."""
    with translated():
        rows = await pool.fetch(queries["channel_audit_books"], network, after, limit)
    return [
        ChannelBooks(
            config=ChannelConfig(**{f: row[f] for f in _TERMS}),
            balance_atomic=int(row["balance_atomic"]),
            claimed_atomic=int(row["claimed_atomic"]),
            charged_atomic=int(row["charged_atomic"]),
            refunded_atomic=int(row["refunded_atomic"]),
            recorded_claimed_atomic=int(row["recorded_claimed_atomic"]),
            claim_in_flight=row["claim_in_flight"],
            last_payment_id=row["last_payment_id"],
            withdraw_requested_at=int(row["withdraw_requested_at"]),
            withdrawal_amount_atomic=int(row["withdrawal_amount_atomic"]),
            refund_nonce=int(row["refund_nonce"]),
        )
        for row in rows
    ]


async def transactions_to_check(pool: asyncpg.Pool, network: str, *, every: bool, limit: int) -> list[RecordedTx]:
    """Recorded claims and sweeps whose receipts were not yet found as booked (`every`: all of them), oldest first."""
    with translated():
        rows = await pool.fetch(queries["channel_audit_transactions"], network, every, limit)
    return [RecordedTx(**{**dict(row), "amount_atomic": int(row["amount_atomic"])}) for row in rows]


async def transaction_checked(pool: asyncpg.Pool, tx_hash: str, block: int) -> None:
    """The receipt agrees with the books: not read again unless every transaction is asked for."""
    with translated():
        await pool.execute(queries["channel_audit_tx_checked"], tx_hash, block)


async def flag_channel(
    pool: asyncpg.Pool,
    channel_id: str,
    network: str,
    kind: str,
    detail: str,
    amount_atomic: int | None = None,
    tx_hash: str | None = None,
) -> bool:
    """Raise (or see again) a finding about a channel; True if it is newly raised or reopened, as audit.flag."""
    if kind not in CHANNEL_KINDS:
        raise LedgerError(f"unknown channel finding {kind!r}; choose one of {', '.join(CHANNEL_KINDS)}")
    with translated():
        async with pool.acquire() as connection, connection.transaction():
            resolved = await connection.fetchval(queries["channel_flag_lock"], channel_id, None, kind)
            inserted = await connection.fetchval(
                queries["channel_flag_upsert_channel"], channel_id, network, kind, detail, tx_hash, amount_atomic
            )
    return bool(inserted) or resolved is True


async def flag_transaction(
    pool: asyncpg.Pool, tx_hash: str, network: str, kind: str, detail: str, amount_atomic: int | None = None
) -> bool:
    """Raise (or see again) a finding about a recorded claim or sweep; True if newly raised or reopened."""
    if kind not in TX_KINDS:
        raise LedgerError(f"unknown transaction finding {kind!r}; choose one of {', '.join(TX_KINDS)}")
    with translated():
        async with pool.acquire() as connection, connection.transaction():
            resolved = await connection.fetchval(queries["channel_flag_lock"], None, tx_hash, kind)
            inserted = await connection.fetchval(
                queries["channel_flag_upsert_tx"], tx_hash, network, kind, detail, amount_atomic
            )
    return bool(inserted) or resolved is True


async def resolve_channel(pool: asyncpg.Pool, channel_id: str, kinds: tuple[str, ...] = CHANNEL_KINDS) -> int:
    """The chain agrees: the channel's open findings of these kinds are resolved. Returns how many were open."""
    with translated():
        status = await pool.execute(queries["channel_flags_resolve"], channel_id, None, list(kinds))
    return int(status.split()[-1])


async def resolve_transaction(pool: asyncpg.Pool, tx_hash: str, kinds: tuple[str, ...] = TX_KINDS) -> int:
    with translated():
        status = await pool.execute(queries["channel_flags_resolve"], None, tx_hash, list(kinds))
    return int(status.split()[-1])


async def open_findings(pool: asyncpg.Pool, limit: int = 1000) -> list[OpenFinding]:
    """Open findings about channels and batch transactions, oldest first (payment findings: audit.open_flags)."""
    with translated():
        rows = await pool.fetch(queries["channel_flags_open"], limit)
    return [
        OpenFinding(
            **{**dict(row), "amount_atomic": None if row["amount_atomic"] is None else int(row["amount_atomic"])}
        )
        for row in rows
    ]
