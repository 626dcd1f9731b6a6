"""`ledger verify`: recheck, from the stored rows, every rule the ledger's triggers are meant to enforce.

The triggers stop ordinary writes from breaking the books; a superuser can still disable them,
edit rows, and re-enable them. Verify recomputes what must hold and names each violation:

- `entry_postings`: every journal entry has at least two postings
- `entry_balanced`: every entry sums to zero per asset
- `settlement_entry`: a settlement entry credits revenue with its payment's amount, and the payment is settled
  (or is a batch-settlement sale accepted or claimed on chain: its entry is booked at acceptance)
- `settled_payment`: every settled payment has exactly one settlement entry
- `account_balances`: the trigger-kept balances equal the postings summed per (account, asset), row for row
- `event_chain`: each payment's events are a chain of allowed steps from NULL to its current state
- `batch_payment`: a batch sale accepted, claimed on chain or settled has one acceptance entry debiting its
  receiver's receivable by its amount; only batch sales (with a voucher) are ever accepted or claimed on chain
- `batch_receivable`: each `receivable:batch:*` account holds exactly its receiver's accepted and claimed sales
  (a sweep never booked, or booked twice, shows here)
- `batch_channel`: a channel's unsettled total is the sum of its accepted and claimed sales, its charged total
  covers every voucher it booked, and its reservation holds one of its own vouchers in flight
- `batch_sweep`: a recorded sweep settled, and took from the receivables, exactly its amount; every settled
  batch sale names a recorded sweep
- `refund_entry`, `refund_transfer`, `refund_payable`, `refund_channel`: refunds (ledger/refund_verify.py)
- `triggers`: the protective triggers exist and fire

Each check is one set-based statement (no query per row), all read in one snapshot; at most `limit`
violations are listed per check, with a final line counting the rest.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import asyncpg

from . import refund_verify
from .errors import LedgerError, translated
from .sql import queries
from .states import PaymentState

# Trigger name -> its table, as the migrations create them.
PROTECTIVE_TRIGGERS: dict[str, str] = {
    "payments_guard": "payments",
    "payments_log": "payments",
    "payment_events_append_only": "payment_events",
    "payment_events_no_truncate": "payment_events",
    "journal_entries_balanced": "journal_entries",
    "journal_postings_balanced": "journal_postings",
    "journal_entries_immutable": "journal_entries",
    "journal_postings_immutable": "journal_postings",
    "journal_entries_no_truncate": "journal_entries",
    "journal_postings_no_truncate": "journal_postings",
    "journal_postings_balance": "journal_postings",
    "payments_settled_booked": "payments",  # 0003: no `settled` without its entry, at commit
    "account_balances_guard": "account_balances",
    "account_balances_no_truncate": "account_balances",
    "payment_events_insert_guard": "payment_events",
    # 0007: batch-settlement
    "payments_accepted_booked": "payments",
    "batch_channels_guard": "batch_channels",
    "batch_channels_no_delete": "batch_channels",
    "batch_channels_no_truncate": "batch_channels",
    "batch_vouchers_guard": "batch_vouchers",
    "batch_vouchers_no_delete": "batch_vouchers",
    "batch_vouchers_no_truncate": "batch_vouchers",
    "batch_transactions_append_only": "batch_transactions",
    "batch_transactions_no_truncate": "batch_transactions",
    "payments_accepted_booked_at_insert": "payments",  # 0009: a voucher's payment is inserted accepted
    **refund_verify.TRIGGERS,  # 0010: refunds
    "payments_log_insert": "payments",  # 0016: a payment's first event, written per statement
}
CHECKS = (
    "entry_postings",
    "entry_balanced",
    "settlement_entry",
    "settled_payment",
    "account_balances",
    "event_chain",
    "batch_payment",
    "batch_receivable",
    "batch_channel",
    "batch_sweep",
    *refund_verify.CHECKS,
    "triggers",
)
BOOKED_BATCH_STATES = (PaymentState.ACCEPTED, PaymentState.CLAIMED_ONCHAIN)  # booked, not yet settled
FORMATS = ("table", "json")
LIMIT_DEFAULT = 100
TIMEOUT_S_DEFAULT = 600.0


@dataclass(frozen=True, slots=True)
class Violation:
    check: str
    detail: str


@dataclass(frozen=True, slots=True)
class VerifyResult:
    violations: list[Violation]  # at most `limit` per check, then one "... and N more"
    counts: dict[str, int] = field(default_factory=dict)  # rows examined: payments, events, entries, ...
    totals: dict[str, int] = field(default_factory=dict)  # violations found per check, listed or not
    checks: tuple[str, ...] = CHECKS

    @property
    def ok(self) -> bool:
        return not self.violations

    def by_check(self, check: str) -> list[Violation]:
        return [v for v in self.violations if v.check == check]


def _enabled(code: str) -> str:
    return {"D": "disabled", "R": "enabled only for replica sessions (never fires in normal use)"}.get(code, code)


async def verify(
    pool: asyncpg.Pool, *, limit: int = LIMIT_DEFAULT, timeout_s: float = TIMEOUT_S_DEFAULT
) -> VerifyResult:
    """Run every check; `ok` if none found a violation. Read-only, one REPEATABLE READ snapshot."""
    if limit < 1:
        raise LedgerError("limit must be at least 1")
    violations: list[Violation] = []
    totals: dict[str, int] = {}

    def add(check: str, rows: list[asyncpg.Record], describe: Callable[[asyncpg.Record], str]) -> None:
        violations.extend(Violation(check, describe(row)) for row in rows)
        if rows:
            totals[check] = rows[0]["total"]
            if rows[0]["total"] > len(rows):
                violations.append(Violation(check, f"... and {rows[0]['total'] - len(rows)} more"))

    with translated():
        async with pool.acquire() as connection, connection.transaction(isolation="repeatable_read", readonly=True):

            async def fetch(name: str, *args: object) -> list[asyncpg.Record]:
                return await connection.fetch(queries[name], *args, timeout=timeout_s)

            counts = dict((await fetch("verify_counts"))[0]) | dict((await fetch("verify_batch_counts"))[0])
            counts |= await refund_verify.counts(fetch)
            add(
                "entry_postings",
                await fetch("verify_entry_postings", limit),
                lambda r: (
                    f"journal entry {r['entry_id']} ({r['kind']}, payment {r['payment_id']}) "
                    f"has {r['postings']} posting(s); double entry needs at least 2"
                ),
            )
            add(
                "entry_balanced",
                await fetch("verify_entry_balanced", limit),
                lambda r: f"journal entry {r['entry_id']} does not balance in {r['asset']}: off by {r['off_by']}",
            )
            add(
                "settlement_entry",
                await refund_verify.booked_entries(fetch, limit),  # less vouchers refunded before their claim
                lambda r: (
                    f"settlement entry {r['entry_id']} has no payment"
                    if r["state"] is None
                    else f"settlement entry {r['entry_id']} for payment {r['payment_id']} ({r['state']}): "
                    f"revenue credit {r['revenue_atomic']}, payment amount {r['amount_atomic']}"
                    + (
                        ""
                        if r["state"] == PaymentState.SETTLED or (r["batch"] and r["state"] in BOOKED_BATCH_STATES)
                        else "; the payment is not settled"
                    )
                ),
            )
            add(
                "settled_payment",
                await fetch("verify_settled_payments", limit),
                lambda r: (
                    f"settled payment {r['payment_id']} (tx {r['tx_hash']}) has {r['entries']} settlement "
                    "entries; it needs exactly 1"
                ),
            )
            add(
                "account_balances",
                await fetch("verify_account_balances", limit),
                lambda r: (
                    f"account {r['account']} in {r['asset']}: "
                    + (
                        "has postings but no account_balances row"
                        if r["kept_atomic"] is None
                        else "has an account_balances row but no postings"
                        if r["posted_atomic"] is None
                        else f"account_balances says {r['kept_atomic']} over {r['kept']} posting(s), "
                        f"the postings sum to {r['posted_atomic']} over {r['posted']}"
                    )
                ),
            )
            add(
                "event_chain",
                await fetch("verify_event_chains", limit),
                lambda r: f"payment {r['payment_id']}: {r['detail']}",
            )
            add(
                "batch_payment",
                await fetch("verify_batch_payments", limit),
                lambda r: f"payment {r['payment_id']} ({r['state']}) {r['detail']}",
            )
            add(
                "batch_receivable",
                await fetch("verify_batch_receivables", limit),
                lambda r: (
                    f"account {r['account']} in {r['asset']} holds {r['posted_atomic']}; "
                    f"its accepted and claimed sales sum to {r['owed_atomic']}"
                ),
            )
            add(
                "batch_channel",
                await fetch("verify_batch_channels", limit),
                lambda r: f"channel {r['channel_id']}: {r['detail']}",
            )
            add("batch_sweep", await fetch("verify_batch_sweeps", limit), lambda r: r["detail"])
            for check, rows, describe in await refund_verify.checks(fetch, limit):
                add(check, rows, describe)
            triggers = await fetch("verify_triggers", list(PROTECTIVE_TRIGGERS), list(PROTECTIVE_TRIGGERS.values()))
            for row in triggers:
                state = "is missing" if row["enabled"] is None else f"is {_enabled(row['enabled'])}"
                violations.append(Violation("triggers", f"trigger {row['name']} on {row['table_name']} {state}"))
            if triggers:
                totals["triggers"] = len(triggers)
    return VerifyResult(violations=violations, counts=counts, totals=totals)


def render_verify(result: VerifyResult, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(
            {
                "ok": result.ok,
                "checks": list(result.checks),
                "counts": result.counts,
                "totals": result.totals,
                "violations": [asdict(v) for v in result.violations],
            },
            indent=2,
        )
    if fmt != "table":
        raise LedgerError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    examined = ", ".join(f"{n} {what}" for what, n in result.counts.items())
    lines = [f"checked {examined}"]
    if result.ok:
        lines.append(f"OK: {len(result.checks)} checks, no violations")
        return "\n".join(lines) + "\n"
    width = max(len(v.check) for v in result.violations)
    lines += [f"{v.check.ljust(width)}  {v.detail}" for v in result.violations]
    failed = ", ".join(f"{check} {n}" for check, n in result.totals.items())
    lines.append(f"FAILED: {sum(result.totals.values())} violation(s): {failed}")
    return "\n".join(lines) + "\n"
