"""`worldgate batch status` (channels: deposits, charged, owed, claimed, settled) and `worldgate batch flush`
(claim every accepted voucher and sweep to payTo now, instead of waiting for the settler's timers).

With no chain configured they use the devnet a running `worldgate serve` describes in devnet.json.
The parser imports nothing heavy; each handler imports what it uses.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from app.runtime.settings import Settings

BATCH = ("database_url", "state_dir", "evm", "facilitator_url", "schemes", "batch")


def _settings(args: argparse.Namespace) -> Settings:
    """The batch commands' settings; the devnet's chain when none is configured (as `serve` runs it)."""
    from app.cli.command_settings import settings_for
    from app.runtime.devnet_file import devnet_state
    from app.runtime.embedded import devnet_settings
    from app.runtime.settings import SettingsError, replace
    from payments.devnet.evm import EvmDevnet

    settings = settings_for(args, BATCH)
    if settings.evm is None:
        state = devnet_state(settings.state_dir)
        if state is None or "evm" not in state:
            raise SettingsError("no EVM chain is configured and no devnet is running (start `worldgate serve`)")
        settings = replace(settings, evm=devnet_settings(EvmDevnet.from_state(state["evm"])))
    return settings


def _rows(statuses: list[Any]) -> list[dict[str, Any]]:
    keys = ("channel_id", "payer", "balance_atomic", "charged_atomic", "owed_atomic", "claimed_atomic")
    keys += ("unsettled_atomic", "settled_atomic", "vouchers")
    return [{k: getattr(s, k) for k in keys} for s in statuses]


def _table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no batch-settlement channel yet\n"
    names = list(rows[0])
    widths = [max(len(n), *(len(str(r[n])) for r in rows)) for n in names]
    lines = ["  ".join(n.ljust(w) for n, w in zip(names, widths, strict=True))]
    lines += ["  ".join(str(r[n]).ljust(w) for n, w in zip(names, widths, strict=True)) for r in rows]
    return "\n".join(lines) + "\n"


def cmd_batch(args: argparse.Namespace) -> int:
    import asyncio

    import ledger
    from app.cli.command_settings import ledger_database
    from app.runtime.settings import SettingsError
    from app.usecases import batch_setup
    from app.usecases.services import Services

    settings = _settings(args)
    if args.batch_command == "flush" and not batch_setup.offered(settings):
        raise SettingsError("batch-settlement is not offered here (WORLDGATE_SCHEMES, a local facilitator, an EVM key)")

    async def run(dsn: str) -> str:
        # a flush holds two advisory locks (the settler's, the relayer's) and writes ahead on a third connection
        pool = await ledger.create_pool(dsn, size_min=1, size_max=4)
        try:
            if args.batch_command == "status":
                rows = _rows(await ledger.channels.batch_status(pool))
                return json.dumps(rows, indent=2) + "\n" if args.format == "json" else _table(rows)
            parts = batch_setup.build(settings, pool, Services(pool=pool))
            try:
                report = await parts.settler.flush()
            finally:
                await parts.rpc.close()
            document = {
                "recovered": list(report.recovered),  # claims or sweeps a crash left unbooked, booked from receipts
                "claims": report.claims,
                "channels": report.channels,
                "claimed_atomic": report.claimed_atomic,
                "settled_atomic": report.settled_atomic,
                "transactions": list(report.transactions),
            }
            if args.format == "json":
                return json.dumps(document, indent=2) + "\n"
            return "".join(f"{k:15} {v}\n" for k, v in document.items())
        finally:
            await pool.close()

    with ledger_database(settings) as dsn:
        sys.stdout.write(asyncio.run(run(dsn)))
    return 0


def add_batch(commands: Any) -> None:
    batch = commands.add_parser("batch", help="Batch-settlement channels: their state, and settling them now.")
    sub = batch.add_subparsers(dest="batch_command", required=True)
    status = sub.add_parser("status", help="Per channel: deposit, charged, owed (unclaimed), claimed, settled.")
    flush = sub.add_parser("flush", help="Claim every accepted voucher and sweep to payTo, now.")
    for command in (status, flush):
        command.add_argument("--config")
        command.add_argument("--format", default="table", choices=["table", "json"])
        command.set_defaults(run=cmd_batch)
