"""A claim left open by a request that died, resolved by the retry of its payment there and then (issue 21):
against the session gateway, its ledger and the devnets, with the dead request's leftovers written into the
ledger as a killed process leaves them (a claim at some step, its lease naming a process that is gone).

The whole sequence with real SIGKILLs is tests/faults/test_crash_retry.py; here each case is pinned down: a
transfer that landed is booked and served; a holder alive elsewhere is waited for until its lease lapses;
one dead on this machine is known dead at once; nothing broadcast is settled by the retry; an authorization
that expired is closed and told "not charged"; a stalled holder cannot write once its claim is taken over.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
import subprocess
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from eth_account import Account
from mcp import Client
from solders.keypair import Keypair

import ledger
from app.runtime.settings import Settings
from app.usecases import holders
from app.usecases import reconcile as reconcile_module
from app.wiring import build_facilitator
from ledger import PaymentRecord, PaymentState, claims, idempotency, leases
from payments import Facilitator, PaymentPayload, PaymentRequirements, decode_payment_header, inspect
from payments.codec import convert
from payments.devnet.evm import EvmDevnet
from payments.devnet.solana_process import SolanaDevnetProcess

from . import svm
from .chain import b64, new_payer, pay_for, payment_document, unb64, usdc_balance
from .conftest import Gateway
from .test_idempotency import MCP_PAYMENT, MCP_PAYMENT_RESPONSE, mcp_client

CAPITALS = "/v1/streams/static.capitals"
FUNDED = 10_000_000
STEPS = ("claimed", "verified", "served", "settling")


@pytest.fixture
async def facilitator(settings: Settings, pool: asyncpg.Pool) -> AsyncIterator[Facilitator]:
    """The gateway's own kind of facilitator (its keys, its relayer lock in this ledger): the dead request's."""
    made = await build_facilitator(settings, pool)
    yield made
    await made.close()


async def elsewhere(pool: asyncpg.Pool, lease_s: float) -> int:
    """A process on another machine, its lease running `lease_s` more seconds (negative: lapsed)."""
    return await leases.register(pool, "another-host/boot/pid:[1]", 4242, 1, lease_s)


def dead_here() -> tuple[int, int]:
    """(pid, start ticks) of a process of this machine that ran and was SIGKILLed."""
    process = subprocess.Popen(["sleep", "60"])
    started = holders.process_started(process.pid)
    assert started is not None
    process.kill()
    process.wait()
    return process.pid, started


async def left_open(
    pool: asyncpg.Pool, header: str, offer: dict[str, Any], state: str, instance: int
) -> tuple[int, PaymentPayload, PaymentRequirements]:
    """What a request held by `instance` leaves when it dies at `state`: its claim, moved along under its lease."""
    payload = decode_payment_header(header, version=2)
    assert isinstance(payload, PaymentPayload)
    requirements = convert(offer, PaymentRequirements)
    inspection = inspect(payload, requirements)
    assert not hasattr(inspection, "reason"), inspection
    valid_before = inspection.valid_before_unix_s
    record = PaymentRecord(
        payment_key=inspection.payment_key,
        scheme_id=inspection.scheme_id,
        network=inspection.network,
        asset=inspection.asset,
        payer=inspection.payer,
        pay_to=inspection.pay_to,
        amount_atomic=inspection.amount_atomic,
        route="GET /v1/streams/{id}",
        resource=CAPITALS,
        stream="static.capitals",
        valid_before=datetime.fromtimestamp(valid_before, UTC) if valid_before else None,
    )
    payment_id = await claims.claim(pool, record, lease=instance)
    assert payment_id is not None
    for before, after in itertools.pairwise(STEPS[: STEPS.index(state) + 1]):
        assert await claims.advance(pool, payment_id, PaymentState(before), PaymentState(after), lease=instance)
    return payment_id, payload, requirements


def payer_and_header(family: str, offer: dict[str, Any], devnet: EvmDevnet, solana: SolanaDevnetProcess) -> Any:
    if family == "eip155":
        key = new_payer(devnet)
        return (lambda: usdc_balance(devnet, Account.from_key(key).address)), pay_for(key, devnet, offer)
    keypair: Keypair = svm.new_payer(solana.state)
    return (lambda: svm.usdc_balance(solana.state, keypair.pubkey())), svm.pay(keypair, solana.state, offer)


async def row(pool: asyncpg.Pool, payment_id: int) -> dict[str, Any]:
    found = await pool.fetchrow(
        "SELECT p.state, p.tx_hash, p.claims, (SELECT string_agg(memo, ',') FROM journal_entries e"
        " WHERE e.payment_id = p.id) AS memos FROM payments p WHERE p.id = $1",
        payment_id,
    )
    assert found is not None
    return dict(found)


@pytest.mark.parametrize("family", ["eip155", "solana"])
async def test_a_transfer_that_landed_under_a_dead_request_is_booked_and_served_to_its_retry(
    family: str,
    gateway: Gateway,
    pool: asyncpg.Pool,
    facilitator: Facilitator,
    devnet: EvmDevnet,
    solana: SolanaDevnetProcess,
) -> None:
    """Killed after the broadcast, before booking: the retry reads the receipt, books the sale and gets the data
    under that transaction; the payer is charged once, and the next copy is refused as spent (delivered)."""
    offer = await gateway.offer(CAPITALS, family)
    balance, header = payer_and_header(family, offer, devnet, solana)
    dead = await elsewhere(pool, -1.0)
    payment_id, payload, requirements = await left_open(pool, header, offer, "settling", dead)

    async def write_ahead(tx_hash: str) -> None:
        await claims.record_tx_hash(pool, payment_id, tx_hash, lease=dead)

    settlement = await facilitator.settle(payload, requirements, write_ahead)
    assert settlement.success and balance() == FUNDED - int(offer["amount"])  # charged, not booked: the crash

    retry = await gateway.get(CAPITALS, headers={"PAYMENT-SIGNATURE": header})
    assert retry.status_code == 200 and "records" in retry.json(), retry.text
    assert unb64(retry.headers["payment-response"])["transaction"] == settlement.transaction
    booked = await row(pool, payment_id)
    assert booked["state"] == "settled" and booked["memos"] == claims.RESOLVED_MEMO
    again = await gateway.get(CAPITALS, headers={"PAYMENT-SIGNATURE": header})
    assert again.status_code == 402 and "already used" in again.json()["message"]  # delivered: now it is spent
    assert balance() == FUNDED - int(offer["amount"])


async def test_a_claim_held_by_a_live_process_elsewhere_is_pending_until_its_lease_lapses(
    gateway: Gateway, pool: asyncpg.Pool, devnet: EvmDevnet, solana: SolanaDevnetProcess
) -> None:
    """Another replica still holds the claim (its lease runs): the retry is told pending (503, Retry-After),
    nothing is charged. Once that lease lapses without a heartbeat, the retry takes the claim over and runs it."""
    offer = await gateway.offer(CAPITALS)
    balance, header = payer_and_header("eip155", offer, devnet, solana)
    holder = await elsewhere(pool, 30.0)
    payment_id, _, _ = await left_open(pool, header, offer, "served", holder)

    waiting = await gateway.get(CAPITALS, headers={"PAYMENT-SIGNATURE": header})
    assert waiting.status_code == 503 and int(waiting.headers["retry-after"]) > 0, waiting.text
    assert waiting.json()["error"] == "settlement_pending" and balance() == FUNDED
    assert (await row(pool, payment_id))["state"] == "served"

    await pool.execute("UPDATE gateway_instances SET lease_until = now() - interval '1 second' WHERE id = $1", holder)
    taken = await gateway.get(CAPITALS, headers={"PAYMENT-SIGNATURE": header})
    assert taken.status_code == 200 and "records" in taken.json(), taken.text
    after = await row(pool, payment_id)
    assert after["state"] == "settled" and after["claims"] == 2  # released by the retry, claimed again, sold
    assert balance() == FUNDED - int(offer["amount"])


async def test_a_request_that_died_on_this_machine_is_known_dead_at_once(
    gateway: Gateway, pool: asyncpg.Pool, devnet: EvmDevnet, solana: SolanaDevnetProcess
) -> None:
    """Its lease would run for half a minute more, but its process is gone from this machine: no wait."""
    pid, started = dead_here()
    instance = await leases.register(pool, holders.MACHINE, pid, started, 30.0)
    offer = await gateway.offer(CAPITALS, "solana")
    balance, header = payer_and_header("solana", offer, devnet, solana)
    payment_id, _, _ = await left_open(pool, header, offer, "verified", instance)

    opened = time.monotonic()
    retry = await gateway.get(CAPITALS, headers={"PAYMENT-SIGNATURE": header})
    assert retry.status_code == 200 and "records" in retry.json(), retry.text
    assert time.monotonic() - opened < 10.0  # well inside the lease it still had
    assert (await row(pool, payment_id))["state"] == "settled" and balance() == FUNDED - int(offer["amount"])

    # a process of this machine that still runs holds its claim; the same claim once that process is gone does not
    alive = subprocess.Popen(["sleep", "60"])  # noqa: ASYNC220 - a process to watch, not to wait for
    try:
        started_alive = holders.process_started(alive.pid)
        running = await leases.register(pool, holders.MACHINE, alive.pid, started_alive, 30.0)
        other_offer = await gateway.offer(CAPITALS)
        _, other_header = payer_and_header("eip155", other_offer, devnet, solana)
        other_id, _, _ = await left_open(pool, other_header, other_offer, "claimed", running)
        held = await claims.holder(
            pool, (await pool.fetchval("SELECT payment_key FROM payments WHERE id = $1", other_id))
        )
        assert held is not None and held.held and not holders.gone(held)
    finally:
        alive.kill()
        alive.wait()
    assert held is not None and holders.gone(held)  # the same holder, its process now gone


async def test_settling_with_nothing_broadcast_is_settled_by_the_retry(
    gateway: Gateway, pool: asyncpg.Pool, devnet: EvmDevnet, solana: SolanaDevnetProcess
) -> None:
    """Killed between `settling` and the write-ahead hash: nothing left (the local facilitator records the hash
    before any broadcast), so the retry serves and settles it itself, in place."""
    offer = await gateway.offer(CAPITALS)
    balance, header = payer_and_header("eip155", offer, devnet, solana)
    payment_id, _, _ = await left_open(pool, header, offer, "settling", await elsewhere(pool, -1.0))

    retry = await gateway.get(CAPITALS, headers={"PAYMENT-SIGNATURE": header})
    assert retry.status_code == 200 and "records" in retry.json(), retry.text
    after = await row(pool, payment_id)
    assert after["state"] == "settled" and after["claims"] == 1 and after["tx_hash"]
    assert unb64(retry.headers["payment-response"])["transaction"] == after["tx_hash"]
    assert balance() == FUNDED - int(offer["amount"])


async def test_an_authorization_that_expired_under_a_dead_request_is_closed_and_not_charged(
    gateway: Gateway, pool: asyncpg.Pool, devnet: EvmDevnet, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The payment can no longer land: the retry closes the claim (expired) and says the payer was not charged,
    with a failed receipt and no quote (409 `payment_not_charged`); from then on the same answer, its reason
    `expired`."""
    monkeypatch.setattr(reconcile_module, "EVM_EXPIRY_MARGIN_S", 0.0)  # anvil's clock does not lag
    offer = await gateway.offer(CAPITALS)
    key = new_payer(devnet)
    valid_before = int(time.time()) + 8
    header = pay_for(key, devnet, offer, valid_before=valid_before)
    payment_id, _, _ = await left_open(pool, header, offer, "served", await elsewhere(pool, -1.0))
    await asyncio.sleep(max(0.0, valid_before + 1 - time.time()))

    retry = await gateway.get(CAPITALS, headers={"PAYMENT-SIGNATURE": header})
    assert retry.status_code == 409 and "records" not in retry.text, retry.text
    assert "payment-required" not in retry.headers  # no quote: nothing asks for a payment
    assert retry.json()["error"] == "payment_not_charged" and "not charged" in retry.json()["message"]
    assert unb64(retry.headers["payment-response"])["success"] is False
    assert (await row(pool, payment_id))["state"] == "expired"
    again = await gateway.get(CAPITALS, headers={"PAYMENT-SIGNATURE": header})
    assert again.status_code == 409 and again.json()["error"] == "payment_not_charged"
    assert again.json()["reason"] == "expired" and "payment-required" not in again.headers
    assert usdc_balance(devnet, Account.from_key(key).address) == FUNDED


