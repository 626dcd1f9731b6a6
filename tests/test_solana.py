"""Acceptance: Solana (SVM exact) end to end with the official TS client; every hostile transaction
refused with a 402 and a reason before anything reaches the chain; one payment served and sent once."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from solders.instruction import AccountMeta, Instruction
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.system_program import TransferParams, transfer
from solders.transaction import VersionedTransaction

from app.runtime.settings import Settings, replace
from payments.devnet.solana_process import SolanaDevnetProcess
from payments.svm import programs

from . import svm
from .chain import assert_one_served, unb64
from .conftest import Gateway, running_gateway
from .svm import ata, fee_payer_key, instructions_with, legacy_header, lookup_table_header, transfer_ix

ROOT = Path(__file__).resolve().parents[1]
CAPITALS = "/v1/streams/static.capitals"
PRICE = 1000


def _tampered(payer: Keypair, state: dict[str, Any], offer: dict[str, Any]) -> str:
    transaction = VersionedTransaction.from_bytes(
        base64.b64decode(unb64(svm.pay(payer, state, offer))["payload"]["transaction"])
    )
    raw = bytearray(bytes(transaction))
    raw[1 + 64 + 10] ^= 0xFF  # a byte inside the client's signature (slot 1)
    return svm.header(offer, base64.b64encode(bytes(raw)).decode())


def _expired(payer: Keypair, state: dict[str, Any], offer: dict[str, Any]) -> str:
    header = svm.pay(payer, state, offer)
    svm.rpc(state, "litesvm_expireBlockhash")
    return header


Case = Callable[[Keypair, dict[str, Any], dict[str, Any]], str]
CASES: dict[str, tuple[Case, str]] = {
    "an extra System transfer from the fee payer": (
        lambda p, s, o: svm.pay(p, s, o, instructions=instructions_with(p, o, extra=[
            transfer(TransferParams(from_pubkey=fee_payer_key(o), to_pubkey=Pubkey.new_unique(), lamports=10**9))])),
        "invalid_exact_svm_payload_transaction_fee_payer_included_in_instruction_accounts"),
    "an extra instruction that is not a memo": (
        lambda p, s, o: svm.pay(p, s, o, instructions=instructions_with(p, o, extra=[
            transfer(TransferParams(from_pubkey=p.pubkey(), to_pubkey=Pubkey.new_unique(), lamports=1))])),
        "invalid_exact_svm_payload_unknown_fifth_instruction"),
    "the fee payer as transfer authority": (
        lambda p, s, o: svm.pay(p, s, o, signers=[], instructions=instructions_with(p, o, transfer=transfer_ix(
            o, source=ata(fee_payer_key(o), o), authority=fee_payer_key(o)))),
        "invalid_exact_svm_payload_transaction_fee_payer_transferring_funds"),
    "the fee payer as transfer source": (
        lambda p, s, o: svm.pay(p, s, o, instructions=instructions_with(p, o, transfer=transfer_ix(
            o, source=fee_payer_key(o), authority=p.pubkey()))),
        "invalid_exact_svm_payload_transaction_fee_payer_transferring_funds"),
    "the fee payer among the memo's accounts": (
        lambda p, s, o: svm.pay(p, s, o, instructions=instructions_with(p, o, memo=Instruction(
            programs.MEMO_PROGRAM, b"0123456789abcdef", [AccountMeta(fee_payer_key(o), False, False)]))),
        "invalid_exact_svm_payload_transaction_fee_payer_included_in_instruction_accounts"),
    "a compute price above 5 lamports per unit": (
        lambda p, s, o: svm.pay(p, s, o, instructions=instructions_with(
            p, o, price=programs.compute_unit_price(5_000_001))),
        "invalid_exact_svm_payload_transaction_instructions_compute_price_instruction_too_high"),
    "a compute limit above the cap": (
        lambda p, s, o: svm.pay(p, s, o, instructions=instructions_with(
            p, o, limit=programs.compute_unit_limit(1_400_000))),
        "invalid_exact_svm_payload_transaction_instructions_compute_limit_instruction_too_high"),
    "a priority fee above the cap": (
        lambda p, s, o: svm.pay(p, s, o, instructions=instructions_with(
            p, o, limit=programs.compute_unit_limit(200_000), price=programs.compute_unit_price(5_000_000))),
        "invalid_exact_svm_payload_priority_fee_too_high"),
    "a transfer to payTo's wallet, not its token account": (
        lambda p, s, o: svm.pay(p, s, o, instructions=instructions_with(p, o, transfer=transfer_ix(
            o, source=ata(p.pubkey(), o), authority=p.pubkey(), destination=Pubkey.from_string(o["payTo"])))),
        "invalid_exact_svm_payload_recipient_mismatch"),
    "another mint": (
        lambda p, s, o: svm.pay(p, s, o, instructions=instructions_with(p, o, transfer=transfer_ix(
            o, source=ata(p.pubkey(), o), authority=p.pubkey(), mint=Pubkey.new_unique()))),
        "invalid_exact_svm_payload_mint_mismatch"),
    "one unit short": (
        lambda p, s, o: svm.pay(p, s, o, instructions=instructions_with(p, o, transfer=transfer_ix(
            o, source=ata(p.pubkey(), o), authority=p.pubkey(), amount=PRICE - 1))),
        "invalid_exact_svm_payload_amount_mismatch"),
    "one unit over": (
        lambda p, s, o: svm.pay(p, s, o, instructions=instructions_with(p, o, transfer=transfer_ix(
            o, source=ata(p.pubkey(), o), authority=p.pubkey(), amount=PRICE + 1))),
        "invalid_exact_svm_payload_amount_mismatch"),
    "no memo": (lambda p, s, o: svm.pay(p, s, o, instructions=instructions_with(p, o, memo=None)),
                "invalid_exact_svm_payload_memo_count"),
    "two memos": (
        lambda p, s, o: svm.pay(p, s, o, instructions=instructions_with(p, o, extra=[programs.memo(b"second")])),
        "invalid_exact_svm_payload_memo_count"),
    "a tampered client signature": (_tampered, "invalid_exact_svm_payload_signature_invalid"),
    "the client as fee payer": (
        lambda p, s, o: svm.pay(p, s, o, fee_payer=p.pubkey(), signers=[]), "invalid_exact_svm_fee_payer_mismatch"),
    "an expired blockhash": (_expired, "invalid_exact_svm_payload_blockhash_expired"),
    "garbage base64": (
        lambda p, s, o: svm.header(o, "bm90IGEgdHJhbnNhY3Rpb24=!!"),
        "invalid_exact_svm_payload_transaction_could_not_be_decoded"),
    "a legacy transaction": (legacy_header, "invalid_exact_svm_payload_transaction_not_v0"),
    "an address lookup table": (lookup_table_header, "invalid_exact_svm_payload_address_lookup_tables"),
}  # fmt: skip


@pytest.mark.parametrize("name", list(CASES))
async def test_hostile_transactions_are_refused_before_the_chain(
    name: str, gateway: Gateway, solana: SolanaDevnetProcess
) -> None:
    state = solana.state
    build, reason = CASES[name]
    payer = svm.new_payer(state)
    offer = await gateway.offer(CAPITALS, "solana")
    header = build(payer, state, offer)
    landed, fee_payer_sol = svm.landed(state), svm.sol_balance(state, state["fee_payer"])
    pay_to_before = svm.usdc_balance(state, state["pay_to"])

    answer = await gateway.get(CAPITALS, headers={"PAYMENT-SIGNATURE": header})

    assert answer.status_code == 402, answer.text
    assert answer.json()["error"] == reason, answer.json()
    assert unb64(answer.headers["payment-required"])["error"] == reason
    assert "records" not in answer.text
    assert svm.landed(state) == landed, "something was sent to the chain"
    assert svm.sol_balance(state, state["fee_payer"]) == fee_payer_sol
    assert svm.usdc_balance(state, state["pay_to"]) == pay_to_before
    assert svm.usdc_balance(state, payer.pubkey()) == 10_000_000


SVM_CLIENT_PYTHON = ROOT / ".venv-x402-svm" / "bin" / "python"
OFFICIAL_CLIENTS = {
    # @x402/fetch + @x402/svm under Node (pinned in package.json)
    "typescript": (["node", "tests/clients/pay_svm.mjs"], shutil.which("node") is not None),
    # x402[svm] in its own venv, which `make install` builds
    "python": ([str(SVM_CLIENT_PYTHON), "tests/clients/pay_svm.py"], SVM_CLIENT_PYTHON.exists()),
}


@pytest.mark.parametrize("client", list(OFFICIAL_CLIENTS))
async def test_official_client_pays_on_solana(
    client: str, gateway: Gateway, solana: SolanaDevnetProcess, pool: asyncpg.Pool
) -> None:
    command, available = OFFICIAL_CLIENTS[client]
    if not available:
        pytest.skip(f"the official {client} client is not installed here: run `make install`")
    state = solana.state
    payer = svm.new_payer(state)
    pay_to_before = svm.usdc_balance(state, state["pay_to"])
    env = {
        **os.environ,
        "URL": f"{gateway.url}{CAPITALS}?limit=3",
        "RPC_URL": state["rpc_url"],
        "PAYER_SECRET": str(payer),
    }

    result = await asyncio.to_thread(
        subprocess.run, command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )

    assert result.returncode == 0, result.stderr
    paid = json.loads(result.stdout.strip().splitlines()[-1])
    assert paid["status"] == 200, paid
    assert json.loads(paid["body"])["count"] == 3
    receipt = paid["paymentResponse"]
    assert receipt["success"] is True and receipt["network"] == state["network"]
    signature = receipt["transaction"]
    status = svm.rpc(state, "getSignatureStatuses", [signature])["value"][0]
    assert status is not None and status["err"] is None  # a real transaction on the chain
    assert svm.usdc_balance(state, payer.pubkey()) == 10_000_000 - PRICE
    assert svm.usdc_balance(state, state["pay_to"]) == pay_to_before + PRICE

    rows = await pool.fetch("SELECT * FROM payments WHERE tx_hash = $1", signature)
    assert len(rows) == 1 and rows[0]["state"] == "settled" and rows[0]["payer"] == str(payer.pubkey())
    lines = await pool.fetch(
        "SELECT p.account, p.asset, p.amount_atomic FROM journal_entries e JOIN journal_postings p ON p.entry_id = e.id"
        " WHERE e.payment_id = $1",
        rows[0]["id"],
    )
    by_account = {(line["account"], line["asset"]): line["amount_atomic"] for line in lines}
    token = f"{state['network']}/{state['asset'].lower()}"
    assert by_account[(f"onchain:{state['network']}:{state['pay_to'].lower()}", token)] == PRICE
    assert by_account[("revenue:static.capitals", token)] == -PRICE
    fee = svm.rpc(state, "getTransaction", signature, {"encoding": "base64"})["meta"]["fee"]
    assert by_account[(f"expense:gas:{state['network']}", f"{state['network']}/native")] == fee
    for asset in {line["asset"] for line in lines}:
        assert sum(line["amount_atomic"] for line in lines if line["asset"] == asset) == 0


async def test_one_solana_payment_is_served_and_sent_once(gateway: Gateway, solana: SolanaDevnetProcess) -> None:
    state = solana.state
    payer = svm.new_payer(state)
    offer = await gateway.offer(CAPITALS, "solana")
    header = svm.pay(payer, state, offer)
    landed = svm.landed(state)

    first = await gateway.get(CAPITALS, headers={"PAYMENT-SIGNATURE": header})
    assert first.status_code == 200
    again = await gateway.get(CAPITALS, headers={"PAYMENT-SIGNATURE": header})
    assert again.status_code == 402 and again.json()["error"] == "payment_already_claimed"

    other = svm.new_payer(state)
    burst_header = svm.pay(other, state, offer)
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30, limits=httpx.Limits(max_connections=20)) as client:
        answers = await asyncio.gather(
            *(client.get(CAPITALS, headers={"PAYMENT-SIGNATURE": burst_header}) for _ in range(20))
        )
    assert_one_served(answers)
    assert svm.landed(state) == landed + 2  # one transfer per payment
    assert svm.usdc_balance(state, payer.pubkey()) == 10_000_000 - PRICE
    assert svm.usdc_balance(state, other.pubkey()) == 10_000_000 - PRICE


@pytest.fixture
def impatient_gateway(settings: Settings) -> Iterator[Gateway]:
    """A gateway that waits 1.5 s for a Solana confirmation instead of a blockhash's lifetime."""
    assert settings.svm is not None
    with running_gateway(replace(settings, svm=replace(settings.svm, confirm_timeout_s=1.5))) as gateway:
        yield gateway


