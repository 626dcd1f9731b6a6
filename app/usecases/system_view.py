"""What the console's System Health says of the gateway's mode: which parts run embedded on this machine and
which are configured, whether its networks are mainnets, public testnets or local devnets, and whether upstreams
are live or replayed. A worker is handed resolved settings (`worldgate serve` starts the embedded services and
passes their URLs), so an embedded part is known by where it lives: in the state directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from app.runtime.settings import Settings
from app.usecases.pricing import network_name
from payments.networks import BASE_MAINNET, BASE_SEPOLIA, SOLANA_DEVNET, SOLANA_MAINNET

MAINNETS = frozenset({BASE_MAINNET, SOLANA_MAINNET})
TESTNETS = frozenset({BASE_SEPOLIA, SOLANA_DEVNET})
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


def _inside(path: str, directory: Path) -> bool:
    try:
        return Path(path).resolve().is_relative_to(directory.resolve())
    except (OSError, ValueError):
        return False


def _postgres_part(url: str | None, state_dir: Path) -> str:
    """embedded: the URL's port is the one the embedded Postgres in <state_dir>/pg listens on."""
    pid_file = state_dir / "pg" / "postmaster.pid"
    if not url or not pid_file.is_file():
        return "configured"
    try:
        lines = pid_file.read_text().splitlines()
        port = urlsplit(url).port
    except (OSError, ValueError):
        return "configured"
    return "embedded" if len(lines) > 3 and port is not None and lines[3].strip() == str(port) else "configured"


def _redis_part(url: str | None, state_dir: Path) -> str:
    """embedded: the URL is the unix socket the embedded Redis made in the state directory."""
    if url and url.startswith("unix://") and _inside(url.removeprefix("unix://"), state_dir):
        return "embedded"
    return "configured"


def network_kind(network: str, rpc_url: str | None) -> str:
    """mainnet, testnet (a public test network) or devnet (a chain on this machine)."""
    if rpc_url and urlsplit(rpc_url).hostname in LOOPBACK:
        return "devnet"
    if network in MAINNETS:
        return "mainnet"
    return "testnet" if network in TESTNETS else "unknown"


def mode(settings: Settings | None, replay_url: str | None) -> dict[str, Any]:
    """The gateway's mode: parts, networks, chain (mainnet, testnet, devnet or mixed), upstreams, facilitator."""
    upstreams = "replay" if replay_url else "live"
    if settings is None:  # an app built without its settings at hand: say only what is known
        return {"parts": {}, "networks": [], "chain": "unknown", "upstreams": upstreams}
    chains = [(c.network, c.rpc_url) for c in (settings.evm, settings.svm) if c is not None]
    networks = [{"network": n, "name": network_name(n), "kind": network_kind(n, url)} for n, url in chains]
    kinds = {n["kind"] for n in networks}
    return {
        "parts": {
            "database": _postgres_part(settings.database_url, settings.state_dir),
            "redis": _redis_part(settings.redis_url, settings.state_dir),
            "chains": "devnet" if kinds == {"devnet"} else "configured",
        },
        "networks": networks,
        "chain": kinds.pop() if len(kinds) == 1 else ("mixed" if kinds else "none"),
        "upstreams": upstreams,
        "facilitator": "remote" if settings.facilitator_url else "local",
        "scheduler": settings.scheduler,
        "workers": settings.workers,
        "schemes": list(settings.schemes),
    }
