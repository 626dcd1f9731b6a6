"""The `worldgate` command: serve, migrate, devnet, and (app/cli/ledger_admin.py) ledger and admin.

Building the parser imports nothing heavy, so `--version` and `--help` answer at once; each command
imports what it uses in its handler (settings, the embedded services, the ledger, the payment code).
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from app import __version__
from app.cli import pay_args
from app.cli.backfill_cmd import add_backfill
from app.cli.batch_cmd import add_batch
from app.cli.ledger_admin import add_ledger_and_admin

if TYPE_CHECKING:
    from app.runtime import embedded
    from app.runtime.settings import Settings

VERSION = __version__


def _exit_on_sigterm() -> None:
    import signal

    # uvicorn re-raises SIGTERM after its graceful shutdown; with the default handler Python dies
    # before `finally` runs and the embedded Postgres, Redis and anvil are orphaned.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))


def _banner(settings: Settings, running: embedded.Embedded) -> str:
    from app.runtime.settings import redact_url

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


def port_in_use(host: str, port: int) -> str | None:
    """Why `host:port` cannot be bound (None: it can), checked before anything starts, the way uvicorn binds."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            return exc.strerror or str(exc)
    return None


def cmd_serve(args: argparse.Namespace) -> int:
    import asyncio
    import os
    import shutil

    import ledger
    from adapters import ReplayServer
    from app.cli import serve
    from app.cli.command_settings import settings_for, with_admin_secret
    from app.runtime import embedded
    from app.runtime.settings import SETTINGS_JSON_VAR, replace, settings_json
    from app.wiring import MIGRATIONS_DIR

    _exit_on_sigterm()
    settings = with_admin_secret(settings_for(args))
    busy = port_in_use(settings.host, settings.port)
    if busy is not None:  # before the embedded services start: a clash fails in a moment, not after them
        print(
            f"worldgate: cannot listen on {settings.host}:{settings.port}: {busy} (another `worldgate serve`?);"
            " pick a free port with --port N (or WORLDGATE_PORT)",
            file=sys.stderr,
        )
        return 2
    running = embedded.start(settings)
    replay: ReplayServer | None = None
    try:
        resolved = running.settings
        if resolved.replay_upstreams and not resolved.upstream_replay_url:
            replay = ReplayServer().start()  # one for every worker, in this process
            resolved = replace(resolved, upstream_replay_url=replay.url)
        assert resolved.database_url
        if resolved.auto_migrate:
            asyncio.run(ledger.migrate(resolved.database_url, MIGRATIONS_DIR))
        if running.devnets is not None:  # a devnet started fresh: its earlier sales are a reset, not a loss
            asyncio.run(_record_devnets(resolved.database_url, running.devnets.state()))
        if resolved.workers > 1:  # every worker writes its counters here; a scrape of any one sums them all
            metrics_dir = resolved.state_dir.resolve() / "metrics"
            shutil.rmtree(metrics_dir, ignore_errors=True)
            metrics_dir.mkdir(parents=True)
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
        # Every worker builds its app from this object, not from the environment: the config file's values,
        # the embedded services' URLs and the admin secret reach them all. Migrated once above, not per worker.
        os.environ[SETTINGS_JSON_VAR] = settings_json(replace(resolved, auto_migrate=False))
        print(_banner(resolved, running), flush=True)
        serve.run(resolved)  # uvicorn, drained on SIGTERM (app/cli/serve.py)
    finally:
        os.environ.pop(SETTINGS_JSON_VAR, None)
        if replay is not None:
            replay.stop()
        running.stop()
    return 0


async def _record_devnets(dsn: str, state: dict[str, Any]) -> None:
    import ledger
    from ledger import epochs

    pool = await ledger.create_pool(dsn, size_min=1, size_max=1)
    try:
        await epochs.record_devnets(pool, state)
    finally:
        await pool.close()


def cmd_migrate(args: argparse.Namespace) -> int:
    """Needs a database and nothing else: no keys, no chain."""
    import asyncio

    import ledger
    from app.cli.command_settings import LEDGER, ledger_database, settings_for
    from app.wiring import MIGRATIONS_DIR

    with ledger_database(settings_for(args, LEDGER)) as dsn:
        applied = asyncio.run(ledger.migrate(dsn, MIGRATIONS_DIR))
    print("applied: " + ", ".join(applied) if applied else "the ledger schema is up to date")
    return 0


def cmd_devnet(args: argparse.Namespace) -> int:
    import json
    import time

    from app.cli.command_settings import settings_for
    from app.runtime import embedded

    _exit_on_sigterm()
    settings = settings_for(args, ("state_dir",))
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


def _cmd_quote(args: argparse.Namespace) -> int:
    from app.cli import pay

    return pay.cmd_quote(args)


def _cmd_pay(args: argparse.Namespace) -> int:
    from app.cli import pay

    return pay.cmd_pay(args)


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

    add_ledger_and_admin(commands)
    add_batch(commands)
    add_backfill(commands)

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
    quote.set_defaults(run=_cmd_quote)

    pay = commands.add_parser(
        "pay",
        help="Pay for a URL in USDC (Base or Solana) and print the receipt and the data.",
        description="Quote the URL, pick the offer the payer key can pay (or --network), refuse it if the price is"
        " above --max, sign it and send the paid request; print the HTTP status, the PAYMENT-RESPONSE receipt and"
        " the body. With --header-only, print only the PAYMENT-SIGNATURE value and send nothing.",
        epilog=pay_args.PAY_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    pay.add_argument("url", help="the resource, e.g. http://127.0.0.1:8402/v1/streams/static.capitals")
    pay.add_argument(
        "--network",
        help="the offer to pay, by CAIP-2 id (eip155:84532, solana:...); default: the first offer on the key's chain",
    )
    pay.add_argument(
        "--max",
        type=pay_args.parse_cap,
        default=pay_args.DEFAULT_CAP,
        metavar="DOLLARS",
        help=f"spend cap in dollars, exact (default {pay_args.DEFAULT_CAP}): a higher price is refused, unpaid",
    )
    pay.add_argument("--key-file", metavar="PATH", help=f"file holding the payer key (else {pay_args.KEY_ENV})")
    pay.add_argument(
        "--devnet",
        action="store_true",
        help="pay with the local devnet's payer key for the offer's chain, from devnet.json (what `serve` wrote)",
    )
    pay.add_argument(
        "--rpc-url",
        help=f"Solana RPC for a recent blockhash (else {pay_args.RPC_ENV}, else the local devnet in devnet.json)",
    )
    pay.add_argument(
        "--header-only",
        action="store_true",
        help="print only the PAYMENT-SIGNATURE value (one line, for curl -H); do not send the paid request",
    )
    pay.set_defaults(run=_cmd_pay)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        result: Any = args.run(args)
    except Exception as exc:
        from app.runtime.settings import SettingsError  # loaded by then: every command reads settings

        if not isinstance(exc, SettingsError):
            raise
        print(f"worldgate: {exc}", file=sys.stderr)
        return 2
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
