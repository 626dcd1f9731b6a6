"""The `worldgate` command starts fast because building its parser imports nothing heavy, and each command
imports only what it uses. No timing here (bench/cli_start.py measures): what is asserted is which modules
get imported, which is what makes a start slow."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from app.cli import findings as findings_cli
from app.cli import ledger_admin
from ledger import PaymentState
from ledger import findings as ledger_findings
from ledger.reports import Grouping

ROOT = Path(__file__).resolve().parents[1]
# What the parser must not pull in: each costs from tens of ms to seconds (payments, adapters).
HEAVY = (
    "adapters",
    "app.edge",
    "app.runtime.embedded",
    "app.runtime.settings",
    "app.usecases",
    "app.wiring",
    "asyncpg",
    "eth_account",
    "httpx",
    "jwt",
    "ledger",
    "payments",
    "pydantic",
    "redis",
    "solders",
    "starlette",
    "uvicorn",
)
PROBE = """
import json, sys
from app.cli.operator import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print("MODULES=" + json.dumps(sorted(sys.modules)))
"""


def modules_after(*argv: str) -> set[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORLDGATE_")}
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *argv], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    [line] = [line for line in done.stdout.splitlines() if line.startswith("MODULES=")]
    return set(json.loads(line.removeprefix("MODULES=")))


def heavy_in(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if m.split(".")[0] in HEAVY or any(m.startswith(h + ".") for h in HEAVY))


def test_version_and_help_import_nothing_heavy() -> None:
    for argv in (
        ["--version"],
        ["--help"],
        ["pay", "--help"],
        ["quote", "--help"],
        ["serve", "--help"],
        ["ledger", "report", "--help"],
        ["ledger", "findings", "ack", "--help"],
        ["admin", "token", "--help"],
    ):
        modules = modules_after(*argv)
        assert "app.cli.operator" in modules  # the probe did run the command
        assert heavy_in(modules) == [], argv


def test_the_probe_would_see_a_heavy_import() -> None:
    """The same probe on a command that does load the ledger and settings: they show up."""
    modules = modules_after("ledger", "findings", "--state", "bogus")  # refused by argparse: nothing loads
    assert heavy_in(modules) == []
    loaded = modules_after("ledger", "report", "--from", "not-a-date")  # reads settings, then refuses the date
    assert {"app.runtime.settings", "app.runtime.times"} <= loaded


def test_the_parsers_choices_are_the_ledgers() -> None:
    """The parser spells these out so it need not import the ledger; they must not drift."""
    assert tuple(Grouping) == ledger_admin.GROUPINGS
    assert tuple(ledger_findings.STATES) == findings_cli.FINDING_STATES


def test_a_payment_state_is_checked_by_the_ledgers_own_list(tmp_path: Path) -> None:
    """--state is not spelled out in the parser (new settlement modes add states): the handler checks it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORLDGATE_")}
    env.update(DATABASE_URL="postgresql://nobody@127.0.0.1:1/none", WORLDGATE_STATE_DIR=str(tmp_path))
    done = subprocess.run(
        [sys.executable, "-m", "app", "ledger", "report", "--state", "bogus"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "is not a payment state" in done.stderr
    assert all(state in done.stderr for state in PaymentState)  # the current list, whatever it holds
