"""Batch settlement through the gateway, judged by the official Python client (issue 15).

The client deposits once and pays each request with a voucher; the gateway books each voucher in the
ledger and sends no transaction for it; a flush claims every voucher in one transaction and sweeps
exactly what was sold to payTo; the books verify.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from eth_account import Account

import ledger
from app.runtime.settings import BatchSettings, Settings
from app.usecases import batch_setup
from app.usecases.batch_settler import DROP_AFTER_S
from app.usecases.retries import REDELIVER_AFTER_S
from app.usecases.services import Services
from ledger import batch_recovery
from payments.devnet.evm import EvmDevnet, mint

from .batch_payer import STRANGER_KEY, Payer
from .chain import b64, new_payer, rpc, unb64, usdc_balance
from .conftest import Gateway, running_gateway, with_settings
from .ledger_helpers import fresh_pool_fixture  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]
CLIENT_PYTHON = ROOT / ".venv-x402-svm" / "bin" / "python"
CAPITALS = "/v1/streams/static.capitals"
PRICE = 1000
PAY_TO = "0x" + "ab" * 20
REQUESTS = 100


@pytest.fixture(scope="module")
def batch_settings(settings: Settings) -> Settings:
    # the timers far off: the test flushes when it means to
    timers = BatchSettings(claim_interval_s=3600, settle_interval_s=3600)
    return with_settings(settings, schemes=("exact", "batch-settlement"), batch=timers)


def relayer_nonce(devnet: EvmDevnet) -> int:
    return int(rpc(devnet, "eth_getTransactionCount", devnet.relayer_address, "latest"), 16)


def pay(url: str, key: str, network: str, count: int, rpc_url: str | None = None) -> dict[str, Any]:
    env = {**os.environ, "URL": url, "PAYER_KEY": key, "NETWORK": network, "COUNT": str(count)}
    if rpc_url is not None:
        env["RPC_URL"] = rpc_url
    command = [str(CLIENT_PYTHON), "tests/clients/pay_batch.py"]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    answer: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return answer


async def test_the_402_offers_batch_settlement_beside_exact(batch_settings: Settings) -> None:
    with running_gateway(batch_settings) as gateway:
        answer = await gateway.get(CAPITALS)
    accepts = unb64(answer.headers["payment-required"])["accepts"]
    [batch] = [o for o in accepts if o["scheme"] == "batch-settlement"]
    assert batch["network"] == "eip155:84532" and batch["amount"] == str(PRICE)
    extra = batch["extra"]
    assert extra["receiverAuthorizer"].startswith("0x") and isinstance(extra["withdrawDelay"], int)
    assert (extra["name"], extra["version"]) == ("USDC", "2")
    assert {o["scheme"] for o in accepts} == {"exact", "batch-settlement"}
    [base] = [n for n in answer.json()["about"]["networks"] if n["network"] == "eip155:84532"]  # once, both schemes
    assert base["schemes"] == ["exact", "batch-settlement"]


@pytest.mark.skipif(not CLIENT_PYTHON.exists(), reason="the official Python client's venv is missing: make install")
async def test_the_official_client_pays_100_requests_by_voucher_and_a_flush_moves_exactly_their_price(
    batch_settings: Settings, devnet: EvmDevnet, pool: asyncpg.Pool
) -> None:
    key = new_payer(devnet)
    payer = Account.from_key(key).address
    with running_gateway(batch_settings) as gateway:
        sent_before = relayer_nonce(devnet)
        paid = await asyncio.to_thread(pay, f"{gateway.url}{CAPITALS}?limit=3", key, devnet.network, REQUESTS)
        sent_during = relayer_nonce(devnet) - sent_before
    assert paid["statuses"] == [200] * REQUESTS, paid["last_body"]
    assert json.loads(paid["last_body"])["stream"] == "static.capitals"
    charged = [int(r["extra"]["chargedAmount"]) for r in paid["responses"]]
    assert charged == [PRICE] * REQUESTS
    cumulative = [int(r["extra"]["channelState"]["chargedCumulativeAmount"]) for r in paid["responses"]]
    assert cumulative == [PRICE * (i + 1) for i in range(REQUESTS)]
    assert sent_during <= 5, f"{sent_during} gateway transactions for {REQUESTS} paid requests"
    rows = await pool.fetch("SELECT state, amount_atomic FROM payments WHERE payer = $1", payer.lower())
    assert sorted({r["state"] for r in rows}) == ["accepted"] and len(rows) == REQUESTS
    window = (datetime(2000, 1, 1, tzinfo=UTC), datetime.now(UTC) + timedelta(minutes=1))
    [owed] = await ledger.reports.report(pool, "network", *window, payer=payer.lower())
    assert (owed.pending, owed.settled, owed.revenue_atomic) == (REQUESTS, 0, REQUESTS * PRICE)  # booked, not moved

    settler = batch_setup.build(batch_settings, pool, Services(pool=pool)).settler
    pay_to_before = usdc_balance(devnet, devnet.pay_to)
    report = await settler.flush()
    assert report.claims >= 1 and report.settled_atomic >= REQUESTS * PRICE
    assert usdc_balance(devnet, devnet.pay_to) - pay_to_before == report.settled_atomic
    rows = await pool.fetch("SELECT state FROM payments WHERE payer = $1", payer.lower())
    assert {r["state"] for r in rows} == {"settled"}
    [swept] = await ledger.reports.report(pool, "network", *window, payer=payer.lower())
    assert (swept.pending, swept.settled, swept.revenue_atomic) == (0, REQUESTS, REQUESTS * PRICE)
    assert (await ledger.verify.verify(pool)).ok


@pytest.mark.skipif(not CLIENT_PYTHON.exists(), reason="the official Python client's venv is missing: make install")
async def test_a_client_that_lost_its_channel_state_rebases_on_the_corrective_402(
    batch_settings: Settings, devnet: EvmDevnet, pool: asyncpg.Pool
) -> None:
    """Each run of the client is a new process with no channel state. Its second run signs a voucher below what
    the channel was charged; the corrective 402 carries the channel's state and our last voucher, and the
    official client re-bases on it and pays on: nothing charged twice, nothing skipped."""
    key = new_payer(devnet)
    with running_gateway(batch_settings) as gateway:
        url = f"{gateway.url}{CAPITALS}?limit=1"
        first = await asyncio.to_thread(pay, url, key, devnet.network, 3, devnet.rpc_url)
        second = await asyncio.to_thread(pay, url, key, devnet.network, 3, devnet.rpc_url)
        header = b64({"x402Version": 2, "accepted": {}, "payload": {}})  # any refusal: the route's own offers
        plain = unb64((await gateway.get(CAPITALS, headers={"PAYMENT-SIGNATURE": header})).headers["payment-required"])
    assert first["statuses"] == second["statuses"] == [200] * 3, second["last_body"]
    cumulative = [
        int(r["extra"]["channelState"]["chargedCumulativeAmount"]) for r in first["responses"] + second["responses"]
    ]
    assert cumulative == [PRICE * (i + 1) for i in range(6)]
    assert await accepted_for(pool, Account.from_key(key).address.lower()) == 6
    [batch] = [o for o in plain["accepts"] if o["scheme"] == "batch-settlement"]
    assert "channelState" not in batch["extra"]  # only a cumulative mismatch carries a channel's state


# ---- hostile vouchers, through the gateway ----


class Channel:
    """A payer and one channel opened through the gateway, vouchers sent as PAYMENT-SIGNATURE headers."""

    def __init__(self, gateway: Gateway, devnet: EvmDevnet, offer: dict[str, Any]) -> None:
        self.gateway, self.offer = gateway, offer
        self.payer = Payer(devnet, offer["payTo"])
        mint(devnet.rpc_url, devnet.asset, self.payer.address, 10 * PRICE * 1000)
        self.config = self.payer.config(
            receiverAuthorizer=offer["extra"]["receiverAuthorizer"], withdrawDelay=offer["extra"]["withdrawDelay"]
        )

    async def send(self, payload: dict[str, Any]) -> httpx.Response:
        header = b64({"x402Version": 2, "accepted": self.offer, "payload": payload})
        return await self.gateway.get(f"{CAPITALS}?limit=1", headers={"PAYMENT-SIGNATURE": header})

    async def open(self, deposit: int) -> None:
        answer = await self.send(self.payer.deposit_payload(self.config, deposit, PRICE))
        assert answer.status_code == 200, answer.text

    async def voucher(self, cumulative: int, **kw: Any) -> httpx.Response:
        return await self.send(self.payer.voucher_payload(self.config, cumulative, **kw))


def reason_of(answer: httpx.Response) -> str:
    assert answer.status_code == 402, answer.text
    assert "payment-response" not in answer.headers  # nothing served, nothing said to be charged
    return str(unb64(answer.headers["payment-required"])["error"])


async def accepted_for(pool: asyncpg.Pool, payer: str) -> int:
    return int(await pool.fetchval("SELECT count(*) FROM payments WHERE payer = $1 AND state = 'accepted'", payer))


async def test_hostile_vouchers_are_refused_with_a_reason_and_nothing_served(
    batch_settings: Settings, devnet: EvmDevnet, pool: asyncpg.Pool
) -> None:
    with running_gateway(batch_settings) as gateway:
        [offer] = [
            o
            for o in unb64((await gateway.get(CAPITALS)).headers["payment-required"])["accepts"]
            if o["scheme"] == "batch-settlement"
        ]
        channel = Channel(gateway, devnet, offer)
        await channel.open(3 * PRICE)  # the deposit and the first voucher (PRICE)
        payer = channel.payer.address.lower()
        replayed = reason_of(await channel.voucher(PRICE))
        lower = reason_of(await channel.voucher(PRICE // 2))
        jump = reason_of(await channel.voucher(3 * PRICE))
        forged = reason_of(await channel.voucher(2 * PRICE, key=STRANGER_KEY))
        other_receiver = await channel.send(
            channel.payer.voucher_payload({**channel.config, "receiver": Account.create().address}, 2 * PRICE)
        )
        assert (await channel.voucher(2 * PRICE)).status_code == 200
        assert (await channel.voucher(3 * PRICE)).status_code == 200
        above_deposit = reason_of(await channel.voucher(4 * PRICE))
    assert replayed.endswith("cumulative_amount_mismatch") and lower.endswith("cumulative_amount_mismatch")
    assert jump.endswith("cumulative_amount_mismatch")
    assert forged.endswith("voucher_signature"), forged
    assert other_receiver.status_code == 402 and reason_of(other_receiver).endswith("receiver_mismatch")
    assert above_deposit.endswith("cumulative_exceeds_balance"), above_deposit
    assert await accepted_for(pool, payer) == 3  # the deposit's voucher and the two good ones


async def test_a_payers_vouchers_count_against_its_rate_limit(
    batch_settings: Settings, devnet: EvmDevnet, pool: asyncpg.Pool
) -> None:
    """The deposit (a relayer transaction, counted in Redis at once) and the vouchers (counted in the worker) share
    the payer's limit: over it, 429 with Retry-After, nothing booked and nothing served."""
    limits = batch_settings.limits.model_copy(update={"payer": "3/hour"})
    with running_gateway(with_settings(batch_settings, limits=limits)) as gateway:
        [offer] = [
            o
            for o in unb64((await gateway.get(CAPITALS)).headers["payment-required"])["accepts"]
            if o["scheme"] == "batch-settlement"
        ]
        channel = Channel(gateway, devnet, offer)
        await channel.open(10 * PRICE)  # 1
        served = [(await channel.voucher(n * PRICE)).status_code for n in (2, 3)]  # 2, 3
        over = await channel.voucher(4 * PRICE)
    assert served == [200, 200]
    assert over.status_code == 429 and int(over.headers["retry-after"]) > 0, over.text
    assert over.json()["error"] == "rate_limited" and "payment-response" not in over.headers
    assert await accepted_for(pool, channel.payer.address.lower()) == 3


