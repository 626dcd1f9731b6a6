"""Refunds: an operator's refund of one sale, and the books' side of a batch payer's cooperative refund.

An operator refund (`refund_sale`) reverses the sale's revenue in a `reversal` entry of its settlement entry, and
records who asked and why in `payment_refunds` (one per sale: a second is refused). Where the money went decides
what the reversal credits:
- a sale whose money we hold (an `exact` sale settled, a voucher sale claimed on chain or swept) is owed back:
  `payable:refunds:<network>:<payer>` is credited and the operator sends it (README, "Refunds");
- a voucher sale not yet claimed is never collected: the payment becomes `refunded`, its receiver's receivable
  is credited, and its channel's `refunded_atomic` lowers every later claim of the channel (the settler claims
  charged - refunded; migration 0010 moves the vouchers such a claim covers). The caller holds the settler's lock
  of the network meanwhile, so no claim computed before the refund lands after it.

A cooperative refund (`hold_channel`, `write_ahead`, `resolve`) moves no account: the deposit refunded was never
ours. Its claim part is recorded by ledger/channels.py's `record_claim`; here it is the channel locked for the
refund, the transaction written ahead and resolved from its receipt, and the mirror updated.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from .channels import ChannelConfig
from .entries import insert_entry
from .errors import LedgerIntegrityError, translated
from .journal import Posting, gas_postings, receivable_account
from .sql import queries
from .states import PaymentState

PAYABLE = "payable"  # payment_refunds.kind: owed back to the payer, sent by the operator
VOUCHER_UNCLAIMED = "voucher_unclaimed"  # a voucher sale refunded before its claim: never collected
REFUNDABLE = (PaymentState.SETTLED, PaymentState.CLAIMED_ONCHAIN, PaymentState.ACCEPTED)


def payable_account(network: str, payer: str) -> str:
    """What the operator owes a payer for refunded sales whose money it holds."""
    return f"payable:refunds:{network}:{payer}"


@dataclass(frozen=True, slots=True)
class SaleRefund:
    id: int
    payment_id: int
    kind: str  # PAYABLE or VOUCHER_UNCLAIMED
    amount_atomic: int
    account: str  # what the reversal credited
    asset: str
    entry_id: int
    reason: str
    actor: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class RefundRefused:
    """Why a sale was not refunded: `unknown_payment`, `not_refundable` (nothing was charged, or its settlement is
    still open) or `already_refunded`."""

    error: str
    detail: str


@dataclass(frozen=True, slots=True)
class SaleTarget:
    """A sale as found before any lock: enough to know which locks its refund takes."""

    payment_id: int
    state: str
    network: str
    payer: str
    amount_atomic: int
    channel_id: str | None  # its voucher's channel: a batch sale


def _refund(row: asyncpg.Record) -> SaleRefund:
    return SaleRefund(**{f: row[f] for f in SaleRefund.__dataclass_fields__})


async def sale_target(pool: asyncpg.Pool, payment_id: int) -> SaleTarget | None:
    with translated():
        row = await pool.fetchrow(queries["refund_sale_target"], payment_id)
    if row is None:
        return None
    return SaleTarget(
        row["id"], row["state"], row["network"], row["payer"], int(row["amount_atomic"]), row["channel_id"]
    )


async def refund_sale(pool: asyncpg.Pool, payment_id: int, *, reason: str, actor: str) -> SaleRefund | RefundRefused:
    """Refund one sale (see the module docstring), in one transaction. For a batch sale the caller holds the
    settler's lock of its network (a claim computed earlier must not land after an unclaimed voucher's refund)."""
    reason, actor = reason.strip(), actor.strip()
    if not 1 <= len(reason) <= 500 or not 1 <= len(actor) <= 200:
        raise LedgerIntegrityError("a refund needs a reason (1 to 500 characters) and who asks (1 to 200)")
    target = await sale_target(pool, payment_id)
    if target is None:
        return RefundRefused("unknown_payment", f"no payment {payment_id}")
    with translated():
        async with pool.acquire() as connection, connection.transaction():
            channel = None
            if target.channel_id is not None:  # the channel's lock first, as record_claim takes them
                channel = await connection.fetchrow(queries["coop_refund_channel"], target.channel_id)
            payment = await connection.fetchrow(queries["refund_lock_payment"], payment_id)
            if (await connection.fetchrow(queries["refund_of_payment"], payment_id)) is not None:
                return RefundRefused("already_refunded", f"payment {payment_id} was refunded already")
            state = PaymentState(payment["state"])
            if state not in REFUNDABLE or (state == PaymentState.ACCEPTED and channel is None):
                return RefundRefused(
                    "not_refundable", f"payment {payment_id} is {state}: only a sale charged is refunded"
                )
            revenue = await connection.fetch(queries["refund_settlement_revenue"], payment_id)
            if len(revenue) != 1 or -int(revenue[0]["amount_atomic"]) != int(payment["amount_atomic"]):
                raise LedgerIntegrityError(f"payment {payment_id}'s settlement entry does not book its revenue")
            amount, asset = int(payment["amount_atomic"]), revenue[0]["asset"]
            if state == PaymentState.ACCEPTED:
                assert channel is not None
                kind = VOUCHER_UNCLAIMED
                account = receivable_account(channel["network"], channel["receiver"])
                await connection.execute(queries["refund_channel_unclaimed"], target.channel_id, amount)
            else:
                kind, account = PAYABLE, payable_account(target.network, target.payer)
            postings = [Posting(revenue[0]["account"], asset, amount), Posting(account, asset, -amount)]
            entry_id = await insert_entry(
                connection,
                "reversal",
                postings,
                payment_id=payment_id,
                reverses=revenue[0]["entry_id"],
                memo=f"refund: {reason}",
            )
            row = await connection.fetchrow(
                queries["refund_insert"], payment_id, kind, amount, account, asset, entry_id, reason, actor
            )
            if (
                kind == VOUCHER_UNCLAIMED
                and await connection.fetchval(queries["refund_voucher_unclaimed"], payment_id, "refunded") is None
            ):
                raise LedgerIntegrityError(f"payment {payment_id} moved while it was refunded")
    return _refund(row)


async def recent(pool: asyncpg.Pool, limit: int = 100, payment_id: int | None = None) -> list[dict[str, Any]]:
    """Operator refunds, newest first, with their payment's network, payer, scheme and state."""
    with translated():
        rows = await pool.fetch(queries["refunds_recent"], limit, payment_id)
    return [dict(r) for r in rows]


