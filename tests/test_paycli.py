"""`worldgate quote` and `worldgate pay` against the running gateway, as a developer with a shell runs them:
the CLI as a subprocess, keys from a file or WORLDGATE_PAYER_KEY, and the curl flow with the real curl."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import subprocess
import sys
import threading
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from eth_account import Account
from solders.keypair import Keypair

from app.cli import pay as paycli
from app.cli import pay_offers
from app.cli.pay_errors import CliError
from payments.codec import PaymentRequirements, convert
from payments.devnet.evm import EvmDevnet
from payments.devnet.solana_process import SolanaDevnetProcess

from . import svm
from .chain import b64, new_payer, unb64, usdc_balance
from .conftest import Gateway

ROOT = Path(__file__).resolve().parents[1]
PATH = "/v1/streams/static.capitals"
PRICE = 1000  # static.capitals is in the `basic` tier: $0.001
pytestmark = pytest.mark.slow


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The caller's environment without any worldgate setting, and a state dir with no devnet.json."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WORLDGATE_", "X402_"))}
    env["WORLDGATE_STATE_DIR"] = str(tmp_path / "state")
    return {**env, **extra}


def worldgate(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        cwd=ROOT,
        env=_env(tmp_path, **env),
        capture_output=True,
        text=True,
        timeout=180,
    )


def key_file(tmp_path: Path, text: str, name: str = "payer.key") -> str:
    path = tmp_path / name
    path.write_text(text + "\n")
    path.chmod(0o600)
    return str(path)


def receipt_of(stdout: str) -> dict[str, Any]:
    [line] = [line for line in stdout.splitlines() if line.startswith("PAYMENT-RESPONSE: ")]
    receipt: dict[str, Any] = json.loads(line.removeprefix("PAYMENT-RESPONSE: "))
    return receipt


async def payments_of(pool: asyncpg.Pool, payer: str) -> list[dict[str, Any]]:
    rows = await pool.fetch("SELECT * FROM payments WHERE lower(payer) = lower($1) ORDER BY id", payer)
    return [dict(row) for row in rows]


# --- quote ----------------------------------------------------------------------------------------


def test_quote_shows_both_networks_with_the_exact_price(
    gateway: Gateway, devnet: EvmDevnet, solana: SolanaDevnetProcess, tmp_path: Path
) -> None:
    done = worldgate(tmp_path, "quote", gateway.url + PATH)

    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["resource", gateway.url + PATH]
    assert lines[1].startswith("description  World capitals")
    [evm_row] = [line for line in lines if line.startswith("eip155:84532 ")]
    [svm_row] = [line for line in lines if line.startswith(solana.state["network"] + " ")]
    assert evm_row.split()[:6] == ["eip155:84532", "Base", "Sepolia", "0.001", "USDC", "1000"]
    assert svm_row.split()[:6] == [solana.state["network"], "Solana", "devnet", "0.001", "USDC", "1000"]
    assert devnet.asset in evm_row and devnet.pay_to in evm_row and "300s" in evm_row
    assert evm_row.rstrip().endswith("-")  # no feePayer on EVM
    assert solana.state["asset"] in svm_row and solana.state["pay_to"] in svm_row
    assert svm_row.rstrip().endswith(solana.state["fee_payer"])


def test_quote_json_is_the_decoded_payment_required(gateway: Gateway, tmp_path: Path) -> None:
    done = worldgate(tmp_path, "quote", "--format", "json", gateway.url + PATH)

    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    assert printed == unb64(httpx.get(gateway.url + PATH).headers["payment-required"])
    assert [o["amount"] for o in printed["accepts"]] == [str(PRICE), str(PRICE)]
    assert base64.b64decode(b64(printed)) == json.dumps(printed, separators=(",", ":")).encode()  # round trip


def test_quote_of_what_is_not_a_quote(gateway: Gateway, tmp_path: Path) -> None:
    free = worldgate(tmp_path, "quote", gateway.url + "/v1/streams")
    assert free.returncode == 0 and free.stdout.startswith("HTTP 200")
    assert "is free" in free.stderr

    missing = worldgate(tmp_path, "quote", gateway.url + "/v1/streams/no.such.stream")
    assert missing.returncode == 2
    assert missing.stdout.startswith("HTTP 404") and "unknown_stream" in missing.stdout
    assert "not a 402 quote" in missing.stderr

    closed = worldgate(tmp_path, "quote", "http://127.0.0.1:9/v1/streams/static.capitals")  # discard port: refused
    assert closed.returncode == 2 and closed.stdout == ""
    assert closed.stderr.startswith("worldgate: cannot reach http://127.0.0.1:9") and "Traceback" not in closed.stderr


# --- pay ------------------------------------------------------------------------------------------


async def test_pay_on_base(gateway: Gateway, devnet: EvmDevnet, pool: asyncpg.Pool, tmp_path: Path) -> None:
    key = new_payer(devnet)
    payer = Account.from_key(key).address
    before = usdc_balance(devnet, payer)

    done = await asyncio.to_thread(
        worldgate, tmp_path, "pay", "--key-file", key_file(tmp_path, key), gateway.url + PATH + "?limit=5"
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == "HTTP 200 OK"
    receipt = receipt_of(done.stdout)
    assert receipt["success"] is True and receipt["network"] == "eip155:84532"
    assert receipt["payer"].lower() == payer.lower() and receipt["transaction"].startswith("0x")
    body = json.loads(done.stdout.split("\n", 2)[2])
    assert body["stream"] == "static.capitals" and body["count"] == 5
    assert usdc_balance(devnet, payer) == before - PRICE
    [row] = await payments_of(pool, payer)
    assert row["state"] == "settled" and row["tx_hash"] == receipt["transaction"]
    assert row["amount_atomic"] == PRICE and row["network"] == "eip155:84532" and row["stream"] == "static.capitals"
    assert key not in done.stdout + done.stderr


async def test_pay_on_solana(gateway: Gateway, solana: SolanaDevnetProcess, pool: asyncpg.Pool, tmp_path: Path) -> None:
    state = solana.state
    payer = svm.new_payer(state)
    before = svm.usdc_balance(state, payer.pubkey())
    keygen_file = key_file(tmp_path, json.dumps(list(bytes(payer))), "id.json")  # solana-keygen's format

    done = await asyncio.to_thread(
        worldgate,
        tmp_path,
        "pay",
        "--key-file",
        keygen_file,
        "--rpc-url",
        state["rpc_url"],
        gateway.url + PATH + "?limit=2",
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == "HTTP 200 OK"
    receipt = receipt_of(done.stdout)
    assert receipt["success"] is True and receipt["network"] == state["network"]
    assert receipt["payer"] == str(payer.pubkey())
    assert svm.usdc_balance(state, payer.pubkey()) == before - PRICE
    [row] = await payments_of(pool, str(payer.pubkey()))
    assert row["state"] == "settled" and row["tx_hash"] == receipt["transaction"] and row["amount_atomic"] == PRICE


async def test_pay_above_the_cap_pays_nothing(
    gateway: Gateway, devnet: EvmDevnet, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    key = new_payer(devnet)
    payer = Account.from_key(key).address
    before = usdc_balance(devnet, payer)

    done = await asyncio.to_thread(
        worldgate, tmp_path, "pay", "--max", "0.0005", gateway.url + PATH, WORLDGATE_PAYER_KEY=key
    )

    assert done.returncode == 3
    assert done.stdout == ""
    assert "0.001 USDC" in done.stderr and "--max 0.0005" in done.stderr and "nothing was paid" in done.stderr
    assert usdc_balance(devnet, payer) == before
    assert await payments_of(pool, payer) == []


def test_the_cap_is_exact(gateway: Gateway) -> None:
    """A price equal to the cap is paid; one atomic unit over it is not (Decimal, not float)."""
    offer: PaymentRequirements = convert(
        unb64(httpx.get(gateway.url + PATH).headers["payment-required"])["accepts"][0], PaymentRequirements
    )
    pay_offers.check_offer(offer, Decimal("0.001"))
    with pytest.raises(CliError) as refused:
        pay_offers.check_offer(offer, Decimal("0.000999"))
    assert refused.value.code == 3
    assert pay_offers.price_of(offer) == Decimal("0.001") and pay_offers.price_text(offer) == "0.001 USDC"


@pytest.mark.parametrize(
    "key",
    [
        "0x" + "5ec2e7" * 10 + "zzzz",  # 0x and 64 characters, not hex
        "0x" + "ff" * 32,  # hex, above the curve's order
        "0x5ec2e75ec2e7",  # too short
        "5ec2e7NotBase58Il0O" * 3,  # not base58
        "3yZe7d" * 15,  # base58, not a 64-byte keypair
        json.dumps([7] * 32),  # a JSON array, but not 64 bytes
    ],
)
def test_a_malformed_key_is_refused_without_echo(gateway: Gateway, tmp_path: Path, key: str) -> None:
    for done in (
        worldgate(tmp_path, "pay", gateway.url + PATH, WORLDGATE_PAYER_KEY=key),
        worldgate(tmp_path, "pay", "--key-file", key_file(tmp_path, key), gateway.url + PATH),
    ):
        assert done.returncode == 2
        assert done.stdout == "" and done.stderr.startswith("worldgate: the payer key is not a valid")
        assert "Traceback" not in done.stderr
        assert key not in done.stderr and key.strip("[]0x") not in done.stderr


def test_missing_or_unreadable_key(gateway: Gateway, tmp_path: Path) -> None:
    none = worldgate(tmp_path, "pay", gateway.url + PATH)
    assert none.returncode == 2 and "no payer key: set WORLDGATE_PAYER_KEY or pass --key-file" in none.stderr
    unreadable = worldgate(tmp_path, "pay", "--key-file", str(tmp_path), gateway.url + PATH)
    assert unreadable.returncode == 2 and f"cannot read the key file {tmp_path}" in unreadable.stderr
    assert "Traceback" not in none.stderr + unreadable.stderr


def test_the_offer_follows_the_key(gateway: Gateway, devnet: EvmDevnet, tmp_path: Path) -> None:
    key = new_payer(devnet, 0)
    wrong_family = worldgate(
        tmp_path, "pay", "--network", "solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1", gateway.url + PATH,
        WORLDGATE_PAYER_KEY=key,
    )  # fmt: skip
    assert wrong_family.returncode == 2 and "the payer key is for EVM" in wrong_family.stderr
    not_offered = worldgate(tmp_path, "pay", "--network", "eip155:8453", gateway.url + PATH, WORLDGATE_PAYER_KEY=key)
    assert not_offered.returncode == 2
    assert "no offer on eip155:8453; this resource takes: eip155:84532, solana:" in not_offered.stderr

    no_rpc = worldgate(tmp_path, "pay", gateway.url + PATH, WORLDGATE_PAYER_KEY=str(Keypair()))
    assert no_rpc.returncode == 2 and "needs a recent blockhash" in no_rpc.stderr and "--rpc-url" in no_rpc.stderr


def test_solana_blockhash_from_devnet_json(gateway: Gateway, solana: SolanaDevnetProcess, tmp_path: Path) -> None:
    """With no --rpc-url and no WORLDGATE_SVM_RPC_URL, the devnet described in devnet.json is asked."""
    state = solana.state
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "devnet.json").write_text(json.dumps({"svm": state}))
    payer = svm.new_payer(state)
    before = svm.usdc_balance(state, payer.pubkey())

    done = worldgate(tmp_path, "pay", "--header-only", gateway.url + PATH, WORLDGATE_PAYER_KEY=str(payer))

    assert done.returncode == 0, done.stderr
    [header] = done.stdout.splitlines()
    payment = unb64(header)
    assert payment["accepted"]["network"] == state["network"] and "transaction" in payment["payload"]
    assert svm.usdc_balance(state, payer.pubkey()) == before  # signed, not sent


def test_a_refused_payment_says_why(gateway: Gateway, devnet: EvmDevnet, tmp_path: Path) -> None:
    done = worldgate(tmp_path, "pay", gateway.url + PATH, WORLDGATE_PAYER_KEY=new_payer(devnet, 0))  # no USDC
    assert done.returncode == 1
    assert done.stdout.strip() == "HTTP 402 Payment Required"
    assert "worldgate: payment refused: invalid_exact_evm_insufficient_balance: " in done.stderr


def test_a_failed_settlement_says_why(capsys: pytest.CaptureFixture[str]) -> None:
    failed = {"success": False, "transaction": "0xabc", "network": "eip155:84532", "errorReason": "transfer_failed"}
    response = httpx.Response(
        402,
        headers={"payment-response": b64(failed)},
        json={"x402Version": 2, "error": "transfer_failed", "message": "the transfer reverted; you were not charged"},
    )
    assert paycli.report_paid(response) == 1
    out, err = capsys.readouterr()
    assert out.splitlines()[0] == "HTTP 402 Payment Required" and receipt_of(out)["success"] is False
    assert err == "worldgate: settlement failed: transfer_failed: the transfer reverted; you were not charged\n"


def test_pay_for_a_free_resource_pays_nothing(gateway: Gateway, devnet: EvmDevnet, tmp_path: Path) -> None:
    key = new_payer(devnet, 0)
    free = worldgate(tmp_path, "pay", gateway.url + "/v1/streams", WORLDGATE_PAYER_KEY=key)
    assert free.returncode == 0 and free.stdout.startswith("HTTP 200") and "nothing was paid" in free.stderr
    header_only = worldgate(tmp_path, "pay", "--header-only", gateway.url + "/v1/streams", WORLDGATE_PAYER_KEY=key)
    assert header_only.returncode == 2 and header_only.stdout == "" and "nothing to sign" in header_only.stderr


# --- the curl flow, as the README gives it -----------------------------------------------------------


async def test_the_curl_flow(gateway: Gateway, devnet: EvmDevnet, pool: asyncpg.Pool, tmp_path: Path) -> None:
    """worldgate quote URL; curl -i -H "PAYMENT-SIGNATURE: $(worldgate pay --header-only URL)" URL"""
    curl = shutil.which("curl")
    assert curl is not None, "the curl flow needs the curl binary"
    key = new_payer(devnet)
    payer = Account.from_key(key).address
    before = usdc_balance(devnet, payer)
    url = gateway.url + PATH + "?bbox=-10,35,30,60&limit=50"

    quote = await asyncio.to_thread(worldgate, tmp_path, "quote", url)
    assert quote.returncode == 0 and "0.001 USDC" in quote.stdout

    signed = await asyncio.to_thread(worldgate, tmp_path, "pay", "--header-only", url, WORLDGATE_PAYER_KEY=key)
    assert signed.returncode == 0, signed.stderr
    [header] = signed.stdout.splitlines()  # one line, nothing else on stdout
    assert usdc_balance(devnet, payer) == before and await payments_of(pool, payer) == []  # nothing sent yet

    command = [curl, "-s", "-i", "-H", f"PAYMENT-SIGNATURE: {header}", url]
    done = await asyncio.to_thread(subprocess.run, command, capture_output=True, timeout=120)

    head, _, body = done.stdout.decode().partition("\r\n\r\n")
    status, *fields = head.split("\r\n")
    assert status.startswith("HTTP/1.1 200"), head
    headers = {name.lower(): value for name, _, value in (f.partition(": ") for f in fields)}
    receipt = unb64(headers["payment-response"])
    assert receipt["success"] is True and receipt["payer"].lower() == payer.lower()
    assert {"Paris", "Berlin", "Madrid"} <= {r["fields"]["capital"] for r in json.loads(body)["records"]}
    assert usdc_balance(devnet, payer) == before - PRICE
    [row] = await payments_of(pool, payer)
    assert row["state"] == "settled" and row["tx_hash"] == receipt["transaction"] and row["amount_atomic"] == PRICE


async def test_pay_for_a_live_feed_prints_its_events_as_they_come(
    gateway: Gateway, devnet: EvmDevnet, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    """An event stream is printed as it arrives (the receipt first), not read whole: a live feed never ends."""
    key = new_payer(devnet)
    command = [sys.executable, "-m", "app", "pay", "--key-file", key_file(tmp_path, key)]
    command.append(gateway.url + "/v1/streams/iss.position/live")

    def first_frame() -> list[str]:
        with subprocess.Popen(command, cwd=ROOT, env=_env(tmp_path), stdout=subprocess.PIPE, text=True) as child:
            assert child.stdout is not None
            deadline = threading.Timer(120, child.kill)  # a stream that never frames ends the read, not the suite
            deadline.start()
            lines: list[str] = []
            try:
                for line in child.stdout:
                    lines.append(line.rstrip("\n"))
                    if line.startswith("data: ") and "event: frame" in lines[-3:-1]:
                        return lines
            finally:
                deadline.cancel()
                child.kill()
            return lines

    lines = await asyncio.to_thread(first_frame)
    assert lines[0] == "HTTP 200 OK", lines
    assert receipt_of("\n".join(lines))["success"] is True
    assert "event: window" in lines and "event: frame" in lines, lines
    frame = json.loads(lines[-1].removeprefix("data: "))
    assert frame["stream"] == "iss.position" and frame["feed_status"] == "ok" and frame["records"]
    [row] = await payments_of(pool, Account.from_key(key).address)
    assert row["state"] == "settled" and row["route"].endswith("/live")