async def test_twenty_concurrent_vouchers_on_one_channel_are_served_once(
    batch_settings: Settings, devnet: EvmDevnet, pool: asyncpg.Pool
) -> None:
    """Across two gateways sharing the ledger: of 20 copies of the next voucher, one is accepted."""
    with running_gateway(batch_settings) as first, running_gateway(batch_settings) as second:
        [offer] = [
            o
            for o in unb64((await first.get(CAPITALS)).headers["payment-required"])["accepts"]
            if o["scheme"] == "batch-settlement"
        ]
        channel = Channel(first, devnet, offer)
        await channel.open(10 * PRICE)
        payload = channel.payer.voucher_payload(channel.config, 2 * PRICE)
        header = b64({"x402Version": 2, "accepted": offer, "payload": payload})
        answers = await asyncio.gather(
            *(
                (first, second)[i % 2].get(f"{CAPITALS}?limit=1", headers={"PAYMENT-SIGNATURE": header})
                for i in range(20)
            )
        )
        # then the payer's next vouchers alternate between the gateways: each one last saw the channel two
        # vouchers ago (its memory of the channel is stale), and each voucher is still served, once
        alternating = []
        for cumulative in range(3, 9):
            payload = channel.payer.voucher_payload(channel.config, cumulative * PRICE)
            header = b64({"x402Version": 2, "accepted": offer, "payload": payload})
            gateway = (first, second)[cumulative % 2]
            alternating.append(await gateway.get(f"{CAPITALS}?limit=1", headers={"PAYMENT-SIGNATURE": header}))
    assert sorted(a.status_code for a in answers).count(200) == 1, [a.status_code for a in answers]
    assert all(a.status_code in (200, 402) for a in answers)
    assert [a.status_code for a in alternating] == [200] * 6, [a.text for a in alternating]
    assert await accepted_for(pool, channel.payer.address.lower()) == 8
    charged = await pool.fetchval(
        "SELECT charged_atomic FROM batch_channels WHERE payer = $1", channel.payer.address.lower()
    )
    assert int(charged) == 8 * PRICE