# ---- cooperative refunds ----


@dataclass(frozen=True, slots=True)
class HeldChannel:
    """A channel locked for a cooperative refund, as the ledger holds it."""

    config: ChannelConfig
    balance_atomic: int
    claimed_atomic: int
    charged_atomic: int
    refunded_atomic: int  # operator refunds of unclaimed vouchers: a claim is for charged - refunded
    signed_max_atomic: int | None
    signature: str | None
    withdraw_requested_at: int
    refund_nonce: int
    connection: asyncpg.Connection

    @property
    def claim_total_atomic(self) -> int:
        """What the channel's claim is for: everything charged, less what was refunded before a claim."""
        return self.charged_atomic - self.refunded_atomic

    async def mirror(
        self, *, balance_atomic: int, refund_nonce: int, withdraw_requested_at: int, withdrawal_amount_atomic: int
    ) -> None:
        """The chain's state of the channel, in the same transaction (its claimed total is record_claim's)."""
        with translated():
            await self.connection.execute(
                queries["coop_refund_mirror"],
                self.config.channel_id,
                balance_atomic,
                refund_nonce,
                withdraw_requested_at,
                withdrawal_amount_atomic,
            )


_TERMS = tuple(ChannelConfig.__dataclass_fields__)


@asynccontextmanager
async def hold_channel(pool: asyncpg.Pool, channel_id: str) -> AsyncIterator[HeldChannel | None]:
    """The channel's row lock for the length of a cooperative refund, in one transaction that commits on the way
    out (rolls back on an exception): a voucher booked on the channel, a claim recorded of it and an operator refund
    of its sales wait for it. None: no such channel. Nothing inside may wait on another connection's write to this
    channel (record_claim comes after). The body's own exceptions pass through untranslated."""
    with translated():
        connection = await pool.acquire()
    try:
        transaction = connection.transaction()
        with translated():
            await transaction.start()
            row = await connection.fetchrow(queries["coop_refund_channel"], channel_id.lower())
        try:
            yield (
                None
                if row is None
                else HeldChannel(
                    config=ChannelConfig(**{f: row[f] for f in _TERMS}),
                    balance_atomic=int(row["balance_atomic"]),
                    claimed_atomic=int(row["claimed_atomic"]),
                    charged_atomic=int(row["charged_atomic"]),
                    refunded_atomic=int(row["refunded_atomic"]),
                    signed_max_atomic=None if row["signed_max_atomic"] is None else int(row["signed_max_atomic"]),
                    signature=row["signature"],
                    withdraw_requested_at=int(row["withdraw_requested_at"]),
                    refund_nonce=int(row["refund_nonce"]),
                    connection=connection,
                )
            )
        except BaseException:
            with translated():
                await transaction.rollback()
            raise
        with translated():
            await transaction.commit()
    finally:
        with translated():
            await pool.release(connection)


