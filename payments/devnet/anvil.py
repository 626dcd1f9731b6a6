"""Run anvil (the EVM node from npm `@foundry-rs/anvil`) as a child process on a free local port.

The child dies with the process that started it, even when that one is SIGKILLed (PR_SET_PDEATHSIG);
otherwise an orphaned anvil would hold its port and state file.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import httpx

from .process import DevnetError, die_with_parent, free_port, stop_child

ANVIL_ENV = "WORLDGATE_ANVIL_BIN"
_NPM_BIN = Path("node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil")
_NPM_WRAPPER = Path("node_modules/.bin/anvil")
START_TIMEOUT_S = 15.0


def project_root() -> Path:
    """The checkout this package lives in (editable install), where node_modules/ is."""
    return Path(__file__).resolve().parents[2]


def find_anvil() -> str:
    """$WORLDGATE_ANVIL_BIN, else the npm-installed binary in this checkout or the cwd, else PATH."""
    explicit = os.environ.get(ANVIL_ENV)
    if explicit:
        return explicit
    for base in (project_root(), Path.cwd()):
        for candidate in (base / _NPM_BIN, base / _NPM_WRAPPER):
            if candidate.exists():
                return str(candidate)
    found = shutil.which("anvil")
    if found:
        return found
    raise DevnetError("anvil not found: run `make install` (npm installs @foundry-rs/anvil) or set WORLDGATE_ANVIL_BIN")


class Anvil:
    """One anvil process. `start()` returns once it answers eth_chainId; `stop()` waits for it to exit."""

    def __init__(self, chain_id: int, port: int | None = None, state_path: Path | None = None) -> None:
        self.chain_id = chain_id
        self.port = port or free_port()
        self.state_path = state_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def rpc_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Anvil:
        command = [
            find_anvil(),
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--chain-id", str(self.chain_id),
            "--silent",
        ]  # fmt: skip
        if self.state_path is not None:
            # --state loads the chain from the file if it exists and dumps it there on exit,
            # so a restarted devnet keeps the balances and nonces the ledger remembers.
            self.state_path.parent.mkdir(parents=True, exist_ok=True)
            command += ["--state", str(self.state_path)]
        self.process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, preexec_fn=die_with_parent
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        with httpx.Client(timeout=1.0) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise DevnetError(f"anvil exited with code {self.process.returncode} at start")
                try:
                    answer = client.post(self.rpc_url, json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId"})
                    if int(answer.json()["result"], 16) == self.chain_id:
                        return self
                except (httpx.HTTPError, ValueError, KeyError):
                    pass
                time.sleep(0.02)
        self.stop()
        raise DevnetError(f"anvil did not answer on {self.rpc_url} within {START_TIMEOUT_S:.0f} s")

    def stop(self) -> None:
        stop_child(self.process)
        self.process = None
