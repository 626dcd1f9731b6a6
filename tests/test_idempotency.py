"""x402 payment-identifier: a retry with the same id and payment replays the delivery, never a second charge;
the id is bound to the request (method, route, query, price); a settlement whose outcome is unknown answers
pending (503, Retry-After) to every retry while the chain cannot say, never a fresh 402, and then its outcome,
asked of the chain by the retry itself (app/usecases/recovery.py), without waiting for reconciliation."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import httpx
import httpx2
import pytest
from eth_account import Account
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from x402 import x402Client
from x402.extensions.payment_identifier import PAYMENT_IDENTIFIER, append_payment_identifier_to_extensions
from x402.http.clients import x402HttpxClient
from x402.mechanisms.evm import EthAccountSigner
from x402.mechanisms.evm.exact.register import register_exact_evm_client
from x402.schemas import PaymentPayload, PaymentRequired

from app.runtime.settings import Settings, replace
from app.usecases import reconcile as reconcile_module
from payments.devnet.evm import EvmDevnet

from .chain import b64, new_payer, payment_document, sign_authorization, unb64, usdc_balance
from .conftest import Gateway, running_gateway, with_settings
from .faults.proxy import FaultProxy
from .faults.rig import fault_db, reconcile, relayer_key  # noqa: F401 - fixtures
from .ledger_helpers import FreshDatabase

CAPITALS = "/v1/streams/static.capitals"
MCP_PAYMENT = "x402/payment"
MCP_PAYMENT_RESPONSE = "x402/payment-response"
EXPIRY_S = 8  # the never-broadcast payments stop being usable on chain this soon


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


# ---- the id is bound to the request: method, route, query and price ----

BBOX = "bbox=-10,35,30,60"
VOLCANOES = "/v1/streams/static.volcanoes"


async def test_the_same_id_on_another_request_is_a_conflict_before_any_charge(
    gateway: Gateway, devnet: EvmDevnet, pool: asyncpg.Pool
) -> None:
    key = new_payer(devnet)
    payer = Account.from_key(key).address
    offer = await gateway.offer(CAPITALS)
    payment_id = f"bound-{secrets.token_hex(12)}"
    header = header_with_id(key, devnet, offer, payment_id)

    first = await gateway.get(f"{CAPITALS}?{BBOX}&limit=5", headers={"PAYMENT-SIGNATURE": header})
    assert first.status_code == 200, first.text
    # The same query in another order is the same request: replayed.
    reordered = await gateway.get(f"{CAPITALS}?limit=5&{BBOX}", headers={"PAYMENT-SIGNATURE": header})
    assert reordered.status_code == 200 and reordered.content == first.content

    # The same id and payment on another query, and a new payment under the id on it: 409, never that data.
    other_query = await gateway.get(f"{CAPITALS}?{BBOX}&limit=6", headers={"PAYMENT-SIGNATURE": header})
    resigned = header_with_id(key, devnet, offer, payment_id)
    other_payment = await gateway.get(f"{CAPITALS}?{BBOX}&limit=6", headers={"PAYMENT-SIGNATURE": resigned})
    no_query = await gateway.get(CAPITALS, headers={"PAYMENT-SIGNATURE": header})
    for answer in (other_query, other_payment, no_query):
        assert answer.status_code == 409, answer.text
        assert answer.json()["error"] == "payment_identifier_conflict" and "records" not in answer.text
    # Another stream at another price: the same.
    volcano_offer = await gateway.offer(VOLCANOES)
    elsewhere = header_with_id(key, devnet, volcano_offer, payment_id)
    assert (await gateway.get(VOLCANOES, headers={"PAYMENT-SIGNATURE": elsewhere})).status_code == 409

    assert usdc_balance(devnet, payer) == 10_000_000 - int(offer["amount"])  # one charge
    rows = await pool.fetch("SELECT state FROM payments WHERE payer = $1", payer.lower())
    assert [r["state"] for r in rows] == ["settled"]  # the conflicts were refused before any claim
    stored = await pool.fetchval("SELECT fingerprint FROM payment_idempotency WHERE id = $1", payment_id)
    assert stored is not None and len(stored) == 64


async def test_an_id_stored_before_fingerprints_keeps_the_old_rule(
    gateway: Gateway, devnet: EvmDevnet, pool: asyncpg.Pool
) -> None:
    """Rows written before migration 0011 have no fingerprint: bound to their payment alone, as they were."""
    key = new_payer(devnet)
    offer = await gateway.offer(CAPITALS)
    payment_id = f"legacy-{secrets.token_hex(12)}"
    header = header_with_id(key, devnet, offer, payment_id)
    first = await gateway.get(f"{CAPITALS}?limit=5", headers={"PAYMENT-SIGNATURE": header})
    assert first.status_code == 200, first.text
    await pool.execute("UPDATE payment_idempotency SET fingerprint = NULL WHERE id = $1", payment_id)
    replayed = await gateway.get(f"{CAPITALS}?limit=6", headers={"PAYMENT-SIGNATURE": header})
    assert replayed.status_code == 200 and replayed.content == first.content
    resigned = header_with_id(key, devnet, offer, payment_id)
    assert (await gateway.get(CAPITALS, headers={"PAYMENT-SIGNATURE": resigned})).status_code == 409


class FixedPaymentId:
    """A client extension that puts one payment-identifier on every payment the official client makes:
    an app's "this logical request" id, reused on its retries."""

    key = PAYMENT_IDENTIFIER

    def __init__(self, payment_id: str) -> None:
        self.payment_id = payment_id

    def enrich_payment_payload(self, payload: PaymentPayload, required: PaymentRequired) -> PaymentPayload:
        extensions = append_payment_identifier_to_extensions(dict(required.extensions or {}), self.payment_id)
        return payload.model_copy(update={"extensions": extensions})