async def test_unconfirmed_payment_stays_open_and_is_not_served(
    impatient_gateway: Gateway, solana: SolanaDevnetProcess, pool: asyncpg.Pool
) -> None:
    state = solana.state
    payer = svm.new_payer(state)
    offer = await impatient_gateway.offer(CAPITALS, "solana")
    header = svm.pay(payer, state, offer)
    svm.rpc(state, "litesvm_hold")
    try:
        answer = await impatient_gateway.get(CAPITALS, headers={"PAYMENT-SIGNATURE": header})
    finally:
        released = svm.rpc(state, "litesvm_release")  # it lands after the gateway gave up waiting

    assert answer.status_code == 503 and "records" not in answer.text
    receipt = unb64(answer.headers["payment-response"])
    assert receipt["success"] is False and receipt["errorReason"] == "settlement_pending"
    row = await pool.fetchrow("SELECT state, tx_hash FROM payments WHERE payer = $1", str(payer.pubkey()))
    assert row["state"] == "settling" and row["tx_hash"] == receipt["transaction"] == released[0]
    # charged later, never served: the open row is what reconciliation resolves
    assert svm.usdc_balance(state, payer.pubkey()) == 10_000_000 - PRICE


async def test_payment_whose_blockhash_expires_before_landing_fails_uncharged(
    gateway: Gateway, solana: SolanaDevnetProcess, pool: asyncpg.Pool
) -> None:
    state = solana.state
    payer = svm.new_payer(state)
    offer = await gateway.offer(CAPITALS, "solana")
    header = svm.pay(payer, state, offer)
    svm.rpc(state, "litesvm_hold")
    try:
        request = asyncio.create_task(gateway.get(CAPITALS, headers={"PAYMENT-SIGNATURE": header}))
        await asyncio.sleep(0.5)  # sent and waiting for confirmation
        svm.rpc(state, "litesvm_expireBlockhash")
        answer = await request
    finally:
        svm.rpc(state, "litesvm_release")  # the held transaction's blockhash is gone: it is dropped

    assert answer.status_code == 402 and "records" not in answer.text
    receipt = unb64(answer.headers["payment-response"])
    assert receipt["errorReason"] == "transaction_failed"
    row = await pool.fetchrow("SELECT state FROM payments WHERE payer = $1", str(payer.pubkey()))
    assert row["state"] == "failed"
    assert svm.usdc_balance(state, payer.pubkey()) == 10_000_000


