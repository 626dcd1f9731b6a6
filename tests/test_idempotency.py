"""x402 payment-identifier: a retry with the same id and payment replays the delivery, never a second charge."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import asyncpg
import httpx
from eth_account import Account

from app.runtime.settings import Settings
from payments.devnet.evm import EvmDevnet

from .chain import b64, new_payer, payment_document, unb64, usdc_balance
from .conftest import Gateway, running_gateway, with_settings

CAPITALS = "/v1/streams/static.capitals"


def header_with_id(key: str, devnet: EvmDevnet, offer: dict[str, Any], payment_id: str | None) -> str:
    return b64(payment_document(key, devnet, offer, payment_id))


async def settled_rows(pool: asyncpg.Pool, payer: str) -> int:
    return int(
        await pool.fetchval("SELECT count(*) FROM payments WHERE payer = $1 AND state = 'settled'", payer.lower())
    )


async def test_a_retry_after_a_dropped_response_replays_it_without_a_second_charge(
    gateway: Gateway, devnet: EvmDevnet, pool: asyncpg.Pool
) -> None:
    key = new_payer(devnet)
    payer = Account.from_key(key).address
    offer = await gateway.offer(CAPITALS)
    payment_id = f"retry-{secrets.token_hex(12)}"
    header = header_with_id(key, devnet, offer, payment_id)

    first = await gateway.get(CAPITALS, headers={"PAYMENT-SIGNATURE": header})  # its answer is "lost"
    retry = await gateway.get(CAPITALS, headers={"PAYMENT-SIGNATURE": header})

    assert first.status_code == retry.status_code == 200
    assert retry.content == first.content
    assert retry.headers["payment-response"] == first.headers["payment-response"]
    assert unb64(retry.headers["payment-response"])["success"] is True
    assert usdc_balance(devnet, payer) == 10_000_000 - int(offer["amount"])  # one transfer on chain
    assert await settled_rows(pool, payer) == 1

    without_id = header_with_id(key, devnet, offer, None)  # the same money, a new authorization, no id
    other = header_with_id(key, devnet, offer, payment_id)  # the same id, a different payment
    conflict = await gateway.get(CAPITALS, headers={"PAYMENT-SIGNATURE": other})
    assert conflict.status_code == 409 and conflict.json()["error"] == "payment_identifier_conflict"
    assert (await gateway.get(CAPITALS, headers={"PAYMENT-SIGNATURE": without_id})).status_code == 200
    assert usdc_balance(devnet, payer) == 10_000_000 - 2 * int(offer["amount"])


async def test_ten_concurrent_retries_settle_once_and_all_get_the_same_body(
    gateway: Gateway, devnet: EvmDevnet, pool: asyncpg.Pool
) -> None:
    key = new_payer(devnet)
    payer = Account.from_key(key).address
    offer = await gateway.offer(CAPITALS)
    header = header_with_id(key, devnet, offer, f"burst-{secrets.token_hex(12)}")

    async with httpx.AsyncClient(base_url=gateway.url, timeout=60) as client:
        answers = await asyncio.gather(
            *(client.get(CAPITALS, headers={"PAYMENT-SIGNATURE": header}) for _ in range(10))
        )

    assert [a.status_code for a in answers] == [200] * 10
    assert len({a.content for a in answers}) == 1 and len({a.headers["payment-response"] for a in answers}) == 1
    assert usdc_balance(devnet, payer) == 10_000_000 - int(offer["amount"])
    assert await settled_rows(pool, payer) == 1


async def test_a_failed_first_attempt_frees_the_id_and_ids_are_validated(
    gateway: Gateway, devnet: EvmDevnet, pool: asyncpg.Pool
) -> None:
    offer = await gateway.offer(CAPITALS)
    broke = new_payer(devnet, usdc_atomic=0)  # verification fails: insufficient funds
    payment_id = f"broke-{secrets.token_hex(12)}"
    refused = await gateway.get(
        CAPITALS, headers={"PAYMENT-SIGNATURE": header_with_id(broke, devnet, offer, payment_id)}
    )
    assert refused.status_code == 402
    assert await pool.fetchval("SELECT count(*) FROM payment_idempotency WHERE id = $1", payment_id) == 0

    funded = new_payer(devnet)
    served = await gateway.get(
        CAPITALS, headers={"PAYMENT-SIGNATURE": header_with_id(funded, devnet, offer, payment_id)}
    )
    assert served.status_code == 200  # the id was free again: the new payment owns it now

    for bad in ("short", "x" * 129, "has spaces in it!!"):
        answer = await gateway.get(CAPITALS, headers={"PAYMENT-SIGNATURE": header_with_id(funded, devnet, offer, bad)})
        assert answer.status_code == 400 and unb64(answer.headers["payment-required"])["error"] == "invalid_payload"


async def test_replayable_responses_expire(settings: Settings, devnet: EvmDevnet, pool: asyncpg.Pool) -> None:
    with running_gateway(with_settings(settings, idempotency_ttl_s=1)) as gateway:
        key = new_payer(devnet)
        offer = await gateway.offer(CAPITALS)
        header = header_with_id(key, devnet, offer, f"short-{secrets.token_hex(12)}")
        assert (await gateway.get(CAPITALS, headers={"PAYMENT-SIGNATURE": header})).status_code == 200
        await asyncio.sleep(1.5)
        late = await gateway.get(CAPITALS, headers={"PAYMENT-SIGNATURE": header})
    # no replay any more; the payment itself is spent, so the answer is the ordinary refusal
    assert late.status_code == 402 and unb64(late.headers["payment-required"])["error"] == "payment_already_claimed"