@dataclass(frozen=True, slots=True)
class CoopRefund:
    """A cooperative refund transaction as recorded."""

    tx_hash: str
    channel_id: str
    network: str
    payer: str
    requested_atomic: int | None
    claim_atomic: int | None  # the claimed total its claim part set (None: it claimed nothing)
    refund_nonce: int
    outcome: str | None  # None while its receipt is unread; "refunded", "failed" or "dropped"
    refunded_atomic: int | None
    balance_after_atomic: int | None
    gas_cost_atomic: int | None
    created_at: datetime
    resolved_at: datetime | None


def _coop(row: asyncpg.Record) -> CoopRefund:
    values = {f: row[f] for f in CoopRefund.__dataclass_fields__}
    for name in ("requested_atomic", "claim_atomic", "refunded_atomic", "balance_after_atomic", "gas_cost_atomic"):
        values[name] = None if values[name] is None else int(values[name])
    values["refund_nonce"] = int(values["refund_nonce"])
    return CoopRefund(**values)


async def write_ahead(
    pool: asyncpg.Pool,
    tx_hash: str,
    *,
    channel_id: str,
    network: str,
    payer: str,
    requested_atomic: int | None,
    claim_atomic: int | None,
    refund_nonce: int,
) -> None:
    """Store a cooperative refund's hash before it is broadcast (on its own connection: committed at once).
    Raises LedgerError if it could not be stored, so the caller sends nothing."""
    with translated():
        await pool.execute(
            queries["coop_refund_write_ahead"],
            tx_hash.lower(),
            channel_id.lower(),
            network,
            payer.lower(),
            requested_atomic,
            claim_atomic,
            refund_nonce,
        )


async def resolve(
    pool: asyncpg.Pool | asyncpg.Connection,
    tx_hash: str,
    outcome: str,
    *,
    refunded_atomic: int | None = None,
    balance_after_atomic: int | None = None,
    gas_cost_atomic: int | None = None,
    relayer: str | None = None,
    network: str | None = None,
) -> bool:
    """Close a cooperative refund: `refunded` (with what it paid and the balance after), `failed` or `dropped`.
    The gas of a refund that claimed nothing is booked here (record_claim books a claiming one's). False if it
    was resolved already."""
    with translated():
        if isinstance(pool, asyncpg.Connection):
            return await _resolve(pool, tx_hash, outcome, refunded_atomic, balance_after_atomic, gas_cost_atomic,
                                  relayer, network)  # fmt: skip
        async with pool.acquire() as connection, connection.transaction():
            return await _resolve(
                connection, tx_hash, outcome, refunded_atomic, balance_after_atomic, gas_cost_atomic, relayer, network
            )


async def _resolve(
    connection: asyncpg.Connection,
    tx_hash: str,
    outcome: str,
    refunded_atomic: int | None,
    balance_after_atomic: int | None,
    gas_cost_atomic: int | None,
    relayer: str | None,
    network: str | None,
) -> bool:
    row = await connection.fetchrow(
        queries["coop_refund_resolve"], tx_hash.lower(), outcome, refunded_atomic, balance_after_atomic, gas_cost_atomic
    )
    if row is None:
        return False
    if row["claim_atomic"] is None and gas_cost_atomic and relayer and network and outcome != "dropped":
        postings = gas_postings(network=network, relayer=relayer, gas_cost_atomic=gas_cost_atomic)
        await insert_entry(connection, "adjustment", postings, memo=f"batch refund {tx_hash.lower()}")
    return True


async def open_refunds(pool: asyncpg.Pool | asyncpg.Connection, channel_id: str) -> list[CoopRefund]:
    """The channel's cooperative refunds whose receipts are still to be read, oldest first."""
    with translated():
        rows = await pool.fetch(queries["coop_refunds_open"], channel_id.lower())
    return [_coop(r) for r in rows]


async def channel_refunds(pool: asyncpg.Pool, channel_id: str) -> list[CoopRefund]:
    with translated():
        rows = await pool.fetch(queries["coop_refunds_of_channel"], channel_id.lower())
    return [_coop(r) for r in rows]
