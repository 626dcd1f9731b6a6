"""The fault suite's shared parts: gateways as real OS processes, and docs/reliability.md written from the rows.

Gateways here are separate OS processes (uvicorn over `app.wiring:app_from_env`, the factory `worldgate
serve` runs in each worker; forked from a fork server that imported the app once, so a restart costs about
a second), pointed at the session's Postgres, Redis, anvil, Solana devnet and replay server, so a test can
SIGKILL one and start another on the same state (`gateway_process`, `gateway_env`).

At the end of a session that ran the whole tests/faults directory (no -k/-m/node-id selection, every
item passed), `pytest_sessionfinish` writes docs/reliability.md from report.ROWS; after a partial run it
writes the same document to the session's basetemp and says where. Either way the session fails if
any acceptance total (data served unsettled, double charges, settlements lost, 500s) is not zero.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.edge.admin.auth import mint
from app.runtime.embedded import export_env
from app.runtime.settings import Settings
from payments.devnet.process import die_with_parent

from ..conftest import ADMIN_SECRET
from ..services import free_port
from .report import ROWS, FaultRow

ROOT = Path(__file__).resolve().parents[2]
FAULTS_DIR = Path(__file__).resolve().parent
DOCUMENT = ROOT / "docs" / "reliability.md"
START_TIMEOUT_S = 60.0


# ---- gateways as processes ----


def gateway_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment a gateway process reads its settings from: this session's services, nothing inherited."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("WORLDGATE_", "X402_", "PROMETHEUS_")) and k not in ("DATABASE_URL", "REDIS_URL")
    }
    export_env(settings, env)
    assert settings.upstream_replay_url
    env.update(
        {
            "WORLDGATE_UPSTREAM_REPLAY_URL": settings.upstream_replay_url,
            "WORLDGATE_AUTO_MIGRATE": "0",
            "WORLDGATE_SCHEDULER": "0",
            "WORLDGATE_CACHE_PREFIX": settings.cache_prefix,
            "WORLDGATE_ADMIN_JWT_SECRET": ADMIN_SECRET,
            "WORLDGATE_RECONCILE_INTERVAL_S": "0",  # the tests reconcile when they mean to
            "WORLDGATE_RECONCILE_GRACE_S": "0.01",  # the process that held a claim is dead: no need to wait
            "WORLDGATE_RECONCILE_SETTLED_SAMPLE": "1000",
            "WORLDGATE_LOG_LEVEL": "warning",
            # rate limits are the abuse suite's subject; here they would only turn retries into 429s
            "WORLDGATE_RATE_LIMIT_FREE": "off",
            "WORLDGATE_RATE_LIMIT_QUOTE": "off",
            "WORLDGATE_RATE_LIMIT_PAYER": "off",
        }
    )
    env.update(extra)
    return env


# The fork server: a process that imports the app once (about 6 s of imports on this machine's two
# CPUs) and forks a gateway per request, the way gunicorn's preload does. Each gateway is its own OS
# process (own memory, sockets, event loop; no thread or loop exists before the fork), runs uvicorn over
# the app factory like `worldgate serve`, and dies for real under SIGKILL. It makes a restart cost
# about a second instead of ten, which is what lets the SIGKILL scenario restart 20+ times.
_FORK_SERVER = """
import json, os, signal, sys
import uvicorn
import app.wiring
from app.runtime import faultpoints
from payments.devnet.process import die_with_parent
signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps the gateways; the tests poll their pids
print("ready", flush=True)
for line in sys.stdin:
    order = json.loads(line)
    pid = os.fork()
    if pid == 0:
        try:
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            die_with_parent()  # the fork server goes when the test session goes; its gateways with it
            null = os.open(os.devnull, os.O_RDONLY)
            log = os.open(order["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            os.dup2(null, 0)
            os.dup2(log, 1)
            os.dup2(log, 2)
            os.environ.clear()
            os.environ.update(order["env"])
            faultpoints.arm(os.environ.get(faultpoints.VARIABLE))
            uvicorn.run(
                "app.wiring:app_from_env", factory=True, host="127.0.0.1", port=order["port"], http="httptools",
                loop="uvloop", lifespan="on", log_level="warning", access_log=False,
            )
        finally:
            os._exit(0)
    print(pid, flush=True)
"""


class ForkServer:
    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", _FORK_SERVER],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={k: v for k, v in os.environ.items() if not k.startswith(("WORLDGATE_", "X402_"))},
            preexec_fn=die_with_parent,  # from the main thread: the death signal follows the forking thread
        )
        assert self.process.stdout is not None
        if self.process.stdout.readline().strip() != "ready":
            raise RuntimeError("the gateway fork server did not start")

    def fork(self, env: Mapping[str, str], port: int, log_path: Path) -> int:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps({"env": dict(env), "port": port, "log": str(log_path)}) + "\n")
        self.process.stdin.flush()
        return int(self.process.stdout.readline())

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()  # its loop ends at EOF
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


class GatewayProcess:
    """One gateway in its own OS process (uvicorn, one worker, forked from the fork server), its output in a
    log file."""

    def __init__(self, env: Mapping[str, str], log_path: Path, forks: ForkServer, port: int | None = None) -> None:
        self.env = dict(env)
        self.log_path = log_path
        self.forks = forks
        self.port = port or free_port()
        self.pid = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> GatewayProcess:
        self.pid = self.forks.fork(self.env, self.port, self.log_path)
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if not self.alive():
                raise RuntimeError(f"the gateway exited at startup: {self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/v1/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"the gateway did not become healthy: {self.log_tail()}")
            time.sleep(0.05)

    def alive(self) -> bool:
        return bool(self.pid) and not _gone(self.pid)

    def wait_dead(self, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while self.alive():
            if time.monotonic() > deadline:
                raise TimeoutError(f"gateway {self.pid} is still alive")
            time.sleep(0.01)

    def kill(self) -> None:
        """SIGKILL: no shutdown, no `finally`, open transactions cut mid-flight."""
        if self.alive():
            os.kill(self.pid, signal.SIGKILL)
        self.wait_dead()

    def stop(self) -> None:
        if self.alive():
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.wait_dead(20)
            except TimeoutError:
                self.kill()

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def admin_token() -> str:
    return mint(ADMIN_SECRET, "worldgate-admin", "fault-suite", 600)


@pytest.fixture(scope="session")
def fork_server() -> Iterator[ForkServer]:
    forks = ForkServer()
    yield forks
    forks.close()


@pytest.fixture
def gateway_process(tmp_path: Path, fork_server: ForkServer) -> Iterator[Any]:
    """`start(env)` starts a gateway process and returns it healthy; every one still running is stopped at the end."""
    started: list[GatewayProcess] = []

    def start(env: Mapping[str, str], port: int | None = None) -> GatewayProcess:
        made = GatewayProcess(env, tmp_path / f"gateway-{len(started)}.log", fork_server, port)
        started.append(made)
        return made.start()

    yield start
    for made in started:
        made.stop()


# ---- docs/reliability.md ----


@dataclass
class _Run:
    """What this session selected and how each fault-suite item ended."""

    collected: set[str] = field(default_factory=set)  # node ids under tests/faults
    deselected: set[str] = field(default_factory=set)
    passed: set[str] = field(default_factory=set)
    failed: set[str] = field(default_factory=set)  # failed, errored or skipped: not a full, passing run
    files: set[str] = field(default_factory=set)


_RUN = _Run()


def _under_faults(item: pytest.Item) -> bool:
    return Path(str(item.path)).resolve().is_relative_to(FAULTS_DIR)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _under_faults(item):
            _RUN.collected.add(item.nodeid)
            _RUN.files.add(Path(str(item.path)).resolve().name)


def pytest_deselected(items: list[pytest.Item]) -> None:
    _RUN.deselected.update(item.nodeid for item in items if _under_faults(item))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if not report.nodeid.startswith("tests/faults/"):
        return
    if report.failed or report.skipped:
        _RUN.failed.add(report.nodeid)
    elif report.when == "call" and report.passed:
        _RUN.passed.add(report.nodeid)


def _whole_directory(config: pytest.Config) -> tuple[bool, str]:
    """Did this session run every test under tests/faults, and did each pass? (and if not, why not)"""
    on_disk = {p.name for p in FAULTS_DIR.glob("test_*.py")}
    if missing := on_disk - _RUN.files:
        return False, f"not collected: {', '.join(sorted(missing))}"
    if _RUN.deselected:
        return False, f"{len(_RUN.deselected)} fault test(s) deselected (-k/-m/--lf)"
    if any("::" in str(arg) for arg in config.args):
        return False, "node ids were selected on the command line"
    if _RUN.failed:
        return False, f"{len(_RUN.failed)} fault test(s) failed, errored or were skipped"
    if not_run := _RUN.collected - _RUN.passed:
        return False, f"{len(not_run)} fault test(s) did not run to a pass (-x, interrupted?)"
    return True, ""


COLUMNS = (
    "fault", "what was done", "what the gateway did", "requests", "served", "settled", "charged",
    "served unsettled", "double charged", "lost", "500s", "charged, never served",
)  # fmt: skip


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _row(row: FaultRow) -> str:
    fault = _cell(row.fault) + "".join(f"<br>*{_cell(note)}*" for note in row.notes)
    cells = (
        row.action, row.outcome, row.requests, row.served, row.settled, row.charged,
        row.served_unsettled, row.double_charged, row.lost, row.status_500, row.charged_undelivered,
    )  # fmt: skip
    return "| " + " | ".join([fault, *map(_cell, cells)]) + " |"


def acceptance(rows: list[FaultRow]) -> list[tuple[str, int]]:
    """The issue's acceptance lines, as figures from the rows: each must be 0."""
    return [
        ("responses with data for a payment that did not settle (sync mode)", sum(r.served_unsettled for r in rows)),
        ("double charges", sum(r.double_charged for r in rows)),
        ("settlements missing from the ledger after recovery", sum(r.lost for r in rows)),
        (
            "responses with status 500 on hostile input (and under every other fault)",
            sum(r.status_500 for r in rows),
        ),
        (
            "payers charged for data they never got, even by retrying the same payment",
            sum(r.charged_undelivered for r in rows),
        ),
    ]


def _git(*arguments: str) -> str:
    try:
        done = subprocess.run(["git", *arguments], cwd=ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return done.stdout.strip() if done.returncode == 0 else "unknown"


def render(rows: list[FaultRow], command: str, complete: bool, why_partial: str = "") -> str:
    commit = _git("rev-parse", "HEAD")
    dirty = _git("status", "--porcelain", "--untracked-files=no")
    lines = [
        "# Reliability: what faults do to worldgate, in figures",
        "",
        "Generated by the fault suite (`tests/faults/`); do not edit by hand. Every figure below was measured in",
        "the run named here, from HTTP answers, the Postgres ledger and the chains (anvil for EVM, the LiteSVM",
        "devnet for Solana), never assumed.",
        "",
        f"- command: `{command}`",
        f"- date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M:%S UTC')}",
        f"- git commit: `{commit}`" + (" (with uncommitted changes)" if dirty and dirty != "unknown" else ""),
        "- settlement mode: sync (release the body only after a successful settlement)",
        f"- python {sys.version.split()[0]}, {len(rows)} fault scenarios",
    ]
    if not complete:
        lines += ["", f"**Partial run** ({why_partial}): not every fault test ran and passed; not a release figure."]
    lines += [
        "",
        "Columns: *requests* sent; *served*: answers that carried data; *settled*: payments settled on chain",
        "(after recovery); *charged*: payer debits seen on chain; the last five must be 0: *served unsettled*",
        "(data for a payment that did not settle), *double charged*, *lost* (an on-chain settlement missing",
        "from the ledger after recovery), *500s* (answers of status 500 or more that were not an intended",
        "502/503/504), *charged, never served* (a payer debited whose answers, its retry with the same payment",
        "included, never carried the data).",
    ]
    sections: dict[str, list[FaultRow]] = {}
    for row in rows:
        sections.setdefault(row.section, []).append(row)
    header = "| " + " | ".join(COLUMNS) + " |"
    rule = "|" + "|".join("---" if i < 3 else "---:" for i in range(len(COLUMNS))) + "|"
    for section, members in sections.items():
        lines += ["", f"## {section}", "", header, rule, *(_row(r) for r in members)]
    totals = {
        "requests": sum(r.requests for r in rows),
        "served": sum(r.served for r in rows),
        "settled": sum(r.settled for r in rows),
        "charged": sum(r.charged for r in rows),
    }
    lines += [
        "",
        "## Totals",
        "",
        f"{len(rows)} scenarios; {totals['requests']} requests, {totals['served']} served, "
        f"{totals['settled']} settled, {totals['charged']} payer debits on chain.",
        "",
    ]
    for text, figure in acceptance(rows):
        lines.append(f"- **{figure}** {text}" + ("" if figure == 0 else "  ← ACCEPTANCE FAILED"))
    return "\n".join(lines) + "\n"


def _command(config: pytest.Config) -> str:
    if os.environ.get("MAKELEVEL"):  # under make: what the user typed was a make target
        extra = os.environ.get("PYTEST_ARGS")
        return "make test" + (f" PYTEST_ARGS={shlex.quote(extra)}" if extra else "")
    return "pytest " + " ".join(shlex.quote(str(a)) for a in config.invocation_params.args)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not _RUN.collected:
        return  # the fault suite was not part of this session
    config = session.config
    complete, why = _whole_directory(config)
    rows = list(ROWS)
    document = render(rows, _command(config), complete, why)
    basetemp = getattr(config, "_tmp_path_factory", None)
    partial_dir = Path(str(basetemp.getbasetemp())) if basetemp is not None else Path(tempfile.gettempdir())
    target = DOCUMENT if complete else partial_dir / "reliability.md"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(document)
    failed = [(text, figure) for text, figure in acceptance(rows) if figure]
    where = "" if complete else f" (partial run: {why})"
    _SUMMARY[:] = [f"reliability table: {target}{where}", *(f"ACCEPTANCE FAILED: {f} {t}" for t, f in failed)]
    if failed and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


_SUMMARY: list[str] = []  # said in the terminal summary, after the progress line


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for line in _SUMMARY:
        terminalreporter.write_line(line, red=line.startswith("ACCEPTANCE"))
