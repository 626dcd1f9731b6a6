"""payment-identifier on batch-settlement vouchers: a retry is answered, never charged twice.

Without an id, a voucher whose answer left is refused when sent again (the corrective 402: the client re-bases
and pays the next price for the same request). Under a payment id, the same voucher, or one the same payer signed
anew for the same request, gets the first answer replayed and is never booked: the channel is charged once. The
id is bound to the request (another query is a 409) and to its payer (another channel's voucher is a 409); a
refused voucher frees its id.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
from eth_account import Account

from app.runtime.settings import Settings
from payments.devnet.evm import EvmDevnet

from .chain import b64, new_payer, unb64
from .conftest import Gateway, running_gateway
from .test_batch_gateway import (  # noqa: F401 - batch_settings is a fixture
    CAPITALS,
    CLIENT_PYTHON,
    PRICE,
    ROOT,
    Channel,
    accepted_for,
    batch_settings,
    reason_of,
)


@pytest.fixture(scope="module")
async def batch_gateway(batch_settings: Settings) -> AsyncIterator[Gateway]:  # noqa: F811 - the fixture imported
    with running_gateway(batch_settings) as gateway:
        yield gateway


async def opened(gateway: Gateway, devnet: EvmDevnet) -> Channel:
    answer = await gateway.get(CAPITALS)
    [offer] = [o for o in unb64(answer.headers["payment-required"])["accepts"] if o["scheme"] == "batch-settlement"]
    channel = Channel(gateway, devnet, offer)
    await channel.open(10 * PRICE)  # the deposit and the first voucher (PRICE), without an id
    return channel


async def send(channel: Channel, cumulative: int, payment_id: str | None, query: str = "limit=1") -> httpx.Response:
    document: dict[str, Any] = {
        "x402Version": 2,
        "accepted": channel.offer,
        "payload": channel.payer.voucher_payload(channel.config, cumulative),
    }
    if payment_id is not None:
        document["extensions"] = {"payment-identifier": {"info": {"id": payment_id}}}
    return await channel.gateway.get(f"{CAPITALS}?{query}", headers={"PAYMENT-SIGNATURE": b64(document)})


def charged(answer: httpx.Response) -> int:
    return int(unb64(answer.headers["payment-response"])["extra"]["channelState"]["chargedCumulativeAmount"])


async def test_a_re_signed_voucher_under_the_same_id_gets_the_first_answer_and_is_never_booked(
    batch_gateway: Gateway, devnet: EvmDevnet, pool: asyncpg.Pool
) -> None:
    channel = await opened(batch_gateway, devnet)
    payer = channel.payer.address.lower()
    retry_id = f"retry-{secrets.token_hex(12)}"

    first = await send(channel, 2 * PRICE, retry_id)
    without_id = await send(channel, 2 * PRICE, None)  # its answer left: refused, the client would pay again
    same = await send(channel, 2 * PRICE, retry_id)  # the client's retry after an answer lost on the way
    re_signed = await send(channel, 3 * PRICE, retry_id)  # signed anew for the same request, under the same id
    assert reason_of(without_id).endswith("cumulative_amount_mismatch")
    assert first.status_code == same.status_code == re_signed.status_code == 200, re_signed.text
    assert same.content == re_signed.content == first.content
    receipts = {a.headers["payment-response"] for a in (first, same, re_signed)}
    assert len(receipts) == 1
    assert charged(re_signed) == 2 * PRICE  # the state a client re-bases on
    assert await accepted_for(pool, payer) == 2  # the deposit's voucher and the first: the retry booked nothing

    # the re-signed voucher was never booked: the channel's next is still 3 * PRICE
    after = await send(channel, 3 * PRICE, None)
    assert after.status_code == 200 and charged(after) == 3 * PRICE
    assert await accepted_for(pool, payer) == 3


async def test_an_id_is_bound_to_its_request_and_payer_and_freed_by_a_refusal(
    batch_gateway: Gateway, devnet: EvmDevnet, pool: asyncpg.Pool
) -> None:
    channel, other = await opened(batch_gateway, devnet), await opened(batch_gateway, devnet)
    bound = f"bound-{secrets.token_hex(12)}"
    assert (await send(channel, 2 * PRICE, bound)).status_code == 200

    another_query = await send(channel, 3 * PRICE, bound, query="limit=2")
    another_payer = await send(other, 2 * PRICE, bound)
    assert (another_query.status_code, another_query.json()["error"]) == (409, "payment_identifier_conflict")
    assert (another_payer.status_code, another_payer.json()["error"]) == (409, "payment_identifier_conflict")
    assert await accepted_for(pool, other.payer.address.lower()) == 1  # only its deposit's voucher

    freed = f"freed-{secrets.token_hex(12)}"
    jumped = await send(channel, 5 * PRICE, freed)  # refused: more than one price above what was charged
    assert reason_of(jumped).endswith("cumulative_amount_mismatch")
    fixed = await send(channel, 3 * PRICE, freed)  # the id is free again: this voucher runs under it
    assert fixed.status_code == 200 and charged(fixed) == 3 * PRICE
    short = await send(channel, 4 * PRICE, "short")  # ids are 16 to 128 characters, as for exact
    assert short.status_code == 400 and unb64(short.headers["payment-required"])["error"] == "invalid_payload"
    assert await accepted_for(pool, channel.payer.address.lower()) == 3


def official_retry(url: str, key: str, network: str, payment_id: str | None) -> dict[str, Any]:
    env = {**os.environ, "URL": url, "PAYER_KEY": key, "NETWORK": network, "PAYMENT_ID": payment_id or ""}
    command = [str(CLIENT_PYTHON), "tests/clients/retry_batch.py"]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    answer: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return answer


@pytest.mark.skipif(not CLIENT_PYTHON.exists(), reason="the official Python client's venv is missing: make install")
async def test_the_official_clients_retry_after_a_lost_answer_is_replayed_under_its_id(
    batch_gateway: Gateway, devnet: EvmDevnet, pool: asyncpg.Pool
) -> None:
    """The SDK builds a retry from its channel state, which a lost answer never moved: the same voucher. Without an
    id it is refused (the client would re-base and pay again); under an id the first answer comes back, once."""
    url = f"{batch_gateway.url}{CAPITALS}?limit=1"
    plain_key, with_id_key = new_payer(devnet), new_payer(devnet)
    plain = await asyncio.to_thread(official_retry, url, plain_key, devnet.network, None)
    with_id = await asyncio.to_thread(official_retry, url, with_id_key, devnet.network, f"sdk-{secrets.token_hex(12)}")
    assert plain["opened"] == with_id["opened"] == 200
    assert plain["same_voucher"] and with_id["same_voucher"]  # the SDK's retry is the voucher already sent
    assert plain["statuses"] == [200, 402]
    assert with_id["statuses"] == [200, 200] and with_id["same_body"] and with_id["same_receipt"], with_id
    payer = Account.from_key(with_id_key).address.lower()
    assert await accepted_for(pool, payer) == 2  # the opening request and the one retried: charged once
