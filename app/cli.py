"""The `worldgate` command: serve, migrate, ledger report, devnet."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

from adapters import ReplayServer

from . import embedded
from .settings import Settings, SettingsError, load_settings, redact_url

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

    from .factory import MIGRATIONS_DIR

    _exit_on_sigterm()
    settings = _settings(args)
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
        print(_banner(resolved, running), flush=True)
        uvicorn.run(
            "app.factory:app_from_env",
            factory=True,
            host=resolved.host,
            port=resolved.port,
            workers=resolved.workers,
            loop="uvloop",
            http="httptools",
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

    from .factory import MIGRATIONS_DIR

    running = embedded.start(_settings(args), chain=False, redis=False)
    try:
        assert running.settings.database_url
        applied = asyncio.run(ledger.migrate(running.settings.database_url, MIGRATIONS_DIR))
        print("applied: " + ", ".join(applied) if applied else "the ledger schema is up to date")
    finally:
        running.stop()
    return 0


def _when(text: str | None, default: datetime) -> datetime:
    if not text:
        return default
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), datetime.min.time(), UTC)
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise SettingsError(f"{text!r} is neither a date (2026-11-22) nor an ISO time") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def cmd_ledger_report(args: argparse.Namespace) -> int:
    import ledger

    since = _when(args.since, datetime(1970, 1, 1, tzinfo=UTC))
    until = _when(args.until, datetime.now(UTC) + timedelta(days=1))

    async def run(dsn: str) -> str:
        pool = await ledger.create_pool(dsn, size_min=1, size_max=2)
        try:
            rows = await ledger.reports.report(pool, args.group_by, since, until)
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
    report.set_defaults(run=cmd_ledger_report)

    devnet = add("devnet", "Run the local devnets alone (anvil and Solana, with test USDC) and print devnet.json.")
    devnet.set_defaults(run=cmd_devnet)
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