async def test_a_stalled_holder_cannot_write_once_its_claim_is_taken_over(
    gateway: Gateway, pool: asyncpg.Pool, devnet: EvmDevnet
) -> None:
    """A holder taken for dead (its lease lapsed) that wakes up: its next step and its write-ahead hash are
    refused, so it can neither move the claim nor broadcast; the taker's are not."""
    stalled = await elsewhere(pool, -1.0)
    taker = await elsewhere(pool, 30.0)
    offer = await gateway.offer(CAPITALS)
    payment_id, _, _ = await left_open(pool, pay_for(new_payer(devnet), devnet, offer), offer, "served", stalled)
    assert await leases.take(pool, payment_id, taker, stalled, PaymentState.SERVED)
    assert not await leases.take(pool, payment_id, stalled, stalled, PaymentState.SERVED)  # one taker wins
    assert not await claims.advance(pool, payment_id, PaymentState.SERVED, PaymentState.SETTLING, lease=stalled)
    assert await claims.advance(pool, payment_id, PaymentState.SERVED, PaymentState.SETTLING, lease=taker)
    with pytest.raises(ledger.LedgerIntegrityError):
        await claims.record_tx_hash(pool, payment_id, "0x" + "ab" * 32, lease=stalled)
    await claims.record_tx_hash(pool, payment_id, "0x" + "cd" * 32, lease=taker)
    await leases.end(pool, payment_id, taker)
    assert (await pool.fetchval("SELECT instance_id FROM claim_leases WHERE payment_id = $1", payment_id)) is None
    await claims.advance(pool, payment_id, PaymentState.SETTLING, PaymentState.FAILED, reason="test")


