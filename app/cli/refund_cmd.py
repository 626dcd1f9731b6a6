"""`worldgate ledger refund <payment_id> --reason TEXT` (refund one sale), `worldgate ledger refunds` (list them)
and `worldgate ledger refund-sent <refund_id> --tx HASH` (book the transfer that paid one owed).

A refund reverses the sale's revenue. A sale whose money we hold (settled, or a voucher claimed on chain) is then
owed to the payer (`payable:refunds:<network>:<payer>`): the operator sends it from payTo, and `refund-sent`
books that transfer once the chain shows it. A voucher sale not yet claimed is never collected: its channel's
claim is lowered and the payer keeps the money in its channel (README, "Refunds").
The parser imports nothing heavy; each handler imports what it uses.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from typing import Any

REASON_MAX = 500
ACTOR_MAX = 200  # the ledger's bound on who records a refund or its transfer


def _actor(args: argparse.Namespace) -> str:
    """`--by`, stripped, within the ledger's bound (refused here with the flag's name, not deep in the ledger)."""
    from app.runtime.settings import SettingsError

    actor = (args.by or "").strip()
    if not 1 <= len(actor) <= ACTOR_MAX:
        raise SettingsError(f"--by must be 1 to {ACTOR_MAX} characters")
    return actor


def _rows(found: list[dict[str, Any]]) -> str:
    if not found:
        return "no refund yet\n"
    keys = ("id", "payment_id", "kind", "amount_atomic", "account", "actor", "created_at", "sent_tx", "reason")
    rows = [{k: str(r[k] or "-") for k in keys} for r in found]
    widths = [max(len(k), *(len(r[k]) for r in rows)) for k in keys]
    lines = ["  ".join(k.ljust(w) for k, w in zip(keys, widths, strict=True))]
    lines += ["  ".join(r[k].ljust(w) for k, w in zip(keys, widths, strict=True)) for r in rows]
    return "\n".join(lines) + "\n"


def _shown(done: Any, form: str, refused: str) -> bool:
    """Print a refund or transfer (a dataclass) as a table or JSON, or why there is none on stderr; False then."""
    from dataclasses import asdict

    from ledger.refunds import RefundRefused

    if isinstance(done, RefundRefused):
        print(f"worldgate: {refused}: {done.error}: {done.detail}", file=sys.stderr)
        return False
    document = {k: str(v) if k == "created_at" else v for k, v in asdict(done).items()}
    if form == "json":
        print(json.dumps(document, indent=2))
    else:
        sys.stdout.write("".join(f"{k:14} {v}\n" for k, v in document.items()))
    return True


def cmd_ledger_refund(args: argparse.Namespace) -> int:
    """Exit 1 when the sale is not refunded (unknown, nothing charged, refunded already)."""
    import asyncio

    import ledger
    from app.cli.command_settings import LEDGER, ledger_database, settings_for
    from app.runtime.settings import SettingsError
    from app.usecases.sale_refund import refund_sale

    reason, actor = args.reason.strip(), _actor(args)
    if not 1 <= len(reason) <= REASON_MAX:
        raise SettingsError(f"--reason must be 1 to {REASON_MAX} characters")

    async def run(dsn: str) -> Any:
        pool = await ledger.create_pool(dsn, size_min=1, size_max=3)  # the settler's lock, and the refund
        try:
            return await refund_sale(pool, args.payment_id, reason=reason, actor=actor)
        finally:
            await pool.close()

    with ledger_database(settings_for(args, LEDGER)) as dsn:
        done = asyncio.run(run(dsn))
    if not _shown(done, args.format, "not refunded"):
        return 1
    if args.format != "json" and done.kind == "payable":  # the money is ours: the operator sends it back
        print(
            f"owed to the payer: send it {done.amount_atomic} atomic units from payTo, then "
            f"`worldgate ledger refund-sent {done.id} --tx HASH` (README, Refunds)"
        )
    return 0


def cmd_ledger_refund_sent(args: argparse.Namespace) -> int:
    """Exit 1 when no transfer is booked (unknown refund, not owed, paid already, the chain does not show it)."""
    import asyncio

    import ledger
    from app.cli.command_settings import CHAINS, audited_chains, ledger_database, settings_for
    from app.usecases.reconcile import auditors_for
    from app.usecases.refund_transfer import record_refund_transfer

    actor = _actor(args)
    settings = settings_for(args, CHAINS, keys=False)  # it reads the chains, it signs nothing
    chains = audited_chains(settings)

    async def run(dsn: str) -> Any:
        pool = await ledger.create_pool(dsn, size_min=1, size_max=2)
        auditors, rpcs = auditors_for(chains)
        try:
            return await record_refund_transfer(pool, auditors, args.refund_id, args.tx, actor=actor)
        finally:
            for rpc in rpcs:
                await rpc.close()
            await pool.close()

    with ledger_database(settings) as dsn:
        done = asyncio.run(run(dsn))
    return 0 if _shown(done, args.format, "not recorded") else 1


def cmd_ledger_refunds(args: argparse.Namespace) -> int:
    import asyncio

    import ledger
    from app.cli.command_settings import LEDGER, ledger_database, settings_for

    async def run(dsn: str) -> list[dict[str, Any]]:
        pool = await ledger.create_pool(dsn, size_min=1, size_max=2)
        try:
            return await ledger.refunds.recent(pool, args.limit, args.payment)
        finally:
            await pool.close()

    with ledger_database(settings_for(args, LEDGER)) as dsn:
        found = asyncio.run(run(dsn))
    if args.format == "json":
        print(json.dumps(found, indent=2, default=str))
    else:
        sys.stdout.write(_rows(found))
    return 0


def add_refund(ledger_sub: Any) -> None:
    """`worldgate ledger refund` and `worldgate ledger refunds`, under `worldgate ledger`."""
    refund = ledger_sub.add_parser(
        "refund", help="Refund one sale: reverse its revenue; owed to the payer, or a lower claim for a voucher."
    )
    refund.add_argument("payment_id", type=int, help="the payment (worldgate ledger report, /admin/api/payments)")
    refund.add_argument("--reason", required=True, help="why (kept with the refund, 1 to 500 characters)")
    refund.add_argument("--by", default=getpass.getuser(), help="who refunds (default: you)")
    refund.add_argument("--config")
    refund.add_argument("--format", default="table", choices=["table", "json"])
    refund.set_defaults(run=cmd_ledger_refund)
    sent = ledger_sub.add_parser(
        "refund-sent", help="Book the transfer that paid a refund owed, once the chain shows it moved the amount."
    )
    sent.add_argument("refund_id", type=int, help="the refund (its `id` in worldgate ledger refunds)")
    sent.add_argument("--tx", required=True, help="the transfer's transaction hash (a signature on Solana)")
    sent.add_argument("--by", default=getpass.getuser(), help="who records it (default: you)")
    sent.add_argument("--config")
    sent.add_argument("--format", default="table", choices=["table", "json"])
    sent.set_defaults(run=cmd_ledger_refund_sent)
    listed = ledger_sub.add_parser("refunds", help="The operator's refunds, newest first.")
    listed.add_argument("--payment", type=int, help="only this payment's")
    listed.add_argument("--limit", type=int, default=100)
    listed.add_argument("--config")
    listed.add_argument("--format", default="table", choices=["table", "json"])
    listed.set_defaults(run=cmd_ledger_refunds)
