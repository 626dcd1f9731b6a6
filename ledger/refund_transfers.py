"""The operator's transfer of a refund owed, booked against its payable (migration 0017).

A refund of a sale whose money we hold credits `payable:refunds:<network>:<payer>` (refunds.py); the operator
sends that amount from the sale's payTo. Once the transfer is found on chain (app/usecases/refund_transfer.py
reads it), `record` books it: one `adjustment` entry debiting the payable and crediting payTo's on-chain account,
and one `refund_transfers` row naming the transaction. A refund is paid once, and a transaction pays one refund.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from .entries import insert_entry
from .errors import LedgerIntegrityError, translated
from .journal import Posting, onchain_account
from .refunds import PAYABLE, RefundRefused
from .sql import queries


@dataclass(frozen=True, slots=True)
class OwedRefund:
    """A refund as its transfer is checked against: who is owed how much of what, and from where it is sent."""

    refund_id: int
    payment_id: int
    kind: str  # refunds.PAYABLE or VOUCHER_UNCLAIMED: only a payable is paid by a transfer
    amount_atomic: int
    account: str  # the payable
    asset: str  # <network>/<token>, as the journal spells it
    network: str
    payer: str  # who receives the transfer
    pay_to: str  # who sends it
    token: str  # the token's address (mint on Solana)
    sent_tx: str | None  # the transfer already booked for it


@dataclass(frozen=True, slots=True)
class RefundTransfer:
    id: int
    refund_id: int
    network: str
    tx_hash: str
    sender: str  # the sale's payTo
    amount_atomic: int
    entry_id: int
    actor: str
    created_at: datetime


def transaction_id(network: str, tx_hash: str) -> str:
    """How a transaction is stored: EVM hashes in lower case; Solana signatures are base58, case matters."""
    return tx_hash.strip().lower() if network.startswith("eip155:") else tx_hash.strip()


async def owed(pool: asyncpg.Pool, refund_id: int) -> OwedRefund | None:
    with translated():
        row = await pool.fetchrow(queries["refund_transfer_target"], refund_id)
    if row is None:
        return None
    return OwedRefund(
        refund_id=row["id"],
        payment_id=row["payment_id"],
        kind=row["kind"],
        amount_atomic=int(row["amount_atomic"]),
        account=row["account"],
        asset=row["asset"],
        network=row["network"],
        payer=row["payer"],
        pay_to=row["pay_to"],
        token=row["token"],
        sent_tx=row["sent_tx"],
    )


def refusal(refund: OwedRefund | None, refund_id: int) -> RefundRefused | None:
    """Why no transfer is booked for this refund, before the chain is asked; None if one may be."""
    if refund is None:
        return RefundRefused("unknown_refund", f"no refund {refund_id}")
    if refund.kind != PAYABLE:
        return RefundRefused(
            "not_owed", f"refund {refund_id} was never collected ({refund.kind}): the payer kept it in its channel"
        )
    if refund.sent_tx is not None:
        return RefundRefused("already_sent", f"refund {refund_id} was paid by {refund.sent_tx}")
    return None


async def record(pool: asyncpg.Pool, refund: OwedRefund, tx_hash: str, *, actor: str) -> RefundTransfer | RefundRefused:
    """Book `tx_hash` (found on chain moving exactly what `refund` owes, from its payTo to its payer) as the
    refund's transfer, in one transaction under the refund's row lock."""
    actor = actor.strip()
    if not 1 <= len(actor) <= 200:
        raise LedgerIntegrityError("who records a refund's transfer is 1 to 200 characters")
    tx = transaction_id(refund.network, tx_hash)
    with translated():
        async with pool.acquire() as connection, connection.transaction():
            await connection.fetchrow(queries["refund_transfer_lock"], refund.refund_id)
            done = await connection.fetchrow(queries["refund_transfer_of_refund"], refund.refund_id)
            if done is not None:
                return RefundRefused("already_sent", f"refund {refund.refund_id} was paid by {done['tx_hash']}")
            other = await connection.fetchval(queries["refund_transfer_of_tx"], refund.network, tx)
            if other is not None:
                return RefundRefused("transfer_already_used", f"{tx} already paid refund {other}")
            postings = [
                Posting(refund.account, refund.asset, refund.amount_atomic),
                Posting(onchain_account(refund.network, refund.pay_to), refund.asset, -refund.amount_atomic),
            ]
            entry_id = await insert_entry(connection, "adjustment", postings, memo=f"refund {refund.refund_id} sent")
            row = await connection.fetchrow(
                queries["refund_transfer_insert"],
                refund.refund_id,
                refund.network,
                tx,
                refund.pay_to,
                refund.amount_atomic,
                entry_id,
                actor,
            )
    values = {f: row[f] for f in RefundTransfer.__dataclass_fields__}
    return RefundTransfer(**values | {"amount_atomic": int(values["amount_atomic"])})
