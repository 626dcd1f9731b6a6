"""<state_dir>/devnet.json, which a running `worldgate serve` or `worldgate devnet` writes, and files of
the state dir that hold keys, written readable by this user only."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

DEVNET_FILE = "devnet.json"


def devnet_state(state_dir: Path) -> dict[str, Any] | None:
    """What a running `worldgate serve` or `worldgate devnet` wrote to <state_dir>/devnet.json (per chain:
    network, RPC URL, asset, payTo, devnet payer keys, the devnet's instance id), or None when there is no
    such file."""
    described = state_dir.resolve() / DEVNET_FILE
    if not described.exists():
        return None
    state: dict[str, Any] = json.loads(described.read_text())
    return state


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path` with mode 0600 (devnet keys, secrets), also when the file exists already
    with a wider mode: written to a private temporary file, then renamed over it."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.chmod(temporary, 0o600)  # O_CREAT's mode is only used for a new file
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write_devnet_state(state_dir: Path, state: dict[str, Any], *, evm_kept: bool) -> dict[str, Any]:
    """Write devnet.json (0600: it holds the devnets' keys), each chain named by an instance id: a new one
    for a chain started fresh, the previous one for the EVM chain when its state was kept (`evm_kept`).
    Returns the state as written."""
    previous = (devnet_state(state_dir) or {}) if evm_kept else {}
    written = {name: dict(section) for name, section in state.items()}
    for name, section in written.items():
        kept = (previous.get(name) or {}).get("instance") if name == "evm" else None
        section["instance"] = kept or uuid.uuid4().hex
    write_private(state_dir / DEVNET_FILE, json.dumps(written, indent=2) + "\n")
    return written