# ---- a booked voucher whose answer never left ----


async def _undelivered(pool: asyncpg.Pool, payment_key: str) -> None:
    """As if the answer never reached the payer (a crash after booking, a client gone): the gate marks a sale
    delivered just after answering, so wait for that mark, then take it back."""
    voucher = "SELECT v.delivered_at IS NOT NULL FROM batch_vouchers v JOIN payments p ON p.id = v.payment_id"
    for _ in range(100):
        if await pool.fetchval(f"{voucher} WHERE p.payment_key = $1", payment_key):
            break
        await asyncio.sleep(0.05)
    await pool.execute(
        "UPDATE batch_vouchers v SET delivered_at = NULL FROM payments p WHERE p.id = v.payment_id"
        " AND p.payment_key = $1",
        payment_key,
    )


async def test_a_booked_voucher_never_delivered_is_served_again_once_and_never_charged_again(
    batch_settings: Settings, devnet: EvmDevnet, pool: asyncpg.Pool
) -> None:
    with running_gateway(batch_settings) as gateway:
        [offer] = [
            o
            for o in unb64((await gateway.get(CAPITALS)).headers["payment-required"])["accepts"]
            if o["scheme"] == "batch-settlement"
        ]
        channel = Channel(gateway, devnet, offer)
        deposit = channel.payer.deposit_payload(channel.config, 3 * PRICE, PRICE)
        assert (await channel.send(deposit)).status_code == 200
        payer = channel.payer.address.lower()
        held = usdc_balance(devnet, channel.payer.address)
        channel_id = channel.payer.channel_id(channel.config).lower()
        key = f"{offer['network']}:{channel_id}:{PRICE}"

        # the deposit's own request, sent again: served from the booked sale, no second deposit
        await _undelivered(pool, key)
        too_soon = await channel.send(deposit)  # its own request may still be answering: refused
        await asyncio.sleep(REDELIVER_AFTER_S)
        again = await channel.send(deposit)
        once_more = await channel.send(deposit)  # delivered now: refused as before

        # a voucher, sent again
        assert (await channel.voucher(2 * PRICE)).status_code == 200
        await _undelivered(pool, f"{offer['network']}:{channel_id}:{2 * PRICE}")
        await asyncio.sleep(REDELIVER_AFTER_S)
        forged = await channel.voucher(2 * PRICE, key=STRANGER_KEY)
        voucher_again = await channel.voucher(2 * PRICE)
        assert (await channel.voucher(3 * PRICE)).status_code == 200  # the payer goes on
    assert too_soon.status_code == 402 and "payment-response" not in too_soon.headers, too_soon.text
    assert again.status_code == 200 and json.loads(again.text)["stream"] == "static.capitals", again.text
    assert unb64(again.headers["payment-response"])["extra"]["channelState"]["chargedCumulativeAmount"] == str(PRICE)
    assert once_more.status_code == 402 and "payment-response" not in once_more.headers, once_more.text
    assert reason_of(forged).endswith("voucher_signature")
    assert voucher_again.status_code == 200 and "records" in voucher_again.json(), voucher_again.text
    assert usdc_balance(devnet, channel.payer.address) == held  # one deposit
    assert await accepted_for(pool, payer) == 3  # three vouchers booked, each once
    charged = await pool.fetchval("SELECT charged_atomic FROM batch_channels WHERE channel_id = $1", channel_id)
    assert int(charged) == 3 * PRICE
    assert (await ledger.verify.verify(pool)).ok


