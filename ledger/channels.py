"""batch-settlement's ledger side: the channel mirror, one voucher in flight per channel, acceptance, claims, sweeps.

A payer deposits into an on-chain channel once; each paid request carries a cumulative voucher. The request path:
`reserve_voucher` (the channel locked, the cumulative rule checked, the payment claimed and the channel reserved,
in one transaction) → `claims.advance` claimed → verified → served → `accept_voucher` (charged moves to the
voucher's ceiling and the sale is booked as revenue against `receivable:batch:<network>:<payTo>`), or
`release_voucher` (nothing charged; the same voucher may come again). A crashed request's reservation lapses
(`expire_reservations`, or the next reserve on that channel releases it). The settler: `owed_channels` → one claim
transaction → `record_claim` (payments → claimed_onchain, gas booked) → `settle(receiver, token)` →
`record_settlement` (→ settled, the receivable swept to the receiver's account); each hash is recorded once, so
a settler retrying after a crash books nothing twice. Every operation is one transaction; amounts are ints
(numeric(78,0) in SQL). Migration 0007 keeps the same rules in constraints and triggers; `ledger verify` rechecks.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, TypeVar

import asyncpg

from .claims import PaymentRecord
from .errors import LedgerError, LedgerIntegrityError, translated
from .journal import Posting, assert_balanced, asset_id, batch_sweep_postings, gas_postings, receivable_account
from .sql import queries
from .states import PaymentState

# The batch edges of `payment_transitions` (migration 0007), beside the ones ledger/claims.py knows.
BATCH_TRANSITIONS: frozenset[tuple[PaymentState, PaymentState]] = frozenset(
    {
        (PaymentState.SERVED, PaymentState.ACCEPTED),
        (PaymentState.ACCEPTED, PaymentState.CLAIMED_ONCHAIN),
        (PaymentState.CLAIMED_ONCHAIN, PaymentState.SETTLED),
    }
)
RESERVATION_EXPIRED = "reservation_expired"


class Refusal(StrEnum):
    """Why a voucher was refused (x402's `invalid_batch_settlement_evm_<reason>` where it has one)."""

    CHANNEL_NOT_FOUND = "channel_not_found"
    CHANNEL_BUSY = "channel_busy"  # another request on the channel is in flight
    CUMULATIVE_AMOUNT_MISMATCH = "cumulative_amount_mismatch"  # max != charged + price: answer a corrective 402
    CUMULATIVE_EXCEEDS_BALANCE = "cumulative_exceeds_balance"
    UNSETTLED_CAP = "unsettled_cap_exceeded"  # ours: too much is owed to us, unswept, across all channels
    VOUCHER_ALREADY_USED = "voucher_already_used"  # its payment key is held or consumed (UNIQUE key)


class ReservationLost(LedgerIntegrityError):
    """The voucher's reservation lapsed (and its payment was released) before it was accepted: nothing charged."""


@dataclass(frozen=True, slots=True)
class ChannelConfig:
    """A channel's immutable terms (the on-chain ChannelConfig) and its id on `network`."""

    channel_id: str
    network: str
    token: str
    payer: str
    payer_authorizer: str
    receiver: str
    receiver_authorizer: str
    withdraw_delay: int
    salt: str

    def normalized(self) -> ChannelConfig:
        return ChannelConfig(**{f: getattr(self, f).lower() if f in _HEX_TERMS else getattr(self, f) for f in _TERMS})


_TERMS = tuple(ChannelConfig.__dataclass_fields__)
_HEX_TERMS = ("channel_id", "token", "payer", "payer_authorizer", "receiver", "receiver_authorizer", "salt")


@dataclass(frozen=True, slots=True)
class Channel:
    config: ChannelConfig
    balance_atomic: int  # on-chain, as last mirrored
    claimed_atomic: int  # on-chain totalClaimed, as last mirrored or recorded
    charged_atomic: int  # cumulative accepted: what the payer owes us in all
    signed_max_atomic: int | None  # the last accepted voucher's ceiling, and its signature
    signature: str | None
    unsettled_atomic: int  # accepted or claimed, not yet swept
    withdraw_requested_at: int  # unix s, 0 = none
    withdrawal_amount_atomic: int
    refund_nonce: int
    reserved_payment_id: int | None
    reserved_until: datetime | None
    mirrored_at: datetime
    updated_at: datetime

    @property
    def channel_id(self) -> str:
        return self.config.channel_id


@dataclass(frozen=True, slots=True)
class Reserved:
    payment_id: int
    channel: Channel  # as it was before this reservation


@dataclass(frozen=True, slots=True)
class VoucherRefused:
    reason: Refusal
    channel: Channel | None  # for a corrective 402: charged, signed_max and signature
    detail: str


@dataclass(frozen=True, slots=True)
class OwedChannel:
    config: ChannelConfig
    charged_atomic: int  # the claim's totalClaimed
    claimed_atomic: int
    balance_atomic: int
    signed_max_atomic: int  # the claim's maxClaimableAmount, with its signature
    signature: str
    owed_atomic: int  # charged - claimed
    claimable_atomic: int  # min(charged, balance): a claim above the balance reverts the whole batch
    withdraw_requested_at: int


@dataclass(frozen=True, slots=True)
class Recorded:
    """A claim or sweep transaction as booked: the payments it moved and its journal entry (gas, sweep)."""

    tx_hash: str
    payment_ids: list[int]
    amount_atomic: int
    entry_id: int | None
    already_recorded: bool = False  # the same hash was recorded before: nothing booked now


@dataclass(frozen=True, slots=True)
class ChannelStatus:
    channel_id: str
    network: str
    token: str
    payer: str
    receiver: str
    balance_atomic: int
    charged_atomic: int
    owed_atomic: int  # charged, not yet claimed on chain
    claimed_atomic: int
    unsettled_atomic: int  # accepted or claimed, not yet swept
    settled_atomic: int  # swept to the receiver
    accepted_atomic: int
    claimed_booked_atomic: int
    vouchers: int
    withdraw_requested_at: int
    reserved_payment_id: int | None
    reserved_until: datetime | None
    mirrored_at: datetime
    updated_at: datetime


_T = TypeVar("_T")
_CLAIM = ("payment_key", "scheme_id", "network", "asset", "payer", "pay_to", "amount_atomic", "route", "resource")
_CLAIM += ("stream", "settlement_mode", "valid_before")  # claim_payment's parameters, in order
_INTS = {"withdraw_requested_at", "refund_nonce", "vouchers"}  # beside every *_atomic column (numeric -> Decimal)


def _build(cls: type[_T], row: asyncpg.Record) -> _T:
    """A dataclass from a row: `config` from the channel's terms, amounts as ints."""
    values: dict[str, Any] = {
        name: (None if row[name] is None else int(row[name]))
        if name.endswith("_atomic") or name in _INTS
        else row[name]
        for name in cls.__dataclass_fields__  # type: ignore[attr-defined]
        if name != "config"
    }
    if "config" in cls.__dataclass_fields__:  # type: ignore[attr-defined]
        values["config"] = ChannelConfig(**{f: row[f] for f in _TERMS})
    return cls(**values)


def payment_key(network: str, channel_id: str, max_claimable_atomic: int) -> str:
    """A batch payment's key: a replayed voucher meets the payments' UNIQUE key."""
    return f"{network}:{channel_id.lower()}:{max_claimable_atomic}"


async def mirror_channel(
    pool: asyncpg.Pool,
    config: ChannelConfig,
    *,
    balance_atomic: int,
    claimed_atomic: int,
    withdraw_requested_at: int = 0,
    withdrawal_amount_atomic: int = 0,
    refund_nonce: int = 0,
) -> Channel:
    """Insert or update a channel's on-chain mirror. Charged never decreases (it is raised to the chain's
    claimed total if that is higher); different terms under a known id are refused."""
    config = config.normalized()
    with translated():
        async with pool.acquire() as connection, connection.transaction():
            row = await connection.fetchrow(
                queries["batch_channel_upsert"],
                *(getattr(config, f) for f in _TERMS),
                balance_atomic,
                claimed_atomic,
                withdraw_requested_at,
                withdrawal_amount_atomic,
                refund_nonce,
            )
            channel = _build(Channel, row)
            if channel.config != config:
                raise LedgerIntegrityError(f"channel {config.channel_id} is known with other terms")
    return channel


async def channel(pool: asyncpg.Pool, channel_id: str) -> Channel | None:
    with translated():
        row = await pool.fetchrow(queries["batch_channel"], channel_id.lower())
    return None if row is None else _build(Channel, row)


async def _release(connection: asyncpg.Connection, channel_id: str, payment_id: int, reason: str) -> bool:
    """Clear the channel's reservation if it is this payment's, and release the payment if still in flight."""
    await connection.fetchval(queries["batch_unreserve"], channel_id, payment_id)
    return await connection.fetchval(queries["batch_release_payment"], payment_id, reason) is not None


def _cumulative_refusal(found: Channel, max_claimable_atomic: int, price_atomic: int) -> VoucherRefused | None:
    if max_claimable_atomic != found.charged_atomic + price_atomic:
        detail = f"maxClaimableAmount {max_claimable_atomic} is not charged {found.charged_atomic} + {price_atomic}"
        return VoucherRefused(Refusal.CUMULATIVE_AMOUNT_MISMATCH, found, detail)
    if max_claimable_atomic > found.balance_atomic:
        detail = f"maxClaimableAmount {max_claimable_atomic} exceeds the balance {found.balance_atomic}"
        return VoucherRefused(Refusal.CUMULATIVE_EXCEEDS_BALANCE, found, detail)
    return None


async def reserve_voucher(
    pool: asyncpg.Pool,
    *,
    record: PaymentRecord,
    channel_id: str,
    max_claimable_atomic: int,
    price_atomic: int,
    signature: str,
    reservation_s: float,
    max_unsettled_atomic: int | None = None,
) -> Reserved | VoucherRefused:
    """Check a voucher against its channel and, if it may be served, claim its payment (state `claimed`: the
    caller advances it) and reserve the channel for it until `reservation_s` from now. One transaction under
    the channel's row lock: of concurrent reserves on one channel, across processes, one wins."""
    channel_id = channel_id.lower()
    if record.payment_key != (key := payment_key(record.network, channel_id, max_claimable_atomic)):
        raise LedgerError(f"a batch payment's key must be {key}")
    if record.amount_atomic != price_atomic or price_atomic <= 0:
        raise LedgerError("a batch payment's amount is the request's price, which must be positive")
    with translated():
        async with pool.acquire() as connection, connection.transaction():
            row = await connection.fetchrow(queries["batch_channel_lock"], channel_id)
            if row is None:
                return VoucherRefused(Refusal.CHANNEL_NOT_FOUND, None, f"no channel {channel_id}")
            found = _build(Channel, row)
            terms = (found.config.network, found.config.token, found.config.receiver)
            if (record.network, record.asset.lower(), record.pay_to.lower()) != terms:
                raise LedgerError(f"payment {record.payment_key} does not match channel {channel_id}'s terms")
            if found.reserved_payment_id is not None:
                if row["reservation_live"]:
                    return VoucherRefused(Refusal.CHANNEL_BUSY, found, "another request on this channel is in flight")
                await _release(connection, channel_id, found.reserved_payment_id, RESERVATION_EXPIRED)
            if (refused := _cumulative_refusal(found, max_claimable_atomic, price_atomic)) is not None:
                return refused
            if max_unsettled_atomic is not None:
                await connection.execute(queries["batch_cap_lock"])
                unsettled = int(await connection.fetchval(queries["batch_unsettled_total"]))
                if unsettled + price_atomic > max_unsettled_atomic:
                    return VoucherRefused(
                        Refusal.UNSETTLED_CAP, found, f"{unsettled} is owed unswept; the cap is {max_unsettled_atomic}"
                    )
            payment_id = await connection.fetchval(queries["claim_payment"], *(getattr(record, f) for f in _CLAIM))
            if payment_id is None:
                return VoucherRefused(Refusal.VOUCHER_ALREADY_USED, found, f"{record.payment_key} is held or used")
            await connection.execute(
                queries["batch_voucher_upsert"], payment_id, channel_id, max_claimable_atomic, signature
            )
            if (
                await connection.execute(queries["batch_reserve"], channel_id, payment_id, price_atomic, reservation_s)
                != "UPDATE 1"
            ):
                raise LedgerIntegrityError(f"channel {channel_id} could not be reserved")
    return Reserved(payment_id, found)


async def _move(connection: asyncpg.Connection, payment_id: int, before: PaymentState, after: PaymentState) -> None:
    if await connection.fetchval(queries["advance_payment"], payment_id, before, after, None, None) is None:
        raise LedgerIntegrityError(f"payment {payment_id} is no longer {before}; not moving it to {after}")


async def accept_voucher(
    pool: asyncpg.Pool,
    payment_id: int,
    channel_id: str,
    max_claimable_atomic: int,
    signature: str,
    postings: Sequence[Posting],
    *,
    memo: str | None = None,
) -> int:
    """The reserved voucher's data was served: the payment → accepted (through served), the channel's charged
    total and ceiling → the voucher's, its signature kept, the reservation cleared, and the sale booked (a
    'settlement' entry, e.g. `journal.batch_acceptance_postings`), all at once. Returns the entry id.
    Raises ReservationLost if the reservation lapsed first (the payment was released: nothing charged)."""
    assert_balanced(postings)
    channel_id = channel_id.lower()
    with translated():
        async with pool.acquire() as connection, connection.transaction():
            row = await connection.fetchrow(queries["batch_channel_lock"], channel_id)
            voucher = await connection.fetchrow(queries["batch_voucher_of_payment"], payment_id)
            if row is None or voucher is None or voucher["channel_id"] != channel_id:
                raise LedgerIntegrityError(f"payment {payment_id} is no voucher of channel {channel_id}")
            if int(voucher["max_claimable_atomic"]) != max_claimable_atomic:
                raise LedgerIntegrityError(f"payment {payment_id}'s voucher is not for {max_claimable_atomic}")
            amount = int(voucher["amount_atomic"])
            owed = (receivable_account(row["network"], row["receiver"]), asset_id(row["network"], row["token"]))
            revenue = -sum(p.amount_atomic for p in postings if p.account.startswith("revenue:"))
            receivable = sum(p.amount_atomic for p in postings if (p.account, p.asset) == owed)
            if revenue != amount or receivable != amount:
                raise LedgerIntegrityError(
                    f"the postings book {revenue} revenue, {receivable} owed; the price is {amount}"
                )
            state = PaymentState(voucher["state"])
            if row["reserved_payment_id"] != payment_id or state not in (PaymentState.VERIFIED, PaymentState.SERVED):
                raise ReservationLost(f"payment {payment_id} is {state} and no longer holds channel {channel_id}")
            if state == PaymentState.VERIFIED:
                await _move(connection, payment_id, PaymentState.VERIFIED, PaymentState.SERVED)
            await _move(connection, payment_id, PaymentState.SERVED, PaymentState.ACCEPTED)
            entry_id: int = await connection.fetchval(
                queries["insert_journal_entry"], payment_id, "settlement", None, memo
            )
            await _post(connection, entry_id, postings)
            if (
                await connection.fetchval(
                    queries["batch_accept_channel"], channel_id, max_claimable_atomic, signature, amount, payment_id
                )
                is None
            ):
                raise LedgerIntegrityError(
                    f"channel {channel_id} was charged {row['charged_atomic']}, not {max_claimable_atomic} - {amount}"
                )
    return entry_id


async def _post(connection: asyncpg.Connection, entry_id: int, postings: Sequence[Posting]) -> None:
    await connection.execute(
        queries["insert_journal_postings"],
        entry_id,
        [p.account for p in postings],
        [p.asset for p in postings],
        [p.amount_atomic for p in postings],
    )


async def release_voucher(pool: asyncpg.Pool, payment_id: int, channel_id: str, reason: str) -> bool:
    """Give up a reserved voucher (verification failed, the handler failed): nothing charged, the channel free,
    the payment released (the same voucher may be presented again). False if it was no longer in flight."""
    with translated():
        async with pool.acquire() as connection, connection.transaction():
            await connection.fetchrow(queries["batch_channel_lock"], channel_id.lower())
            return await _release(connection, channel_id.lower(), payment_id, reason)


async def expire_reservations(pool: asyncpg.Pool, now: datetime | None = None, *, limit: int = 100) -> list[int]:
    """Release the payments of reservations past their time (at `now`, else the database's clock): a request
    that crashed or hung. Returns the payment ids released."""
    released: list[int] = []
    with translated():
        async with pool.acquire() as connection, connection.transaction():
            for row in await connection.fetch(queries["batch_expired_reservations"], now, limit):
                if await _release(connection, row["channel_id"], row["reserved_payment_id"], RESERVATION_EXPIRED):
                    released.append(row["reserved_payment_id"])
    return released


async def owed_channels(pool: asyncpg.Pool, network: str, limit: int = 100) -> list[OwedChannel]:
    """Channels on `network` whose accepted vouchers are not all claimed on chain, with what a claim needs."""
    with translated():
        rows = await pool.fetch(queries["batch_owed"], network, limit)
    return [_build(OwedChannel, row) for row in rows]


async def _recorded_before(
    connection: asyncpg.Connection, tx_hash: str, network: str, kind: str, amount_atomic: int | None = None
) -> Recorded | None:
    await connection.execute(queries["batch_tx_lock"], tx_hash)
    row = await connection.fetchrow(queries["batch_tx_by_hash"], tx_hash)
    if row is None:
        return None
    if (row["network"], row["kind"]) != (network, kind) or (
        amount_atomic is not None and int(row["amount_atomic"]) != amount_atomic
    ):
        raise LedgerIntegrityError(f"transaction {tx_hash} was recorded as another {row['kind']} on {row['network']}")
    return Recorded(tx_hash, [], int(row["amount_atomic"]), row["entry_id"], already_recorded=True)


async def _adjustment(connection: asyncpg.Connection, postings: list[Posting], memo: str) -> int | None:
    if not postings:
        return None
    assert_balanced(postings)
    entry_id: int = await connection.fetchval(queries["insert_journal_entry"], None, "adjustment", None, memo)
    await _post(connection, entry_id, postings)
    return entry_id


async def record_claim(
    pool: asyncpg.Pool,
    network: str,
    claims: Sequence[tuple[str, int]],
    tx_hash: str,
    gas_cost_atomic: int | None,
    relayer: str | None,
) -> Recorded:
    """A claim transaction landed: each channel's claimed total → `total_claimed` (never above what we charged),
    its accepted payments up to that ceiling → claimed_onchain (tx_hash = the claim), and the relayer's gas
    booked as an adjustment entry. Recording the same hash again books nothing."""
    tx_hash = tx_hash.lower()
    moved: list[int] = []
    delta = 0
    with translated():
        async with pool.acquire() as connection, connection.transaction():
            if (before := await _recorded_before(connection, tx_hash, network, "claim")) is not None:
                return before
            for channel_id, total in sorted((c.lower(), t) for c, t in claims):
                row = await connection.fetchrow(queries["batch_channel_lock"], channel_id)
                if row is None or row["network"] != network:
                    raise LedgerIntegrityError(f"claim {tx_hash}: no channel {channel_id} on {network}")
                if total > row["charged_atomic"]:
                    raise LedgerIntegrityError(
                        f"claim {tx_hash}: {total} claimed on {channel_id}, which was charged {row['charged_atomic']}"
                    )
                delta += max(0, total - int(row["claimed_atomic"]))
                await connection.execute(queries["batch_claim_channel"], channel_id, total)
                claimed = await connection.fetch(queries["batch_mark_claimed"], channel_id, total, tx_hash)
                moved += [r["id"] for r in claimed]
            gas = gas_postings(network=network, relayer=relayer or "", gas_cost_atomic=gas_cost_atomic or 0)
            entry_id = await _adjustment(
                connection, gas if relayer and gas_cost_atomic else [], f"batch claim {tx_hash}"
            )
            row = (tx_hash, network, "claim", None, None, delta, gas_cost_atomic, relayer, entry_id)
            await connection.execute(queries["batch_tx_insert"], *row)
    return Recorded(tx_hash, moved, delta, entry_id)


async def record_settlement(
    pool: asyncpg.Pool,
    network: str,
    receiver: str,
    token: str,
    tx_hash: str,
    amount_atomic: int,
    gas_cost_atomic: int | None,
    relayer: str | None,
) -> Recorded:
    """`settle(receiver, token)` landed and swept `amount_atomic`: the claimed payments of that receiver and token
    → settled (tx_hash = the sweep), whole claims in the order they were recorded, and one adjustment entry moves
    their sum from the receivable to the receiver's account, with the gas. The amount must equal the sum of the
    oldest claims (else nothing is booked: reconcile it). Recording the same hash again books nothing."""
    tx_hash, receiver, token = tx_hash.lower(), receiver.lower(), token.lower()
    with translated():
        async with pool.acquire() as connection, connection.transaction():
            if (before := await _recorded_before(connection, tx_hash, network, "settle", amount_atomic)) is not None:
                return before
            claimed = await connection.fetch(queries["batch_sweepable"], network, receiver, token)
            rows = [r for r in claimed if r["through_claim_atomic"] <= amount_atomic]  # whole claims, oldest first
            total = sum(int(r["amount_atomic"]) for r in rows)
            if total != amount_atomic:
                raise LedgerIntegrityError(
                    f"sweep {tx_hash} moved {amount_atomic}; the claimed sales of {receiver} in {token} sum to {total}"
                    f" in whole claims, {sum(int(r['amount_atomic']) for r in claimed)} in all"
                )
            ids = [r["id"] for r in rows]
            if len(await connection.fetch(queries["batch_mark_settled"], ids, tx_hash)) != len(ids):
                raise LedgerIntegrityError(f"sweep {tx_hash}: a claimed payment moved meanwhile")
            per_channel: dict[str, int] = defaultdict(int)
            for r in rows:
                per_channel[r["channel_id"]] += int(r["amount_atomic"])
            await connection.execute(queries["batch_channels_swept"], list(per_channel), list(per_channel.values()))
            swept = dict(network=network, asset=token, receiver=receiver, amount_atomic=amount_atomic)
            postings = batch_sweep_postings(**swept, relayer=relayer, gas_cost_atomic=gas_cost_atomic)
            entry_id = await _adjustment(connection, postings, f"batch settle {tx_hash}")
            row = (tx_hash, network, "settle", receiver, token, amount_atomic, gas_cost_atomic, relayer, entry_id)
            await connection.execute(queries["batch_tx_insert"], *row)
    return Recorded(tx_hash, ids, amount_atomic, entry_id)


async def batch_status(pool: asyncpg.Pool, network: str | None = None) -> list[ChannelStatus]:
    """Per channel: balance, charged, owed (unclaimed), claimed, unsettled and settled (`worldgate batch status`)."""
    with translated():
        rows = await pool.fetch(queries["batch_status"], network)
    return [_build(ChannelStatus, row) for row in rows]
