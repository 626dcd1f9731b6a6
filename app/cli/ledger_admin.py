"""The `worldgate ledger` (report, verify, reconcile, findings) and `worldgate admin` (token) commands.

The parser is built from plain names (no ledger, settings or JWT import), so `worldgate --help` stays
fast; each handler imports what it uses. tests/test_cli_speed.py checks the names match the ledger's.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from typing import TYPE_CHECKING, Any

from app.cli.findings import add_findings
from app.cli.refund_cmd import add_refund

if TYPE_CHECKING:
    from datetime import datetime

# ledger.reports.Grouping, spelled out so the parser need not import the ledger. Payment states are
# checked in the handler instead: that list grows with new settlement modes.
GROUPINGS = ("hour", "day", "week", "route", "stream", "network", "asset", "payer")
_DURATION = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration_s(text: str) -> int:
    """'3600', '90m', '1h', '7d' → seconds."""
    from app.runtime.settings import SettingsError

    value = text.strip().lower()
    unit = _DURATION.get(value[-1:])
    number = value[:-1] if unit else value
    if not (number.isascii() and number.isdigit()) or int(number) == 0:
        raise SettingsError(f"--ttl {text!r} is not a duration like 3600, 90m, 1h or 7d")
    return int(number) * (unit or 1)


def _when(text: str | None, default: datetime) -> datetime:
    from app.runtime.settings import SettingsError
    from app.runtime.times import parse_when

    try:
        return parse_when(text, default)
    except ValueError as exc:
        raise SettingsError(str(exc)) from None


def cmd_ledger_report(args: argparse.Namespace) -> int:
    import asyncio
    from datetime import UTC, datetime

    import ledger
    from app.cli.command_settings import LEDGER, ledger_database, settings_for
    from app.runtime.settings import SettingsError

    if args.state is not None and args.state not in set(ledger.PaymentState):
        raise SettingsError(f"--state {args.state!r} is not a payment state: {', '.join(ledger.PaymentState)}")
    since = _when(args.since, datetime(1970, 1, 1, tzinfo=UTC))
    until = _when(args.until, datetime.now(UTC))  # the window ends now: nothing is settled in the future

    payer = args.payer.lower() if args.payer and args.payer.startswith("0x") else args.payer
    filters = {"network": args.network, "stream": args.stream, "payer": payer, "state": args.state}

    async def run(dsn: str) -> str:
        pool = await ledger.create_pool(dsn, size_min=1, size_max=2)
        try:
            if args.summary:
                return ledger.reports.render_summary(
                    await ledger.reports.summary(pool, since, until, **filters), args.format
                )
            rows = await ledger.reports.report(pool, args.group_by, since, until, **filters)
        finally:
            await pool.close()
        return ledger.reports.render(rows, args.format, args.group_by)

    with ledger_database(settings_for(args, LEDGER)) as dsn:
        sys.stdout.write(asyncio.run(run(dsn)))
    return 0


def cmd_ledger_verify(args: argparse.Namespace) -> int:
    """Exit 1 on any violation, so a cron job or CI step fails loudly."""
    import asyncio

    import ledger
    from app.cli.command_settings import LEDGER, ledger_database, settings_for

    async def run(dsn: str) -> tuple[bool, str]:
        pool = await ledger.create_pool(dsn, size_min=1, size_max=2)
        try:
            result = await ledger.verify.verify(pool)
        finally:
            await pool.close()
        return result.ok, ledger.verify.render_verify(result, args.format)

    with ledger_database(settings_for(args, LEDGER)) as dsn:
        ok, text = asyncio.run(run(dsn))
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return 0 if ok else 1


class _ProgressBar:
    """A one-line progress bar on stderr for long runs (only when stderr is a terminal)."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.shown = sys.stderr.isatty()

    def __call__(self, done: int, total: int) -> None:
        if not self.shown or total <= 0:
            return
        width = 30
        filled = width * done // total
        sys.stderr.write(f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
        sys.stderr.flush()
        if done >= total:
            sys.stderr.write("\n")


def cmd_ledger_reconcile(args: argparse.Namespace) -> int:
    import asyncio
    from dataclasses import asdict

    import ledger
    from app.cli.command_settings import CHAINS, audited_chains, ledger_database, settings_for
    from app.runtime.devnet_file import devnet_state
    from app.usecases.reconcile import Reconciler, auditors_for
    from ledger import channel_audit, epochs

    settings = settings_for(args, CHAINS, keys=False)  # the chains' RPCs, not their keys: it only reads them
    chains = audited_chains(settings)

    async def run(dsn: str) -> dict[str, Any]:
        pool = await ledger.create_pool(dsn, size_min=1, size_max=4)
        auditors, rpcs = auditors_for(chains)
        try:
            if settings.uses_devnet:  # the devnets now running: sales on earlier instances are a reset, not a loss
                await epochs.record_devnets(pool, devnet_state(settings.state_dir))
            reconciler = Reconciler(
                pool,
                auditors,
                settings.reconcile,
                write_ahead=not settings.facilitator_url,
                claim_interval_s=settings.batch.claim_interval_s,
            )
            report = await reconciler.run("cli", all_settled=args.all, progress=_ProgressBar("reconcile"))
            flags = await ledger.audit.open_flags(pool, 1000)
            about_channels = await channel_audit.open_findings(pool, 1000)  # batch channels, claims, sweeps
        finally:
            for rpc in rpcs:
                await rpc.close()
            await pool.close()
        return {
            "run": report.as_dict(),
            "open_flags": [asdict(f) for f in flags],
            "open_channel_flags": [asdict(f) for f in about_channels],
        }

    with ledger_database(settings) as dsn:
        result = asyncio.run(run(dsn))
    run_report, flags = result["run"], result["open_flags"]
    if args.format == "json":
        print(json.dumps(result, indent=2, default=str))
    else:
        if run_report["skipped"]:
            print(f"skipped: {run_report['skipped']}")
        print(
            f"checked {run_report['checked']}, resolved {run_report['resolved']}, new findings {run_report['flagged']},"
            f" still pending {run_report['left_pending']}"
            + (f", on a reset devnet (not asked) {run_report['chain_reset']}" if run_report["chain_reset"] else "")
            + (f"; batch channels {run_report['channels']}" if run_report["channels"] else "")
            + (f", claims and sweeps {run_report['batch_transactions']}" if run_report["batch_transactions"] else "")
        )
        for error in run_report["errors"]:
            print(f"error: {error}")
        for flag in flags:
            print(f"OPEN  payment {flag['payment_id']:>8}  {flag['kind']:<28} {flag['network']:<16} {flag['detail']}")
        for flag in result["open_channel_flags"]:  # the detail names the channel or the transaction
            print(f"OPEN  {flag['kind']:<30} {flag['network']:<16} {flag['detail']}")
    return 1 if run_report["errors"] or run_report["skipped"] else 0


def cmd_admin_token(args: argparse.Namespace) -> int:
    from pathlib import Path

    from app.cli.command_settings import ADMIN, settings_for, with_admin_secret
    from app.edge.admin.auth import mint
    from app.runtime.settings import SettingsError

    settings = settings_for(args, ADMIN)
    ttl_s = _duration_s(args.ttl)
    if settings.admin.algorithm == "HS256":
        key = with_admin_secret(settings).admin.secret
    elif args.private_key_file:
        key = Path(args.private_key_file).read_text()
    else:
        raise SettingsError(f"{settings.admin.algorithm} tokens are signed with a private key: --private-key-file")
    assert key is not None
    try:
        token = mint(key, settings.admin.audience, args.subject, ttl_s, algorithm=settings.admin.algorithm)
    except ValueError as exc:
        raise SettingsError(str(exc)) from None
    print(token)
    return 0


def add_ledger_and_admin(commands: Any) -> None:
    """`worldgate ledger ...` and `worldgate admin ...` on the top parser's subcommands."""
    ledger_cmd = commands.add_parser("ledger", help="Ledger reports, checks, reconciliation and its findings.")
    ledger_sub = ledger_cmd.add_subparsers(dest="ledger_command", required=True)
    report = ledger_sub.add_parser("report", help="Revenue and payment outcomes, grouped.")
    report.add_argument("--config")
    report.add_argument(
        "--group-by",
        default="day",
        choices=GROUPINGS,
    )
    report.add_argument("--format", default="table", choices=["table", "csv", "json"])
    report.add_argument("--from", dest="since", help="start, inclusive: 2026-11-01 or an ISO time (UTC if no zone)")
    report.add_argument("--to", dest="until", help="end, exclusive: 2026-11-30 or an ISO time (default: now)")
    report.add_argument("--network", help="only this network (CAIP-2, e.g. eip155:8453)")
    report.add_argument("--stream", help="only this stream (or composite route, e.g. /v1/world)")
    report.add_argument("--payer", help="only this payer's payments")
    report.add_argument("--state", help="only payments in this state (settled, settling, failed, released, ...)")
    report.add_argument(
        "--summary",
        action="store_true",
        help="one summary instead of groups: settled, pending, failed, refunded, exposure, gas, open findings",
    )
    report.set_defaults(run=cmd_ledger_report)
    verify = ledger_sub.add_parser(
        "verify", help="Check the books: balanced entries, untouched postings, legal transitions, live triggers."
    )
    verify.add_argument("--config")
    verify.add_argument("--format", default="table", choices=["table", "json"])
    verify.set_defaults(run=cmd_ledger_verify)
    reconcile = ledger_sub.add_parser(
        "reconcile", help="Check payments not final (and settled ones) against the chain, and resolve or flag them."
    )
    reconcile.add_argument("--config")
    reconcile.add_argument("--all", action="store_true", help="re-check every settled payment, not just new ones")
    reconcile.add_argument("--format", default="table", choices=["table", "json"])
    reconcile.set_defaults(run=cmd_ledger_reconcile)
    add_findings(ledger_sub)
    add_refund(ledger_sub)

    admin_cmd = commands.add_parser("admin", help="The admin API's tokens.")
    admin_sub = admin_cmd.add_subparsers(dest="admin_command", required=True)
    token = admin_sub.add_parser("token", help="Mint an admin token (a JWT) for /admin and /admin/api.")
    token.add_argument("--config")
    token.add_argument("--ttl", default="1h", help="lifetime: 3600, 90m, 1h, 7d (at most 30d; default 1h)")
    token.add_argument("--subject", default=getpass.getuser(), help="who the token is for (default: you)")
    token.add_argument("--private-key-file", help="PEM private key, for RS256/ES256 (HS256 uses the secret)")
    token.set_defaults(run=cmd_admin_token)
