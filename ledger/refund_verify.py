"""`ledger verify`'s checks of refunds (migration 0010), run by ledger/verify.py in its snapshot:

- `refund_entry`: each refund's reversal reverses its sale's settlement entry, debiting revenue and crediting the
  refund's account by the refunded amount; an unclaimed voucher's refund leaves its payment `refunded` and credits
  its receiver's receivable, any other is a payable of a sale whose money we hold; a refunded sale has no other
  reversal, and no payment is `refunded` without its refund
- `refund_transfer`: each transfer that paid a refund owed (migration 0017) is booked by its own entry, debiting
  the refund's payable and crediting the sender's on-chain account by the refund's amount
- `refund_payable`: each `payable:refunds:*` account holds exactly what refunds owe that payer, less the
  transfers that paid them
- `refund_channel`: a channel's refunded total is the sum of its vouchers refunded before their claim, and what it
  claimed plus that is within what it charged

A voucher sale refunded before its claim keeps its settlement entry (journal entries are immutable) while its
payment leaves `accepted`: `booked_entries` is verify_booked_entries without those, which `refund_entry` checks.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

Fetch = Callable[..., Awaitable[list[Any]]]
Describe = Callable[[Mapping[str, Any]], str]

CHECKS = ("refund_entry", "refund_transfer", "refund_payable", "refund_channel")
TRIGGERS: dict[str, str] = {
    "payment_refunds_append_only": "payment_refunds",
    "payment_refunds_no_truncate": "payment_refunds",
    "payments_refunded_booked": "payments",
    "batch_channels_refunded_guard": "batch_channels",
    "batch_transactions_cover_refunded": "batch_transactions",
    "batch_refunds_guard": "batch_refunds",
    "batch_refunds_no_delete": "batch_refunds",
    "batch_refunds_no_truncate": "batch_refunds",
    "refund_transfers_match": "refund_transfers",  # 0017
    "refund_transfers_append_only": "refund_transfers",
    "refund_transfers_no_truncate": "refund_transfers",
}


def _refunded_voucher(row: Mapping[str, Any]) -> bool:
    return row["state"] == "refunded" and bool(row["batch"]) and row["revenue_atomic"] == row["amount_atomic"]


async def booked_entries(fetch: Fetch, limit: int) -> list[dict[str, Any]]:
    """verify_booked_entries' violations, less the settlement entries of vouchers refunded before their claim (each
    still books its revenue; `refund_entry` checks its refund). At most `limit`, `total` counting the rest."""
    [excused] = await fetch("verify_refunded_sales")
    skip = int(excused["excused"])
    rows = [dict(r) for r in await fetch("verify_booked_entries", limit + skip)]
    kept = [r for r in rows if not _refunded_voucher(r)][:limit]
    return [{**r, "total": int(r["total"]) - skip} for r in kept]


async def checks(fetch: Fetch, limit: int) -> list[tuple[str, list[Any], Describe]]:
    """The refund checks' violations, each with how to say one."""
    return [
        (
            "refund_entry",
            await fetch("verify_refund_entries", limit),
            lambda r: f"payment {r['payment_id']}: {r['detail']}",
        ),
        (
            "refund_transfer",
            await fetch("verify_refund_transfers", limit),
            lambda r: f"refund {r['refund_id']}: {r['detail']}",
        ),
        (
            "refund_payable",
            await fetch("verify_refund_payables", limit),
            lambda r: (
                f"account {r['account']} in {r['asset']} holds {r['posted_atomic']} owed; "
                f"its refunds owe {r['owed_atomic']}"
            ),
        ),
        (
            "refund_channel",
            await fetch("verify_refund_channels", limit),
            lambda r: f"channel {r['channel_id']}: {r['detail']}",
        ),
    ]


async def counts(fetch: Fetch) -> dict[str, int]:
    [row] = await fetch("verify_refund_counts")
    return {k: int(v) for k, v in dict(row).items()}
