"""The Solana devnet server (payments/devnet/solana.py) as a child process of the caller."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

import httpx

from .process import DevnetError, die_with_parent, free_port, stop_child
from .solana import START_TIMEOUT_S


class SolanaDevnetProcess:
    """The devnet server as a child process; `start()` returns once it answers, with its state."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.process: subprocess.Popen[str] | None = None
        self.state: dict[str, Any] = {}

    @property
    def rpc_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> SolanaDevnetProcess:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "payments.devnet.solana", "--port", str(self.port)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            text=True,
            preexec_fn=die_with_parent,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            self.stop()
            raise DevnetError("the Solana devnet exited at start")
        self.state = json.loads(line)
        deadline = time.monotonic() + START_TIMEOUT_S
        probe = {"jsonrpc": "2.0", "id": 1, "method": "getHealth"}
        while time.monotonic() < deadline:
            try:
                if httpx.post(self.rpc_url, json=probe, timeout=1).json().get("result") == "ok":
                    return self
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.02)
        self.stop()
        raise DevnetError(f"the Solana devnet did not answer on {self.rpc_url}")

    def stop(self) -> None:
        stop_child(self.process)
        self.process = None