def official_client(key: str, payment_id: str) -> x402HttpxClient:
    client = x402Client()
    register_exact_evm_client(client, EthAccountSigner(Account.from_key(key)))
    client.register_extension(FixedPaymentId(payment_id))
    return x402HttpxClient(client)


async def test_the_official_client_reusing_an_id_on_another_query_gets_a_409_and_pays_once(
    gateway: Gateway, devnet: EvmDevnet, pool: asyncpg.Pool
) -> None:
    key = new_payer(devnet)
    payer = Account.from_key(key).address
    price = int((await gateway.offer(CAPITALS))["amount"])
    async with official_client(key, f"official-{secrets.token_hex(12)}") as http:
        first = await http.get(f"{gateway.url}{CAPITALS}?{BBOX}&limit=5")
        other = await http.get(f"{gateway.url}{CAPITALS}?{BBOX}&limit=6")
        # The client signs a new payment on every 402: under a delivered id that is another payment (x402's
        # payment-identifier: same id, different payload: 409), not a second charge.
        again = await http.get(f"{gateway.url}{CAPITALS}?{BBOX}&limit=5")
    assert first.status_code == 200 and len(first.json()["records"]) == 5, first.text
    assert other.status_code == 409 and other.json()["error"] == "payment_identifier_conflict", other.text
    assert "another request" in other.json()["message"]
    assert again.status_code == 409 and "records" not in again.text
    assert usdc_balance(devnet, payer) == 10_000_000 - price
    assert await settled_rows(pool, payer) == 1
    assert await pool.fetchval("SELECT count(*) FROM payments WHERE payer = $1", payer.lower()) == 1


# ---- a settlement whose outcome is unknown: pending, never a fresh 402, then the outcome ----


@pytest.fixture(scope="module")
def receipts(devnet: EvmDevnet) -> Iterator[FaultProxy]:
    """A fault proxy in front of anvil: the test breaks one RPC method at a time."""
    proxy = FaultProxy(devnet.rpc_url).start()
    yield proxy
    proxy.stop()


@pytest.fixture(scope="module")
def pending_gateway(
    settings: Settings,
    fault_db: FreshDatabase,  # noqa: F811
    relayer_key: str,  # noqa: F811
    receipts: FaultProxy,
) -> Iterator[Gateway]:
    """A gateway on a ledger of its own (reconcile judges every open row), its EVM RPC through the proxy."""
    assert settings.evm is not None
    evm = replace(settings.evm, rpc_url=receipts.url, relayer_key=relayer_key, rpc_timeout_s=1.0, receipt_timeout_s=1.0)
    with running_gateway(replace(settings, database_url=fault_db.url, evm=evm)) as running:
        yield running


