"""`worldgate ledger findings`: list reconcile findings by state, and acknowledge or close one with a note.

Each action is kept in the ledger with who did it (`cli:<user>`, or --by); the admin API and the
dashboard do the same with the admin token's subject.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from typing import Any

FINDING_STATES = ("open", "acknowledged", "closed")  # ledger.findings.STATES, without importing the ledger
COLUMNS = ("id", "state", "kind", "payment_id", "network", "amount_atomic", "first_seen_at", "note", "detail")


def _table(findings: list[dict[str, Any]]) -> str:
    if not findings:
        return "no findings\n"
    rows = [list(COLUMNS)] + [
        [
            str(f[c])
            if c != "first_seen_at"
            else f[c].isoformat(timespec="seconds")
            if hasattr(f[c], "isoformat")
            else str(f[c])
            for c in COLUMNS
        ]
        for f in findings
    ]
    for row in rows[1:]:
        row[-2] = "" if row[-2] == "None" else row[-2]
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS) - 1)]  # the detail runs on unpadded
    return "\n".join("  ".join([*(v.ljust(w) for v, w in zip(r, widths, strict=False)), r[-1]]) for r in rows) + "\n"


def _json_ready(value: Any) -> Any:
    return value.isoformat() if hasattr(value, "isoformat") else value


def cmd_findings(args: argparse.Namespace) -> int:
    import asyncio
    from dataclasses import asdict

    import ledger
    from app.cli.command_settings import LEDGER, ledger_database, settings_for
    from ledger import findings

    async def run(dsn: str) -> tuple[int, str]:
        pool = await ledger.create_pool(dsn, size_min=1, size_max=2)
        try:
            if args.action is None:
                found = [asdict(f) for f in await findings.findings(pool, args.state)]
                if args.format == "json":
                    plain = [{k: _json_ready(v) for k, v in f.items()} for f in found]
                    return 0, json.dumps({"findings": plain}, indent=2) + "\n"
                return 0, _table(found)
            actor = args.by or f"cli:{getpass.getuser()}"
            try:
                done = await findings.act(pool, args.id, args.action, args.note, actor)
            except ledger.LedgerError as exc:  # unknown id, closed already, an empty note
                return 1, f"worldgate: {exc}\n"
            return 0, f"finding {done.id} {done.state} by {actor}: {done.note}\n"
        finally:
            await pool.close()

    with ledger_database(settings_for(args, LEDGER)) as dsn:
        code, text = asyncio.run(run(dsn))
    (sys.stderr if code else sys.stdout).write(text)
    return code


def add_findings(ledger_sub: Any) -> None:
    """`ledger findings [--state S] [--format F]`, `ledger findings ack ID --note N`, `... close ID --note N`."""
    parser = ledger_sub.add_parser(
        "findings",
        help="Reconcile findings: list them by state; acknowledge or close one with a note.",
        description="List reconcile findings (open: nobody has looked; acknowledged: seen, being handled;"
        " closed: by an operator, or resolved when the chain agreed), or act on one: `ack ID --note TEXT`,"
        " `close ID --note TEXT`. A finding an operator closed stays closed when reconcile sees it again.",
    )
    parser.add_argument("--config")
    parser.add_argument("--state", choices=FINDING_STATES, help="only findings in this state (default: all)")
    parser.add_argument("--format", default="table", choices=["table", "json"])
    parser.set_defaults(run=cmd_findings, action=None)
    actions = parser.add_subparsers(dest="finding_action")
    for name, action, help_text in (
        ("ack", "acknowledge", "Acknowledge a finding: seen, being handled (it stays unresolved)."),
        ("close", "close", "Close a finding, saying why in the note."),
    ):
        sub = actions.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("--config")
        sub.add_argument("id", type=int, help="the finding's id (see `worldgate ledger findings`)")
        sub.add_argument("--note", required=True, help="why: kept with the finding, with who acted")
        sub.add_argument("--by", help="who acts (default: cli:<your user name>)")
        sub.set_defaults(run=cmd_findings, action=action)
