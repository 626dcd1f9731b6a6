"""The benches' process harness: the servers they start (each in its own process group, with a clean
environment, stopped in order) and the wait for their first quote, the cleanup no second Ctrl-C cuts
short, and the CPU each process uses, read from /proc.

Shared by bench/paid.py and bench/batch.py. Whoever imports `bench.harness` has put the repo root on
sys.path already (that is how `bench` is found), so the first-party imports below resolve.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, NoReturn

import httpx

from payments.devnet.process import die_with_parent

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
PATH = "/v1/streams/static.capitals"  # the paid route every bench server serves, probed and loaded
START_TIMEOUT_S = 45.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class BenchError(RuntimeError):
    """The benchmark could not set itself up; the message says what to do."""


def raise_exit(signum: int, _frame: Any) -> NoReturn:
    """The SIGTERM handler: a SystemExit, so `finally` blocks stop the children and drop the database."""
    raise SystemExit(128 + signum)


class Cleanup(contextlib.ExitStack):
    """An ExitStack whose unwinding is not cut short by a second Ctrl-C or a SIGTERM."""

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN), signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            return bool(super().__exit__(exc_type, exc, tb))
        finally:
            signal.signal(signal.SIGINT, previous[0])
            signal.signal(signal.SIGTERM, previous[1])


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    url: str

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:]) or "(empty log)"

    def alive(self) -> bool:
        return self.process.poll() is None


@contextlib.contextmanager
def child(name: str, command: list[str], env: dict[str, str], workdir: Path, port: int) -> Iterator[Child]:
    """A server in its own process group (so Ctrl-C reaches only us, and we stop it in order)."""
    log_path = workdir / f"{name}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,
            process_group=0,
        )
    running = Child(name, process, log_path, f"http://127.0.0.1:{port}")
    try:
        yield running
    finally:
        if process.poll() is None:
            process.terminate()  # uvicorn shuts down gracefully: lifespan closes pools
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def wait_until_quoting(server: Child) -> None:
    """Poll the paid route until it answers 402 with a quote."""
    deadline = time.monotonic() + START_TIMEOUT_S
    with httpx.Client(base_url=server.url, timeout=2.0) as client:
        while time.monotonic() < deadline:
            if not server.alive():
                raise BenchError(
                    f"{server.name} exited with code {server.process.returncode} at start:\n{server.log_tail()}"
                )
            try:
                answer = client.get(PATH)
                if answer.status_code == 402 and "payment-required" in answer.headers:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
    raise BenchError(f"{server.name} did not quote {PATH} within {START_TIMEOUT_S:.0f} s:\n{server.log_tail()}")


def process_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far, from /proc; NaN once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return math.nan
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime


CpuProbe = Callable[[], dict[str, float]]


def cpu_probe(server_pid: int, anvil_pid: int) -> CpuProbe:
    """Cumulative CPU seconds of the server under test, anvil and this load generator."""

    def probe() -> dict[str, float]:
        return {
            "server": process_cpu_s(server_pid),
            "anvil": process_cpu_s(anvil_pid),
            "load generator": time.process_time(),
        }

    return probe


def server_env(extra: dict[str, str]) -> dict[str, str]:
    """The environment minus anything that would point a server somewhere else."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("WORLDGATE_", "X402_", "BENCH_")) and k not in ("DATABASE_URL", "REDIS_URL")
    }
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env