def expiring(key: str, devnet: EvmDevnet, offer: dict[str, Any], payment_id: str, valid_before: int) -> str:
    """A payment with a payment-identifier that the chain refuses from `valid_before` on."""
    value = int(offer["amount"])
    authorization = sign_authorization(key, devnet, to=offer["payTo"], value=value, valid_before=valid_before)
    return b64({**payment_document(key, devnet, offer, payment_id), "payload": authorization})


@asynccontextmanager
async def mcp_client(gateway: Gateway) -> AsyncIterator[Client]:
    """The official MCP client on the gateway's /mcp."""
    async with (
        httpx2.AsyncClient(timeout=httpx2.Timeout(60)) as http,
        Client(streamable_http_client(gateway.url + "/mcp", http_client=http)) as client,
    ):
        yield client


def pending(answer: httpx.Response) -> str:
    """The answer is the pending state (503 settlement_pending, Retry-After, no data): its transaction."""
    assert answer.status_code == 503 and int(answer.headers["retry-after"]) > 0, answer.text
    assert answer.json()["error"] == "settlement_pending" and "records" not in answer.text
    return str(unb64(answer.headers["payment-response"])["transaction"])


async def test_a_pending_settlement_answers_pending_to_every_retry_then_the_data_once_booked(
    pending_gateway: Gateway,
    receipts: FaultProxy,
    settings: Settings,
    devnet: EvmDevnet,
    fault_db: FreshDatabase,  # noqa: F811
) -> None:
    """The transfer lands but every receipt is lost (x402 #3208: a client answered 402 here pays again). The
    official client, reusing its payment-identifier on each retry, signs a new payment each time: it is told
    the first one is pending, is never charged again, and once reconciliation books the sale gets the data."""
    gateway, pool = pending_gateway, fault_db.pool
    key = new_payer(devnet)
    payer = Account.from_key(key).address
    price = int((await gateway.offer(CAPITALS))["amount"])
    url = f"{gateway.url}{CAPITALS}?{BBOX}&limit=5"
    async with official_client(key, f"pending-{secrets.token_hex(12)}") as http:
        receipts.fault("eth_getTransactionReceipt", "html_502", forward=True)
        try:
            first = await http.get(url)
            tx = pending(first)
            retry = await http.get(url)  # a new signature under the same id
            assert pending(retry) == tx
            other = await http.get(f"{gateway.url}{CAPITALS}?{BBOX}&limit=6")
            assert other.status_code == 409 and other.json()["error"] == "payment_identifier_conflict"
        finally:
            receipts.clear()
        assert usdc_balance(devnet, payer) == 10_000_000 - price  # the first transfer landed; nothing more
        states = await pool.fetch("SELECT state FROM payments WHERE payer = $1", payer.lower())
        assert [r["state"] for r in states] == ["settling"]  # the retries' payments were never claimed

        report = await reconcile(pool, settings)
        assert report.errors == [], report
        booked = await http.get(url)
    assert booked.status_code == 200 and len(booked.json()["records"]) == 5, booked.text
    assert unb64(booked.headers["payment-response"])["transaction"] == tx  # under the first settlement
    assert usdc_balance(devnet, payer) == 10_000_000 - price
    states = await pool.fetch("SELECT state FROM payments WHERE payer = $1", payer.lower())
    assert [r["state"] for r in states] == ["settled"]


