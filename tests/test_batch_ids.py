"""payment-identifier on batch-settlement vouchers: a retry that signs anew is answered, never charged twice.

The official batch clients sign the next cumulative for every attempt, so a retry after a lost answer carries a
new voucher. Under the same payment id, from the same payer, for the same request, that voucher is not booked:
the first answer is replayed, and the channel is charged once. The id is bound to the request (another query is
a 409) and to its payer (another channel's voucher is a 409); a refused voucher frees its id.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest

from app.runtime.settings import Settings
from payments.devnet.evm import EvmDevnet

from .chain import b64, unb64
from .conftest import Gateway, running_gateway
from .test_batch_gateway import CAPITALS, PRICE, Channel, accepted_for, batch_settings, reason_of  # noqa: F401


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
    same = await send(channel, 2 * PRICE, retry_id)  # the same voucher sent again
    re_signed = await send(channel, 3 * PRICE, retry_id)  # the client's retry: the next cumulative, signed anew
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