async def test_the_settler_closes_a_hash_written_ahead_that_never_reached_the_chain(
    batch_settings: Settings,
    fresh_pool: asyncpg.Pool,
) -> None:
    """A hash written ahead whose transaction never left (the process died before sending it) is closed as
    dropped once it is old enough; a young one may still be on its way and stays open. Resolved rows are final."""
    parts = batch_setup.build(batch_settings, fresh_pool, Services(pool=fresh_pool))
    network, old, young = parts.settler.network, "0x" + os.urandom(32).hex(), "0x" + os.urandom(32).hex()
    await fresh_pool.execute(
        "INSERT INTO batch_pending_tx (tx_hash, network, kind, rows, created_at)"
        " VALUES ($1, $2, 'claim', '{\"claims\": []}', now() - make_interval(secs => $3))",
        old,
        network,
        DROP_AFTER_S + 1,
    )
    await batch_recovery.write_ahead(fresh_pool, young, network, "settle", batch_recovery.sweep_rows(PAY_TO, PAY_TO))
    try:
        recovery = await parts.settler.recover()
    finally:
        await parts.rpc.close()
    assert recovery.recorded == () and not recovery.sweep_in_flight
    outcomes = {r["tx_hash"]: r["outcome"] for r in await fresh_pool.fetch("SELECT * FROM batch_pending_tx")}
    assert outcomes == {old: "dropped", young: None}
    with pytest.raises(asyncpg.PostgresError, match="only its resolution"):
        await fresh_pool.execute("UPDATE batch_pending_tx SET outcome = 'recorded' WHERE tx_hash = $1", old)
    with pytest.raises(asyncpg.PostgresError):
        await fresh_pool.execute("DELETE FROM batch_pending_tx WHERE tx_hash = $1", young)
    with pytest.raises(ledger.LedgerError):
        await batch_recovery.write_ahead(fresh_pool, young, network, "refund", {})