async def test_the_same_payment_retried_while_pending_is_told_so_then_served_once_the_chain_says(
    pending_gateway: Gateway,
    receipts: FaultProxy,
    settings: Settings,
    devnet: EvmDevnet,
    fault_db: FreshDatabase,  # noqa: F811
) -> None:
    """The client keeps its signed payment and sends it again: pending at once (not after a wait) while the chain
    cannot be read; then, the node answering again, the retry itself reads the receipt, books the sale and gets
    the data under the first settlement, without reconciliation; with an id, the stored answer from then on."""
    gateway, pool = pending_gateway, fault_db.pool
    offer = await gateway.offer(CAPITALS)
    keys = [new_payer(devnet), new_payer(devnet)]
    headers = [
        header_with_id(keys[0], devnet, offer, f"same-{secrets.token_hex(12)}"),
        header_with_id(keys[1], devnet, offer, None),
    ]
    receipts.fault("eth_getTransactionReceipt", "html_502", forward=True)
    try:
        txs = [pending(await gateway.get(CAPITALS, headers={"PAYMENT-SIGNATURE": h})) for h in headers]
        for header, tx in zip(headers, txs, strict=True):
            started = time.monotonic()
            assert pending(await gateway.get(CAPITALS, headers={"PAYMENT-SIGNATURE": header})) == tx
            assert time.monotonic() - started < 2.0  # answered, not held until the settle wait runs out
    finally:
        receipts.clear()
    for header, tx in zip(headers, txs, strict=True):
        served = await gateway.get(CAPITALS, headers={"PAYMENT-SIGNATURE": header})
        assert served.status_code == 200 and "records" in served.json(), served.text
        assert unb64(served.headers["payment-response"])["transaction"] == tx
    replayed = await gateway.get(CAPITALS, headers={"PAYMENT-SIGNATURE": headers[0]})
    assert replayed.status_code == 200 and "records" in replayed.json()  # the id's stored answer
    for key in keys:
        assert usdc_balance(devnet, Account.from_key(key).address) == 10_000_000 - int(offer["amount"])
        rows = await pool.fetch("SELECT state FROM payments WHERE payer = $1", Account.from_key(key).address.lower())
        assert [r["state"] for r in rows] == ["settled"]  # booked by the retry
    report = await reconcile(pool, settings)
    assert report.errors == [] and report.flagged == 0, report