async def test_over_mcp_the_retry_of_a_payment_that_landed_gets_the_data(
    gateway: Gateway, pool: asyncpg.Pool, facilitator: Facilitator, devnet: EvmDevnet
) -> None:
    key = new_payer(devnet)
    arguments = {"id": "static.capitals", "limit": 5}
    client: Client
    async with mcp_client(gateway) as client:
        required = (await client.call_tool("get_stream", arguments)).structured_content
        [offer] = [o for o in required["accepts"] if o["network"].startswith("eip155:") and o["scheme"] == "exact"]
        header = pay_for(key, devnet, offer)
        dead = await elsewhere(pool, -1.0)
        payment_id, payload, requirements = await left_open(pool, header, offer, "settling", dead)

        async def write_ahead(tx_hash: str) -> None:
            await claims.record_tx_hash(pool, payment_id, tx_hash, lease=dead)

        settlement = await facilitator.settle(payload, requirements, write_ahead)
        assert settlement.success
        retry = await client.call_tool("get_stream", arguments, meta={MCP_PAYMENT: unb64(header)})
    assert not retry.is_error and len(retry.structured_content["records"]) == 5, retry
    assert retry.meta is not None and retry.meta[MCP_PAYMENT_RESPONSE]["transaction"] == settlement.transaction
    assert (await row(pool, payment_id))["state"] == "settled"
    assert usdc_balance(devnet, Account.from_key(key).address) == FUNDED - int(offer["amount"])


