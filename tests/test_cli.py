"""The README path as a newcomer runs it: `worldgate serve` with nothing configured, a paid request with
the official client from devnet.json, a ledger report, and SIGTERM stopping every child."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from eth_account import Account
from solders.hash import Hash
from solders.keypair import Keypair
from x402 import x402Client
from x402.http.clients import x402HttpxClient
from x402.mechanisms.evm import EthAccountSigner
from x402.mechanisms.evm.exact.register import register_exact_evm_client

from app.edge.admin.auth import SECRET_FILE
from payments.codec import PaymentRequirements, convert
from payments.svm.client import pay as svm_pay

from .chain import assert_one_served, devnet_from_state, pay_for, unb64
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


def _children_of(state_dir: Path, parent: int | None = None) -> list[psutil.Process]:
    """Every process the embedded default started for this state dir (postgres, redis-server, anvil),
    and every descendant of `parent` (uvicorn workers, the Solana devnet)."""
    found = psutil.Process(parent).children(recursive=True) if parent else []
    for process in psutil.process_iter(["cmdline", "cwd"]):
        try:
            cmdline = " ".join(process.info["cmdline"] or [])
            if str(state_dir) in cmdline or process.info["cwd"] == str(state_dir):
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return list({p.pid: p for p in found if p.pid != os.getpid()}.values())


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, subprocess.Popen[str]]]:
    state_dir = tmp_path_factory.mktemp("serve")
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "app", "serve", "--port", str(port), "--workers", "2", "--replay-upstreams"],
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
        if process.poll() is None:  # the SIGTERM test did not run (e.g. -x): stop it the way serve expects
            process.terminate()
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def test_serve_runs_on_the_embedded_default(served: tuple[str, Path, subprocess.Popen[str]]) -> None:
    url, state_dir, _ = served
    health = httpx.get(f"{url}/v1/health").json()
    assert health["checks"] == {"database": "ok", "redis": "ok"}
    devnet = json.loads((state_dir / "devnet.json").read_text())["evm"]
    assert devnet["network"] == "eip155:84532" and devnet["chain_id"] == 84532
    assert devnet["asset"] == "0x036CbD53842c5426634e7929541eC2318f3dCF7e"
    assert devnet["eip712"] == {"name": "USDC", "version": "2"}
    assert {"rpc_url", "pay_to", "payer_private_key", "relayer_address"} <= devnet.keys()
    svm = json.loads((state_dir / "devnet.json").read_text())["svm"]
    assert svm["network"] == "solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1"
    assert svm["asset"] == "4zMMC9srt5Ri5X14GAgXhaHii3GnPAEERYPJgZJDncDU"
    assert {"rpc_url", "pay_to", "fee_payer", "payer_secret_key"} <= svm.keys()
    assert devnet["instance"] and svm["instance"] and devnet["instance"] != svm["instance"]
    assert (state_dir / "devnet.json").stat().st_mode & 0o777 == 0o600  # it holds the devnets' keys
    assert (state_dir / SECRET_FILE).stat().st_mode & 0o777 == 0o600
    assert health["networks"] == ["eip155:84532", svm["network"]]
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


def test_world_from_replayed_upstreams_through_the_served_gateway(
    served: tuple[str, Path, subprocess.Popen[str]],
) -> None:
    url, state_dir, _ = served
    assert httpx.get(f"{url}/v1/health").json()["upstreams"] == "replay (recorded payloads)"
    devnet = json.loads((state_dir / "devnet.json").read_text())["evm"]

    async def pay() -> httpx.Response:
        client = x402Client()
        register_exact_evm_client(client, EthAccountSigner(Account.from_key(devnet["payer_private_key"])))
        async with x402HttpxClient(client) as http:
            return await http.get(f"{url}/v1/world?lat=48.85&lon=2.35")

    answer = asyncio.run(pay())
    assert answer.status_code == 200, answer.text
    world = answer.json()
    assert world["weather"]["available"] and world["weather"]["record"]["stream"] == "weather.current"
    assert world["iss"]["available"] and world["iss"]["distance_km"] > 0
    assert unb64(answer.headers["payment-response"])["success"] is True


def test_solana_payment_through_the_served_gateway(served: tuple[str, Path, subprocess.Popen[str]]) -> None:
    url, state_dir, _ = served
    svm = json.loads((state_dir / "devnet.json").read_text())["svm"]
    quote = unb64(httpx.get(f"{url}/v1/streams/static.capitals").headers["payment-required"])
    [offer] = [o for o in quote["accepts"] if o["network"] == svm["network"]]
    blockhash = httpx.post(svm["rpc_url"], json={"jsonrpc": "2.0", "id": 1, "method": "getLatestBlockhash"}).json()
    header = svm_pay(
        Keypair.from_base58_string(svm["payer_secret_key"]),
        convert(offer, PaymentRequirements),
        blockhash=Hash.from_string(blockhash["result"]["value"]["blockhash"]),
    )
    answer = httpx.get(f"{url}/v1/streams/static.capitals", headers={"PAYMENT-SIGNATURE": header}, timeout=30)
    assert answer.status_code == 200, answer.text
    receipt = unb64(answer.headers["payment-response"])
    assert receipt["success"] is True and receipt["network"] == svm["network"]


def test_one_payment_across_two_workers_is_served_once(served: tuple[str, Path, subprocess.Popen[str]]) -> None:
    url, state_dir, _ = served
    devnet = devnet_from_state(json.loads((state_dir / "devnet.json").read_text())["evm"])
    offer = unb64(httpx.get(f"{url}/v1/streams/static.capitals").headers["payment-required"])["accepts"][0]
    header = pay_for(devnet.payer_private_key, devnet, offer)

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=20)) as client:
            return await asyncio.gather(
                *(
                    client.get(f"{url}/v1/streams/static.capitals", headers={"PAYMENT-SIGNATURE": header})
                    for _ in range(20)
                )
            )

    assert_one_served(asyncio.run(burst()))


def test_ledger_report_reads_the_running_ledger(served: tuple[str, Path, subprocess.Popen[str]]) -> None:
    _, state_dir, _ = served

    def report(group_by: str) -> dict[str, dict[str, int]]:
        result = subprocess.run(
            [sys.executable, "-m", "app", "ledger", "report", "--group-by", group_by, "--format", "json"],
            cwd=ROOT,
            env=_clean_env(state_dir),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        return {row["key"]: row for row in json.loads(result.stdout)["rows"]}

    by_stream = report("stream")  # EVM: volcanoes, world; capitals once on EVM, once on Solana
    assert (by_stream["static.volcanoes"]["settled"], by_stream["static.volcanoes"]["revenue_atomic"]) == (1, 2000)
    assert (by_stream["static.capitals"]["settled"], by_stream["static.capitals"]["revenue_atomic"]) == (2, 2000)
    by_network = report("network")
    assert by_stream["/v1/world"]["revenue_atomic"] == 10_000
    assert by_network["eip155:84532"]["revenue_atomic"] == 13_000
    assert by_network["solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1"]["revenue_atomic"] == 1000
    solana_gas = by_network["solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1"]["gas"]
    assert solana_gas == {"solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1": {"amount_atomic": 10_001, "unit": "lamports"}}
    assert by_network["eip155:84532"]["gas"]["eip155:84532"]["unit"] == "wei"
    assert "gas_cost_atomic" not in by_stream["static.capitals"]  # wei and lamports are never added together
    assert set(by_stream["static.capitals"]["gas"]) == {"eip155:84532", "solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1"}


def _worldgate(state_dir: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", *arguments],
        cwd=ROOT,
        env=_clean_env(state_dir),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_ledger_summary_verify_and_reconcile_on_the_running_ledger(
    served: tuple[str, Path, subprocess.Popen[str]],
) -> None:
    url, state_dir, _ = served
    summary = _worldgate(state_dir, "ledger", "report", "--summary", "--format", "json")
    assert summary.returncode == 0, summary.stderr
    figures = json.loads(summary.stdout)
    settled = figures["payments"]["settled"]  # volcanoes, world, capitals on EVM; capitals on Solana
    assert (settled["count"], settled["amount_atomic"], settled["amount_usdc"]) == (4, 14_000, "0.014000")
    evm_only = _worldgate(state_dir, "ledger", "report", "--group-by", "stream", "--network", "eip155:84532")
    assert evm_only.returncode == 0 and "static.capitals" in evm_only.stdout and "TOTAL" in evm_only.stdout

    verified = _worldgate(state_dir, "ledger", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr

    reconciled = _worldgate(state_dir, "ledger", "reconcile", "--all", "--format", "json")
    assert reconciled.returncode == 0, reconciled.stdout + reconciled.stderr
    run = json.loads(reconciled.stdout)["run"]
    assert run["checked"] == 4 and run["errors"] == [] and run["flagged"] == 0  # the chains agree with the books

    token = _worldgate(state_dir, "admin", "token", "--ttl", "10m", "--subject", "cli-test")
    assert token.returncode == 0, token.stderr
    whoami = httpx.get(f"{url}/admin/api/whoami", headers={"authorization": f"Bearer {token.stdout.strip()}"})
    assert whoami.status_code == 200 and whoami.json()["subject"] == "cli-test"  # the server trusts its own secret
    assert _worldgate(state_dir, "admin", "token", "--ttl", "90d").returncode == 2  # over 30 days: refused


def test_pay_with_the_devnet_key_as_the_readme_does(served: tuple[str, Path, subprocess.Popen[str]]) -> None:
    """`worldgate pay --devnet URL`: the payer key comes from devnet.json, the chain from the offer."""
    url, state_dir, _ = served
    state = json.loads((state_dir / "devnet.json").read_text())
    paid = _worldgate(state_dir, "pay", "--devnet", f"{url}/v1/streams/static.capitals?limit=3")
    assert paid.returncode == 0, paid.stderr
    receipt = json.loads(next(line for line in paid.stdout.splitlines() if line.startswith("PAYMENT-RESPONSE: "))[18:])
    assert receipt["success"] is True and receipt["network"] == "eip155:84532"
    assert receipt["payer"].lower() == Account.from_key(state["evm"]["payer_private_key"]).address.lower()

    solana = state["svm"]["network"]
    signed = _worldgate(
        state_dir, "pay", "--header-only", "--devnet", "--network", solana, f"{url}/v1/streams/static.capitals"
    )
    assert signed.returncode == 0, signed.stderr
    [header] = signed.stdout.splitlines()
    answer = httpx.get(f"{url}/v1/streams/static.capitals", headers={"PAYMENT-SIGNATURE": header}, timeout=30)
    assert answer.status_code == 200 and unb64(answer.headers["payment-response"])["network"] == solana
    assert state["svm"]["payer_secret_key"] not in signed.stdout + signed.stderr

    both = _worldgate(state_dir, "pay", "--devnet", "--key-file", "payer.key", f"{url}/v1/streams/static.capitals")
    assert both.returncode == 2 and "leave out --key-file" in both.stderr
    elsewhere = _worldgate(state_dir.parent / "nowhere", "pay", "--devnet", f"{url}/v1/streams/static.capitals")
    assert elsewhere.returncode == 2 and "worldgate serve" in elsewhere.stderr and elsewhere.stdout == ""


def test_sigterm_stops_every_child(served: tuple[str, Path, subprocess.Popen[str]]) -> None:
    _, state_dir, process = served
    children = _children_of(state_dir, process.pid)
    commands = " ".join(" ".join(p.cmdline()) for p in children)
    for expected in ("postgres", "anvil", "payments.devnet.solana", "redis-server"):
        assert expected in commands, f"{expected} is not running"
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0
    _gone, alive = psutil.wait_procs(children, timeout=15)
    assert alive == [], [p.info for p in alive]
    banner = process.stdout.read() if process.stdout else ""
    assert "LOCAL DEVNET" in banner and "embedded" in banner and "REPLAY: recorded payloads" in banner
    # the workers got the admin secret inside the settings object; neither stream ever shows it
    admin_secret = (state_dir / SECRET_FILE).read_text().strip()
    assert admin_secret not in banner + (process.stderr.read() if process.stderr else "")


def test_a_restarted_devnet_turns_no_earlier_sale_into_a_finding(
    served: tuple[str, Path, subprocess.Popen[str]],
) -> None:
    """`make serve` again on the same state dir: the Solana devnet starts fresh (it forgot every sale), anvil
    reloads its state; the ledger persists. Reconcile checks every settled sale and flags none."""
    _, state_dir, first = served
    if first.poll() is None:  # the SIGTERM test did not run first
        first.terminate()
        first.wait(timeout=60)
    before = json.loads((state_dir / "devnet.json").read_text())
    port = free_port()
    again = subprocess.Popen(
        [sys.executable, "-m", "app", "serve", "--port", str(port), "--replay-upstreams"],
        cwd=ROOT,
        env=_clean_env(state_dir),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            assert again.poll() is None, "worldgate serve exited"
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=1).status_code == 200:
                    break
            assert time.monotonic() < deadline, "worldgate serve did not become healthy"
            time.sleep(0.2)
        after = json.loads((state_dir / "devnet.json").read_text())
        assert after["svm"]["instance"] != before["svm"]["instance"]  # a new Solana chain
        assert after["evm"]["instance"] == before["evm"]["instance"]  # anvil's state was kept: the same chain
        reconciled = _worldgate(state_dir, "ledger", "reconcile", "--all", "--format", "json")
        assert reconciled.returncode == 0, reconciled.stdout + reconciled.stderr
        result = json.loads(reconciled.stdout)
        run = result["run"]
        assert run["errors"] == [] and run["flagged"] == 0 and result["open_flags"] == []
        assert run["chain_reset"] == 2  # the two Solana sales, made on the devnet that is gone
        assert run["checked"] >= 6  # the EVM sales were asked about, and the chain still shows them
        listed = _worldgate(state_dir, "ledger", "findings", "--format", "json")
        assert listed.returncode == 0 and json.loads(listed.stdout)["findings"] == []
    finally:
        again.terminate()
        assert again.wait(timeout=60) == 0


def test_a_port_in_use_fails_at_once_with_a_hint(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "app", "serve", "--port", str(port)],
            cwd=ROOT,
            env=_clean_env(tmp_path),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 2
    assert done.stdout == ""  # no banner: nothing was started
    assert f"127.0.0.1:{port}" in done.stderr and "--port" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "pg").exists() and not (tmp_path / "devnet.json").exists()


def test_devnet_command_prints_devnet_json(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "app", "devnet"], cwd=ROOT, env=_clean_env(tmp_path), stdout=subprocess.PIPE, text=True
    )  # closed below, with the process
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
        assert process.stdout is not None
        process.stdout.close()
    with pytest.raises(httpx.ConnectError):
        httpx.post(rpc_url, json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId"})
