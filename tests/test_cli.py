"""The README path as a newcomer runs it: `worldgate serve` with nothing configured, a paid request with
the official client from devnet.json, a ledger report, and SIGTERM stopping every child."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from eth_account import Account
from x402 import x402Client
from x402.http.clients import x402HttpxClient
from x402.mechanisms.evm import EthAccountSigner
from x402.mechanisms.evm.exact.register import register_exact_evm_client

from .chain import devnet_from_state, pay_for, unb64
from .services import free_port

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _clean_env(state_dir: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("WORLDGATE_", "X402_")) and k not in ("DATABASE_URL", "REDIS_URL")
    }
    env["WORLDGATE_STATE_DIR"] = str(state_dir)
    return env


def _children_of(state_dir: Path) -> list[psutil.Process]:
    """Every process the embedded default started for this state dir (postgres, redis-server, anvil)."""
    found = []
    for process in psutil.process_iter(["cmdline", "cwd"]):
        try:
            cmdline = " ".join(process.info["cmdline"] or [])
            if str(state_dir) in cmdline or process.info["cwd"] == str(state_dir):
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return [p for p in found if p.pid != os.getpid()]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, subprocess.Popen[str]]]:
    state_dir = tmp_path_factory.mktemp("serve")
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "app", "serve", "--port", str(port), "--workers", "2"],
        cwd=ROOT,
        env=_clean_env(state_dir),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"worldgate serve exited: {process.stderr.read() if process.stderr else ''}")
        try:
            if httpx.get(f"{url}/v1/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            raise RuntimeError("worldgate serve did not become healthy")
        time.sleep(0.2)
    try:
        yield url, state_dir, process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_serve_runs_on_the_embedded_default(served: tuple[str, Path, subprocess.Popen[str]]) -> None:
    url, state_dir, _ = served
    health = httpx.get(f"{url}/v1/health").json()
    assert health["checks"] == {"database": "ok", "redis": "ok"}
    devnet = json.loads((state_dir / "devnet.json").read_text())["evm"]
    assert devnet["network"] == "eip155:84532" and devnet["chain_id"] == 84532
    assert devnet["asset"] == "0x036CbD53842c5426634e7929541eC2318f3dCF7e"
    assert devnet["eip712"] == {"name": "USDC", "version": "2"}
    assert {"rpc_url", "pay_to", "payer_private_key", "relayer_address"} <= devnet.keys()
    kinds = {p.info["cmdline"][0].rsplit("/", 1)[-1] for p in _children_of(state_dir) if p.info["cmdline"]}
    assert {"postgres", "anvil"} <= kinds


def test_official_client_pays_the_served_gateway(served: tuple[str, Path, subprocess.Popen[str]]) -> None:
    url, state_dir, _ = served
    devnet = json.loads((state_dir / "devnet.json").read_text())["evm"]

    async def pay() -> httpx.Response:
        client = x402Client()
        register_exact_evm_client(client, EthAccountSigner(Account.from_key(devnet["payer_private_key"])))
        async with x402HttpxClient(client) as http:
            return await http.get(f"{url}/v1/streams/static.volcanoes?lat=37.5&lon=15&radius_km=300")

    answer = asyncio.run(pay())
    assert answer.status_code == 200, answer.text
    assert {r["fields"]["name"] for r in answer.json()["records"]} == {"Etna", "Stromboli"}
    assert unb64(answer.headers["payment-response"])["success"] is True


def test_one_payment_across_two_workers_is_served_once(served: tuple[str, Path, subprocess.Popen[str]]) -> None:
    url, state_dir, _ = served
    devnet = devnet_from_state(json.loads((state_dir / "devnet.json").read_text())["evm"])
    offer = unb64(httpx.get(f"{url}/v1/streams/static.capitals").headers["payment-required"])["accepts"][0]
    header = pay_for(devnet.payer_private_key, devnet, offer)

    async def burst() -> list[int]:
        async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=20)) as client:
            answers = await asyncio.gather(
                *(
                    client.get(f"{url}/v1/streams/static.capitals", headers={"PAYMENT-SIGNATURE": header})
                    for _ in range(20)
                )
            )
        return sorted(a.status_code for a in answers)

    assert asyncio.run(burst()) == [200] + [402] * 19


def test_ledger_report_reads_the_running_ledger(served: tuple[str, Path, subprocess.Popen[str]]) -> None:
    _, state_dir, _ = served
    result = subprocess.run(
        [sys.executable, "-m", "app", "ledger", "report", "--group-by", "stream", "--format", "json"],
        cwd=ROOT,
        env=_clean_env(state_dir),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    by_stream = {row["key"]: row for row in report["rows"]}
    assert by_stream["static.volcanoes"]["settled"] == 1 and by_stream["static.volcanoes"]["revenue_atomic"] == 2000
    assert by_stream["static.capitals"]["settled"] == 1 and by_stream["static.capitals"]["revenue_atomic"] == 1000


def test_sigterm_stops_every_child(served: tuple[str, Path, subprocess.Popen[str]]) -> None:
    _, state_dir, process = served
    children = _children_of(state_dir)
    assert children, "expected the embedded services to be running"
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0
    _gone, alive = psutil.wait_procs(children, timeout=15)
    assert alive == [], [p.info for p in alive]
    banner = process.stdout.read() if process.stdout else ""
    assert "LOCAL DEVNET" in banner and "embedded" in banner


def test_devnet_command_prints_devnet_json(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "app", "devnet"], cwd=ROOT, env=_clean_env(tmp_path), stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        lines = []
        while not (lines and lines[-1] == "}\n"):
            lines.append(process.stdout.readline())
        printed = json.loads("".join(lines))
        assert printed == json.loads((tmp_path / "devnet.json").read_text())
        rpc_url = printed["evm"]["rpc_url"]
        assert httpx.post(rpc_url, json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId"}).json()["result"] == hex(
            84532
        )
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    with pytest.raises(httpx.ConnectError):
        httpx.post(rpc_url, json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId"})
