"""Acceptance: a payment is served at most once and charged at most once, however often it is sent."""

from __future__ import annotations

import asyncio

import asyncpg
import httpx
from eth_account import Account

from payments.devnet.evm import EvmDevnet

from .chain import assert_one_served, new_payer, pay_for, unb64, usdc_balance
from .conftest import Gateway, payment_key, payment_row

PATH = "/v1/streams/static.capitals"


async def test_replayed_header_is_refused_and_not_settled_again(
    gateway: Gateway, devnet: EvmDevnet, pool: asyncpg.Pool
) -> None:
    key = new_payer(devnet)
    offer = await gateway.offer(PATH)
    header = pay_for(key, devnet, offer)
    pay_to_before = usdc_balance(devnet, devnet.pay_to)

    first = await gateway.get(PATH, headers={"PAYMENT-SIGNATURE": header})
    assert first.status_code == 200
    again = await gateway.get(PATH, headers={"PAYMENT-SIGNATURE": header})
    assert again.status_code == 402
    assert "payment-response" not in again.headers
    refusal = again.json()
    assert refusal["error"] == "payment_already_claimed"
    assert "already used" in refusal["message"]
    assert unb64(again.headers["payment-required"])["error"] == "payment_already_claimed"
    assert "records" not in refusal

    assert usdc_balance(devnet, devnet.pay_to) == pay_to_before + int(offer["amount"])
    row = await payment_row(pool, payment_key(devnet, unb64(header)))
    assert row is not None and row["state"] == "settled" and row["claims"] == 1
    entries = await pool.fetchval("SELECT count(*) FROM journal_entries WHERE payment_id = $1", row["id"])
    assert entries == 1


async def test_twenty_concurrent_requests_with_one_payment(
    gateway: Gateway, devnet: EvmDevnet, pool: asyncpg.Pool
) -> None:
    key = new_payer(devnet)
    payer = Account.from_key(key).address
    offer = await gateway.offer(PATH)
    header = pay_for(key, devnet, offer)
    payer_before, pay_to_before = usdc_balance(devnet, payer), usdc_balance(devnet, devnet.pay_to)

    async with httpx.AsyncClient(base_url=gateway.url, timeout=30, limits=httpx.Limits(max_connections=20)) as client:
        answers = await asyncio.gather(*(client.get(PATH, headers={"PAYMENT-SIGNATURE": header}) for _ in range(20)))

    assert_one_served(answers)
    assert sum("records" in a.json() for a in answers) == 1  # the data left exactly once
    price = int(offer["amount"])
    assert usdc_balance(devnet, payer) == payer_before - price
    assert usdc_balance(devnet, devnet.pay_to) == pay_to_before + price
    settled = await pool.fetchval("SELECT count(*) FROM payments WHERE payer = $1 AND state = 'settled'", payer.lower())
    assert settled == 1