async def test_a_payment_id_whose_first_attempt_died_before_its_claim_is_sold_by_the_retry(
    gateway: Gateway, pool: asyncpg.Pool, devnet: EvmDevnet
) -> None:
    """Killed between taking its payment-identifier and claiming the payment: nothing was charged, and no claim
    will ever come. The retry with the same id and payment waits briefly for one, then runs the sale itself."""
    offer = await gateway.offer(CAPITALS)
    key = new_payer(devnet)
    payment_id = f"unclaimed-{secrets.token_hex(12)}"
    document = payment_document(key, devnet, offer, payment_id)
    payload = decode_payment_header(b64(document), version=2)
    assert isinstance(payload, PaymentPayload)
    inspection = inspect(payload, convert(offer, PaymentRequirements))
    assert not hasattr(inspection, "reason"), inspection
    held = await idempotency.begin(pool, payment_id, inspection.payment_key, "http", 600.0)
    assert held.first  # the dead first attempt's: no claim follows

    opened = time.monotonic()
    retry = await gateway.get(CAPITALS, headers={"PAYMENT-SIGNATURE": b64(document)})
    assert retry.status_code == 200 and "records" in retry.json(), retry.text
    assert time.monotonic() - opened < 10.0  # not held until the settle wait runs out
    assert usdc_balance(devnet, Account.from_key(key).address) == FUNDED - int(offer["amount"])
    replayed = await gateway.get(CAPITALS, headers={"PAYMENT-SIGNATURE": b64(document)})
    assert replayed.status_code == 200 and replayed.content == retry.content  # stored under the id
