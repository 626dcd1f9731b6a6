"""The operator's refund of one sale (`worldgate ledger refund`, POST /admin/api/payments/{id}/refund).

The ledger does the booking (ledger/refunds.py `refund_sale`): a reversal of the sale's revenue, and either a
payable to the payer (a sale whose money we hold: the operator sends it) or, for a voucher sale not yet claimed,
a lower claim of its channel. What is decided here is the lock: a batch sale is refunded under the settler's lock of
its network (batch_settler.py takes it for every claim and sweep), so a claim computed before the refund can never
land after it and take money the ledger says was refunded.
"""

from __future__ import annotations

import asyncpg

import ledger
from app.usecases.channel_reconcile import settler_lock
from ledger.refunds import RefundRefused, SaleRefund


async def refund_sale(pool: asyncpg.Pool, payment_id: int, *, reason: str, actor: str) -> SaleRefund | RefundRefused:
    """Refund payment `payment_id` once, as `actor`, for `reason`. Raises LedgerIntegrityError on a reason or actor
    out of bounds (1 to 500, 1 to 200 characters)."""
    target = await ledger.refunds.sale_target(pool, payment_id)
    if target is None:
        return RefundRefused("unknown_payment", f"no payment {payment_id}")
    if target.channel_id is None:
        return await ledger.refunds.refund_sale(pool, payment_id, reason=reason, actor=actor)
    async with ledger.locks.advisory_lock(pool, settler_lock(target.network)):
        return await ledger.refunds.refund_sale(pool, payment_id, reason=reason, actor=actor)
