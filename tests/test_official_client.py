"""Acceptance: the official Python x402 client pays a paid route on the devnet, unmodified."""

from __future__ import annotations

import base64
import json

import asyncpg
from eth_account import Account
from x402 import x402Client
from x402.http.clients import x402HttpxClient
from x402.mechanisms.evm import EthAccountSigner
from x402.mechanisms.evm.exact.register import register_exact_evm_client

from payments.devnet.evm import EvmDevnet

from .chain import receipt, usdc_balance
from .conftest import Gateway


async def test_official_client_pays_and_everything_lands(
    gateway: Gateway, devnet: EvmDevnet, pool: asyncpg.Pool
) -> None:
    payer = Account.from_key(devnet.payer_private_key)
    client = x402Client()  # default spend controls: only known assets (Base Sepolia USDC), at most $1
    register_exact_evm_client(client, EthAccountSigner(payer))
    payer_before, pay_to_before = usdc_balance(devnet, payer.address), usdc_balance(devnet, devnet.pay_to)

    async with x402HttpxClient(client) as http:
        answer = await http.get(f"{gateway.url}/v1/streams/static.capitals?bbox=-10,35,30,60&limit=50")

    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["stream"] == "static.capitals"
    capitals = {r["fields"]["capital"] for r in body["records"]}
    assert {"Paris", "Berlin", "Madrid", "Rome"} <= capitals and "Tokyo" not in capitals
    assert answer.headers["cache-control"] == "private"

    settle = json.loads(base64.b64decode(answer.headers["payment-response"]))
    assert settle["success"] is True
    assert settle["network"] == "eip155:84532"
    assert settle["payer"].lower() == payer.address.lower()
    mined = receipt(devnet, settle["transaction"])
    assert mined is not None and int(mined["status"], 16) == 1  # a real transaction on the chain

    price = 1000  # static.capitals is in the `basic` tier: $0.001
    assert usdc_balance(devnet, payer.address) == payer_before - price
    assert usdc_balance(devnet, devnet.pay_to) == pay_to_before + price

    rows = await pool.fetch("SELECT * FROM payments WHERE tx_hash = $1", settle["transaction"])
    assert len(rows) == 1
    row = rows[0]
    assert row["state"] == "settled" and row["amount_atomic"] == price and row["stream"] == "static.capitals"
    events = [
        r["to_state"]
        for r in await pool.fetch("SELECT to_state FROM payment_events WHERE payment_id = $1 ORDER BY id", row["id"])
    ]
    assert events[0] == "claimed" and events[-1] == "settled"
    assert events.index("verified") < events.index("served") < events.index("settling")

    lines = await pool.fetch(
        "SELECT p.account, p.asset, p.amount_atomic FROM journal_entries e JOIN journal_postings p ON p.entry_id = e.id"
        " WHERE e.payment_id = $1",
        row["id"],
    )
    token = f"eip155:84532/{devnet.asset.lower()}"
    by_account = {(line["account"], line["asset"]): line["amount_atomic"] for line in lines}
    assert by_account[(f"onchain:eip155:84532:{devnet.pay_to.lower()}", token)] == price
    assert by_account[("revenue:static.capitals", token)] == -price
    for asset in {line["asset"] for line in lines}:
        assert sum(line["amount_atomic"] for line in lines if line["asset"] == asset) == 0
    gas = by_account[("expense:gas:eip155:84532", "eip155:84532/native")]
    assert gas == int(mined["gasUsed"], 16) * int(mined["effectiveGasPrice"], 16)
