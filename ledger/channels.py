"""batch-settlement's ledger side: the channel mirror, claims and sweeps (vouchers are booked in voucher_bookings.py).

A payer deposits into an on-chain channel once; each paid request carries a cumulative voucher, booked once its
data is ready (ledger/voucher_bookings.py). The settler: `owed_channels` → one claim transaction →
`record_claim` (payments → claimed_onchain, gas booked) → `settle(receiver, token)` → `record_settlement`
(→ settled, the receivable swept to the receiver's account); each hash is recorded once, so a settler retrying
after a crash books nothing twice. Every operation is one transaction; amounts are ints (numeric(78,0) in SQL).
Migrations 0007 and 0009 keep the same rules in constraints, triggers and functions; `ledger verify` rechecks.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, TypeVar

import asyncpg

from .entries import insert_entry
from .errors import LedgerIntegrityError, translated
from .journal import Posting, batch_sweep_postings, gas_postings
from .sql import queries
from .states import PaymentState

# The batch edges of `payment_transitions` (migrations 0007, 0010), beside the ones ledger/claims.py knows.
BATCH_TRANSITIONS: frozenset[tuple[PaymentState, PaymentState]] = frozenset(
    {
        (PaymentState.SERVED, PaymentState.ACCEPTED),
        (PaymentState.ACCEPTED, PaymentState.CLAIMED_ONCHAIN),
        (PaymentState.CLAIMED_ONCHAIN, PaymentState.SETTLED),
        (PaymentState.ACCEPTED, PaymentState.REFUNDED),  # the operator refunded it before its claim (0010)
    }
)


class Refusal(StrEnum):
    """Why a voucher was refused (x402's `invalid_batch_settlement_evm_<reason>` where it has one)."""

    CHANNEL_NOT_FOUND = "channel_not_found"
    CUMULATIVE_AMOUNT_MISMATCH = "cumulative_amount_mismatch"  # max != charged + price: answer a corrective 402
    CUMULATIVE_EXCEEDS_BALANCE = "cumulative_exceeds_balance"
    UNSETTLED_CAP = "unsettled_cap_exceeded"  # ours: too much is owed to us, unswept, across all channels
    VOUCHER_ALREADY_USED = "voucher_already_used"  # its payment key is held or consumed (UNIQUE key)


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
    mirrored_at: datetime
    updated_at: datetime

    @property
    def channel_id(self) -> str:
        return self.config.channel_id

    @property
    def chargeable_atomic(self) -> int:
        """What may be charged: the balance, less a pending withdrawal (which the payer may finalize once its
        delay ends, taking min(amount, balance - claimed)); never less than what is claimed (migration 0009)."""
        if not self.withdraw_requested_at:
            return self.balance_atomic
        return max(self.claimed_atomic, self.balance_atomic - self.withdrawal_amount_atomic)


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
    mirrored_at: datetime
    updated_at: datetime


_T = TypeVar("_T")
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


async def channels_by_id(pool: asyncpg.Pool | asyncpg.Connection, channel_ids: Sequence[str]) -> dict[str, Channel]:
    with translated():
        rows = await pool.fetch(queries["batch_channels_by_id"], [c.lower() for c in channel_ids])
    return {row["channel_id"]: _build(Channel, row) for row in rows}


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
    return await insert_entry(connection, "adjustment", postings, memo=memo) if postings else None


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
