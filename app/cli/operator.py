"""The `worldgate` command: serve, migrate, ledger report, devnet."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import shutil
import signal
import sys
import time
from dataclasses import asdict, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from adapters import ReplayServer
from app.cli import pay as paycli
from app.edge.admin.auth import ensure_secret, mint
from app.runtime import embedded
from app.runtime.devnet_file import devnet_state
from app.runtime.settings import Settings, SettingsError, load_settings, redact_url
from app.runtime.times import parse_when

VERSION = "0.1.0"


def _exit_on_sigterm() -> None:
    # uvicorn re-raises SIGTERM after its graceful shutdown; with the default handler Python dies
    # before `finally` runs and the embedded Postgres, Redis and anvil are orphaned (toolchain.md).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))


def _settings(args: argparse.Namespace) -> Settings:
    overrides = {}
    if getattr(args, "host", None):
        overrides["WORLDGATE_HOST"] = args.host
    if getattr(args, "port", None):
        overrides["WORLDGATE_PORT"] = str(args.port)
    if getattr(args, "workers", None):
        overrides["WORLDGATE_WORKERS"] = str(args.workers)
    if getattr(args, "replay_upstreams", False):
        overrides["WORLDGATE_REPLAY_UPSTREAMS"] = "1"
    return load_settings({**os.environ, **overrides}, args.config)


def _with_admin_secret(settings: Settings) -> Settings:
    """No admin key configured: use (or make) one secret in the state dir, so `worldgate admin token`
    mints tokens this server accepts, with nothing to set up."""
    if settings.admin.configured or settings.admin.algorithm != "HS256":
        return settings
    path = ensure_secret(settings.state_dir.resolve())
    os.environ["WORLDGATE_ADMIN_JWT_SECRET_FILE"] = str(path)  # the workers read the same file
    return replace(settings, admin=replace(settings.admin, secret=path.read_text().strip()))


_DURATION = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration_s(text: str) -> int:
    """'3600', '90m', '1h', '7d' → seconds."""
    value = text.strip().lower()
    unit = _DURATION.get(value[-1:])
    number = value[:-1] if unit else value
    if not number.isdigit() or int(number) == 0:
        raise SettingsError(f"--ttl {text!r} is not a duration like 3600, 90m, 1h or 7d")
    return int(number) * (unit or 1)


def _banner(settings: Settings, running: embedded.Embedded) -> str:
    base = f"http://{settings.host}:{settings.port}"
    lines = [
        f"worldgate {VERSION}: pay-per-request world-state data over x402",
        f"  listening    {base}  ({settings.workers} worker{'s' if settings.workers > 1 else ''})",
        f"  database     {running.parts.get('database') or redact_url(settings.database_url)}",
        f"  redis        {running.parts.get('redis') or redact_url(settings.redis_url)}",
    ]
    if settings.evm is not None:
        evm = settings.evm
        where = "local devnet (anvil)" if running.devnets else f"via {redact_url(evm.rpc_url)}"
        lines += [
            f"  evm          {evm.network} {where}",
            f"               USDC {evm.asset} (EIP-712 {evm.eip712_name!r} v{evm.eip712_version}), payTo {evm.pay_to}",
        ]
    if settings.svm is not None:
        svm = settings.svm
        where = "local devnet (LiteSVM)" if running.devnets else f"via {redact_url(svm.rpc_url)}"
        lines += [f"  solana       {svm.network} {where}", f"               USDC mint {svm.asset}, payTo {svm.pay_to}"]
    lines += [
        f"  facilitator  {settings.facilitator_url or 'local (this process settles with its own keys)'}",
        f"  settlement   {settings.settlement_mode}",
        f"  admin        {base}/admin/  (a token: worldgate admin token --ttl 1h)",
        "  upstreams    "
        + (
            f"REPLAY: recorded payloads from {settings.upstream_replay_url} (a recording, not live data)"
            if settings.upstream_replay_url
            else "live (no internet? run with --replay-upstreams)"
        ),
    ]
    if running.devnets is not None:
        lines += [
            f"  devnet.json  {settings.state_dir / 'devnet.json'}  (payer keys, assets, payTo for clients)",
            "",
            "  *** LOCAL DEVNETS: every balance here is test money on private chains; nothing is real. ***",
        ]
    if running.parts:
        lines.append(
            f"  embedded     {', '.join(running.parts)}"
            " (set DATABASE_URL / REDIS_URL / WORLDGATE_EVM_* / WORLDGATE_SVM_* to use your own)"
        )
    lines += ["", f"  try: curl -i {base}/v1/streams/static.capitals   (answers 402 with a quote)", ""]
    return "\n".join(lines)


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    import ledger
    from app.edge.abuse import CappedHttpToolsProtocol
    from app.wiring import MIGRATIONS_DIR

    _exit_on_sigterm()
    settings = _with_admin_secret(_settings(args))
    running = embedded.start(settings)
    replay: ReplayServer | None = None
    try:
        if running.settings.replay_upstreams and not running.settings.upstream_replay_url:
            replay = ReplayServer().start()  # one for every worker, in this process
            running.settings = replace(running.settings, upstream_replay_url=replay.url)
        resolved = running.settings
        assert resolved.database_url
        if resolved.auto_migrate:
            asyncio.run(ledger.migrate(resolved.database_url, MIGRATIONS_DIR))
        embedded.export_env(resolved, os.environ)
        os.environ["WORLDGATE_AUTO_MIGRATE"] = "0"  # done once above, not once per worker
        if resolved.upstream_replay_url:
            os.environ["WORLDGATE_UPSTREAM_REPLAY_URL"] = resolved.upstream_replay_url
        if resolved.workers > 1:  # every worker writes its counters here; a scrape of any one sums them all
            metrics_dir = resolved.state_dir.resolve() / "metrics"
            shutil.rmtree(metrics_dir, ignore_errors=True)
            metrics_dir.mkdir(parents=True)
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
        # every worker caps request heads at the transport (httptools has no cap of its own)
        os.environ["WORLDGATE_HEADER_BYTES_MAX"] = str(resolved.limits.header_bytes_max)
        print(_banner(resolved, running), flush=True)
        uvicorn.run(
            "app.wiring:app_from_env",
            factory=True,
            host=resolved.host,
            port=resolved.port,
            workers=resolved.workers,
            loop="uvloop",
            http=CappedHttpToolsProtocol,
            log_level="warning",
            access_log=False,
            lifespan="on",
        )
    finally:
        if replay is not None:
            replay.stop()
        running.stop()
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    import ledger
    from app.wiring import MIGRATIONS_DIR

    running = embedded.start(_settings(args), chain=False, redis=False)
    try:
        assert running.settings.database_url
        applied = asyncio.run(ledger.migrate(running.settings.database_url, MIGRATIONS_DIR))
        print("applied: " + ", ".join(applied) if applied else "the ledger schema is up to date")
    finally:
        running.stop()
    return 0


def _when(text: str | None, default: datetime) -> datetime:
    try:
        return parse_when(text, default)
    except ValueError as exc:
        raise SettingsError(str(exc)) from None


def cmd_ledger_report(args: argparse.Namespace) -> int:
    import ledger

    since = _when(args.since, datetime(1970, 1, 1, tzinfo=UTC))
    until = _when(args.until, datetime.now(UTC) + timedelta(days=1))

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

    running = embedded.start(_settings(args), chain=False, redis=False)
    try:
        assert running.settings.database_url
        sys.stdout.write(asyncio.run(run(running.settings.database_url)))
    finally:
        running.stop()
    return 0


def cmd_admin_token(args: argparse.Namespace) -> int:
    settings = _settings(args)
    ttl_s = _duration_s(args.ttl)
    if settings.admin.algorithm == "HS256":
        key = _with_admin_secret(settings).admin.secret
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


def cmd_ledger_verify(args: argparse.Namespace) -> int:
    """Exit 1 on any violation, so a cron job or CI step fails loudly."""
    import ledger

    async def run(dsn: str) -> tuple[bool, str]:
        pool = await ledger.create_pool(dsn, size_min=1, size_max=2)
        try:
            result = await ledger.verify.verify(pool)
        finally:
            await pool.close()
        return result.ok, ledger.verify.render_verify(result, args.format)

    running = embedded.start(_settings(args), chain=False, redis=False)
    try:
        assert running.settings.database_url
        ok, text = asyncio.run(run(running.settings.database_url))
    finally:
        running.stop()
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return 0 if ok else 1


def _audited_chains(settings: Settings) -> list[tuple[str, str]]:
    """The chains reconcile asks: the configured ones, or with none configured the devnets that a
    running `worldgate serve` described in devnet.json."""
    from app.usecases.reconcile import chains_of

    if not settings.uses_devnet:
        return chains_of(settings)
    state = devnet_state(settings.state_dir)
    if state is None:
        raise SettingsError("no chain is configured and no devnet is running (start `worldgate serve` first)")
    return [(state[part]["network"], state[part]["rpc_url"]) for part in ("evm", "svm") if part in state]


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
    import ledger
    from app.usecases.reconcile import Reconciler, auditors_for

    settings = _settings(args)
    chains = _audited_chains(settings)

    async def run(dsn: str) -> dict[str, Any]:
        pool = await ledger.create_pool(dsn, size_min=1, size_max=4)
        auditors, rpcs = auditors_for(chains)
        try:
            reconciler = Reconciler(pool, auditors, settings.reconcile, write_ahead=not settings.facilitator_url)
            report = await reconciler.run("cli", all_settled=args.all, progress=_ProgressBar("reconcile"))
            flags = await ledger.audit.open_flags(pool, 1000)
        finally:
            for rpc in rpcs:
                await rpc.close()
            await pool.close()
        return {"run": report.as_dict(), "open_flags": [asdict(f) for f in flags]}

    running = embedded.start(settings, chain=False, redis=False)
    try:
        assert running.settings.database_url
        result = asyncio.run(run(running.settings.database_url))
    finally:
        running.stop()
    run_report, flags = result["run"], result["open_flags"]
    if args.format == "json":
        print(json.dumps(result, indent=2, default=str))
    else:
        if run_report["skipped"]:
            print(f"skipped: {run_report['skipped']}")
        print(
            f"checked {run_report['checked']}, resolved {run_report['resolved']}, new findings {run_report['flagged']},"
            f" still pending {run_report['left_pending']}"
        )
        for error in run_report["errors"]:
            print(f"error: {error}")
        for flag in flags:
            print(f"OPEN  payment {flag['payment_id']:>8}  {flag['kind']:<28} {flag['network']:<16} {flag['detail']}")
    return 1 if run_report["errors"] or run_report["skipped"] else 0


def cmd_devnet(args: argparse.Namespace) -> int:
    _exit_on_sigterm()
    settings = _settings(args)
    state_dir = settings.state_dir.resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    devnets = embedded.start_devnets(state_dir)
    try:
        print(json.dumps(devnets.state(), indent=2), flush=True)
        print(
            f"# written to {state_dir / 'devnet.json'}; devnet money is not real. Ctrl-C stops.",
            file=sys.stderr,
            flush=True,
        )
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        devnets.stop()
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="worldgate", description="Pay-per-request world-state data over x402.")
    top.add_argument("--version", action="version", version=f"worldgate {VERSION}")
    commands = top.add_subparsers(dest="command", required=True)

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("--config", help="TOML settings file (or WORLDGATE_CONFIG); env vars win over it")
        return sub

    serve = add(
        "serve",
        "Run the gateway; embedded Postgres/Redis and the local devnet stand in for what is not configured.",
    )
    serve.add_argument("--host", help="bind address (WORLDGATE_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (WORLDGATE_PORT, default 8402)")
    serve.add_argument("--workers", type=int, help="uvicorn worker processes (WORLDGATE_WORKERS, default 1)")
    serve.add_argument(
        "--replay-upstreams",
        action="store_true",
        help="answer every data source from its recorded payloads, for machines without internet"
        " (WORLDGATE_REPLAY_UPSTREAMS)",
    )
    serve.set_defaults(run=cmd_serve)

    add("migrate", "Apply the ledger's SQL migrations.").set_defaults(run=cmd_migrate)

    ledger_cmd = commands.add_parser("ledger", help="Ledger reports.")
    ledger_sub = ledger_cmd.add_subparsers(dest="ledger_command", required=True)
    report = ledger_sub.add_parser("report", help="Revenue and payment outcomes, grouped.")
    report.add_argument("--config")
    report.add_argument(
        "--group-by",
        default="day",
        choices=["hour", "day", "week", "route", "stream", "network", "asset", "payer"],
    )
    report.add_argument("--format", default="table", choices=["table", "csv", "json"])
    report.add_argument("--from", dest="since", help="start, inclusive: 2026-11-01 or an ISO time (UTC if no zone)")
    report.add_argument("--to", dest="until", help="end, exclusive: 2026-11-30 or an ISO time")
    report.add_argument("--network", help="only this network (CAIP-2, e.g. eip155:8453)")
    report.add_argument("--stream", help="only this stream (or composite route, e.g. /v1/world)")
    report.add_argument("--payer", help="only this payer's payments")
    report.add_argument(
        "--state",
        choices=["claimed", "verified", "served", "settling", "settled", "failed", "expired", "released"],
        help="only payments in this state",
    )
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

    admin_cmd = commands.add_parser("admin", help="The admin API's tokens.")
    admin_sub = admin_cmd.add_subparsers(dest="admin_command", required=True)
    token = admin_sub.add_parser("token", help="Mint an admin token (a JWT) for /admin and /admin/api.")
    token.add_argument("--config")
    token.add_argument("--ttl", default="1h", help="lifetime: 3600, 90m, 1h, 7d (at most 30d; default 1h)")
    token.add_argument("--subject", default=getpass.getuser(), help="who the token is for (default: you)")
    token.add_argument("--private-key-file", help="PEM private key, for RS256/ES256 (HS256 uses the secret)")
    token.set_defaults(run=cmd_admin_token)

    devnet = add("devnet", "Run the local devnets alone (anvil and Solana, with test USDC) and print devnet.json.")
    devnet.set_defaults(run=cmd_devnet)

    quote = commands.add_parser(
        "quote",
        help="Show what a URL costs: its x402 402 quote, one row per network offered.",
        description="GET the URL and show its 402 quote (the PAYMENT-REQUIRED header, decoded): the resource, then"
        " per offer the network, the exact price and atomic units, asset, payTo, validity and (Solana) feePayer."
        " Exit 0 for a quote or a free resource, 2 when the URL is unreachable or answers an error.",
    )
    quote.add_argument("url", help="the resource, e.g. http://127.0.0.1:8402/v1/streams/static.capitals")
    quote.add_argument("--format", default="table", choices=["table", "json"], help="json: the decoded PaymentRequired")
    quote.set_defaults(run=paycli.cmd_quote)

    pay = commands.add_parser(
        "pay",
        help="Pay for a URL in USDC (Base or Solana) and print the receipt and the data.",
        description="Quote the URL, pick the offer the payer key can pay (or --network), refuse it if the price is"
        " above --max, sign it and send the paid request; print the HTTP status, the PAYMENT-RESPONSE receipt and"
        " the body. With --header-only, print only the PAYMENT-SIGNATURE value and send nothing.",
        epilog=paycli.PAY_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    pay.add_argument("url", help="the resource, e.g. http://127.0.0.1:8402/v1/streams/static.capitals")
    pay.add_argument(
        "--network",
        help="the offer to pay, by CAIP-2 id (eip155:84532, solana:...); default: the first offer on the key's chain",
    )
    pay.add_argument(
        "--max",
        type=paycli.parse_cap,
        default=paycli.DEFAULT_CAP,
        metavar="DOLLARS",
        help=f"spend cap in dollars, exact (default {paycli.DEFAULT_CAP}): a higher price is refused, unpaid",
    )
    pay.add_argument("--key-file", metavar="PATH", help=f"file holding the payer key (else {paycli.KEY_ENV})")
    pay.add_argument(
        "--rpc-url",
        help=f"Solana RPC for a recent blockhash (else {paycli.RPC_ENV}, else the local devnet in devnet.json)",
    )
    pay.add_argument(
        "--header-only",
        action="store_true",
        help="print only the PAYMENT-SIGNATURE value (one line, for curl -H); do not send the paid request",
    )
    pay.set_defaults(run=paycli.cmd_pay)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        result: Any = args.run(args)
    except SettingsError as exc:
        print(f"worldgate: {exc}", file=sys.stderr)
        return 2
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