async def test_a_pending_settlement_that_never_landed_is_settled_by_its_retry_or_told_not_charged(
    pending_gateway: Gateway,
    receipts: FaultProxy,
    settings: Settings,
    devnet: EvmDevnet,
    fault_db: FreshDatabase,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The broadcast never reaches the chain (a timeout on send): pending while it lasts. The first payment,
    sent again while its authorization can still land, is settled by that retry (its lease ended with its
    request): the data, charged once. The second, sent again only once its authorization expired, is closed
    failed by that retry and told it was not charged, without reconciliation; its id then takes a new payment."""
    gateway, pool = pending_gateway, fault_db.pool
    offer = await gateway.offer(CAPITALS)
    keys = [new_payer(devnet), new_payer(devnet)]
    ids = [f"failed-{secrets.token_hex(12)}" for _ in keys]
    valid_before = int(time.time()) + EXPIRY_S
    lasting = int(time.time()) + 300  # the first stays usable on chain; the second expires soon
    headers = [
        expiring(keys[0], devnet, offer, ids[0], lasting),
        expiring(keys[1], devnet, offer, ids[1], valid_before),
    ]
    receipts.fault("eth_sendRawTransaction", "hang")
    try:
        for header in headers:
            pending(await gateway.get(CAPITALS, headers={"PAYMENT-SIGNATURE": header}))
        pending(await gateway.get(CAPITALS, headers={"PAYMENT-SIGNATURE": headers[0]}))  # still cannot land
    finally:
        receipts.clear()
    settled = await gateway.get(CAPITALS, headers={"PAYMENT-SIGNATURE": headers[0]})
    assert settled.status_code == 200 and "records" in settled.json(), settled.text
    assert usdc_balance(devnet, Account.from_key(keys[0]).address) == 10_000_000 - int(offer["amount"])

    monkeypatch.setattr(reconcile_module, "EVM_EXPIRY_MARGIN_S", 0.0)  # anvil's clock does not lag
    await asyncio.sleep(max(0.0, valid_before + 1 - time.time()))
    refused = await gateway.get(CAPITALS, headers={"PAYMENT-SIGNATURE": headers[1]})
    assert refused.status_code == 409 and "payment-required" not in refused.headers, refused.text
    assert unb64(refused.headers["payment-response"])["success"] is False and "records" not in refused.text
    assert refused.json()["error"] == "payment_not_charged" and "not charged" in refused.json()["message"]
    payer = Account.from_key(keys[1]).address
    rows = await pool.fetch("SELECT state FROM payments WHERE payer = $1", payer.lower())
    assert [r["state"] for r in rows] == ["failed"]  # closed by the retry, not by reconciliation
    again = header_with_id(keys[1], devnet, offer, ids[1])  # the id is free again
    served = await gateway.get(CAPITALS, headers={"PAYMENT-SIGNATURE": again})
    assert served.status_code == 200 and "records" in served.json(), served.text
    assert usdc_balance(devnet, payer) == 10_000_000 - int(offer["amount"])
    report = await reconcile(pool, settings)
    assert report.errors == [] and report.flagged == 0, report


async def test_over_mcp_a_pending_settlement_is_a_pending_tool_error_then_the_data(
    pending_gateway: Gateway,
    receipts: FaultProxy,
    settings: Settings,
    devnet: EvmDevnet,
    fault_db: FreshDatabase,  # noqa: F811
) -> None:
    gateway, pool = pending_gateway, fault_db.pool
    key = new_payer(devnet)
    payment_id = f"mcp-pending-{secrets.token_hex(12)}"
    arguments = {"id": "static.capitals", "limit": 5}
    async with mcp_client(gateway) as client:
        required = (await client.call_tool("get_stream", arguments)).structured_content
        [offer] = [o for o in required["accepts"] if o["network"].startswith("eip155:")]
        paid = payment_document(key, devnet, offer, payment_id)
        receipts.fault("eth_getTransactionReceipt", "html_502", forward=True)
        resigned = payment_document(key, devnet, offer, payment_id)
        try:
            first = await client.call_tool("get_stream", arguments, meta={MCP_PAYMENT: paid})
            answers = [first]
            for retry in (paid, resigned):  # the same payment, then a new one under the same id
                answers.append(await client.call_tool("get_stream", arguments, meta={MCP_PAYMENT: retry}))
        finally:
            receipts.clear()
        for answer in answers:
            assert answer.is_error and answer.structured_content["error"] == "settlement_pending", answer
            assert answer.structured_content["retry_after"] > 0 and "accepts" not in answer.structured_content
        conflict = await client.call_tool("get_stream", {**arguments, "limit": 6}, meta={MCP_PAYMENT: paid})
        assert conflict.is_error and conflict.structured_content["error"] == "payment_identifier_conflict"
        # the node answers again: the retry reads the receipt and books the sale itself
        booked = await client.call_tool("get_stream", arguments, meta={MCP_PAYMENT: resigned})
    assert not booked.is_error and len(booked.structured_content["records"]) == 5, booked
    report = await reconcile(pool, settings)
    assert report.errors == [] and report.flagged == 0, report
    assert booked.meta is not None and first.meta is not None
    assert booked.meta[MCP_PAYMENT_RESPONSE]["transaction"] == first.meta[MCP_PAYMENT_RESPONSE]["transaction"]
    assert usdc_balance(devnet, Account.from_key(key).address) == 10_000_000 - int(offer["amount"])


async def test_over_mcp_the_id_is_bound_to_the_tool_and_its_arguments(gateway: Gateway, devnet: EvmDevnet) -> None:
    key = new_payer(devnet)
    payment_id = f"mcp-bound-{secrets.token_hex(12)}"
    arguments = {"id": "static.capitals", "bbox": "-10,35,30,60", "limit": 5}
    async with mcp_client(gateway) as client:
        required = (await client.call_tool("get_stream", arguments)).structured_content
        [offer] = [o for o in required["accepts"] if o["network"].startswith("eip155:")]
        paid = payment_document(key, devnet, offer, payment_id)
        first = await client.call_tool("get_stream", arguments, meta={MCP_PAYMENT: paid})
        reordered = {"limit": 5, "bbox": "-10,35,30,60", "id": "static.capitals"}
        replayed = await client.call_tool("get_stream", reordered, meta={MCP_PAYMENT: paid})
        other = await client.call_tool("get_stream", {**arguments, "limit": 6}, meta={MCP_PAYMENT: paid})
    assert not first.is_error and replayed.structured_content == first.structured_content
    assert other.is_error and other.structured_content["error"] == "payment_identifier_conflict"
    assert usdc_balance(devnet, Account.from_key(key).address) == 10_000_000 - int(offer["amount"])