def test_the_devnet_answers_solana_py_async_client(solana: SolanaDevnetProcess) -> None:
    """The devnet is judged by a real client's parsers too: solana-py's AsyncClient, from its own venv."""
    if not SVM_CLIENT_PYTHON.exists():
        pytest.skip("the .venv-x402-svm interpreter is not installed here: run `make install`")
    state = solana.state
    token_account = str(
        programs.associated_token_address(Pubkey.from_string(state["pay_to"]), Pubkey.from_string(state["asset"]))
    )
    result = subprocess.run(
        [str(SVM_CLIENT_PYTHON), "tests/clients/solana_py_rpc.py"],
        cwd=ROOT,
        env={**os.environ, "RPC_URL": state["rpc_url"], "TOKEN_ACCOUNT": token_account},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert seen["simulation_error"] is None and seen["status_error"] is None
    assert seen["receiver_lamports"] == 1_000_000 and seen["fee"] == 5000  # above the rent-exempt minimum
    assert seen["confirmation"].endswith("Finalized") and seen["last_valid_block_height"] > 0
    assert seen["payer_owner"] == "11111111111111111111111111111111"
    assert int(seen["token_amount"]) == svm.usdc_balance(state, state["pay_to"])
    assert f"solana:{seen['genesis'][:32]}" == state["network"]
