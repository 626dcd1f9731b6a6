"""Child processes of the devnets (anvil, the Solana JSON-RPC server, an embedded redis-server):
free ports, dying with the parent, and stopping politely, then firmly."""

from __future__ import annotations

import ctypes
import signal
import socket
import subprocess
from typing import Any

STOP_TIMEOUT_S = 10.0


class DevnetError(RuntimeError):
    """The local devnet could not be started or provisioned."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def die_with_parent() -> None:
    """A `preexec_fn`: the child gets SIGTERM when its parent dies, even by SIGKILL (Linux).

    Start children from the main thread: the signal follows the thread that forked, not the process.
    """
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def stop_child(process: subprocess.Popen[Any] | None, timeout_s: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM (anvil dumps its --state on it), wait, SIGKILL if it will not go; close its pipes."""
    if process is None:
        return
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    for stream in (process.stdin, process.stdout, process.stderr):
        if stream is not None:
            stream.close()
