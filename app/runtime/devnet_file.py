"""Reading <state_dir>/devnet.json, which a running `worldgate serve` or `worldgate devnet` writes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def devnet_state(state_dir: Path) -> dict[str, Any] | None:
    """What a running `worldgate serve` or `worldgate devnet` wrote to <state_dir>/devnet.json (per chain:
    network, RPC URL, asset, payTo, devnet payer keys), or None when there is no such file."""
    described = state_dir.resolve() / "devnet.json"
    if not described.exists():
        return None
    state: dict[str, Any] = json.loads(described.read_text())
    return state
