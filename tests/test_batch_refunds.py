"""A batch-settlement payer's cooperative refund through the gateway (issue 15, item 4), judged by the official
clients: the Python SDK (x402 2.25.0, tests/clients/refund_batch.py) and the TypeScript one (@x402/evm 2.27.0,
tests/clients/refund_batch.mjs), unmodified. What they did not spend comes back in one transaction that also claims
what they were charged; the ledger records the claim and the refund, no revenue moves, and the books verify. Raw
payloads check the refusals, a refund racing a voucher on its channel, and a refund whose answer was lost.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import msgspec
import pytest
from eth_account import Account

import ledger
from app.runtime.embedded import devnet_settings
from app.runtime.settings import BatchSettings, Settings
from app.usecases import batch_setup
from app.usecases.services import Services
from ledger import batch_recovery, refunds
from payments import PaymentRequirements
from payments.devnet import batch as devnet_batch
from payments.devnet.anvil import Anvil
from payments.devnet.batch import finalize_withdraw_calldata, initiate_withdraw_calldata
from payments.devnet.evm import EvmDevnet, Rpc, mint, provision
from payments.evm.batch import BatchChainReader, CheckedVoucher, ClaimRow, check_voucher
from payments.evm.batch.settlement import RefundPlan
from payments.evm.rpc import EvmRpc

from .batch_payer import Payer
from .chain import b64, new_payer, unb64, usdc_balance
from .conftest import Gateway, running_gateway, with_settings
from .ledger_helpers import fresh_database
from .services import Database
from .test_mcp import connected

ROOT = Path(__file__).resolve().parents[1]
CLIENT_PYTHON = ROOT / ".venv-x402-svm" / "bin" / "python"
TS_PACKAGE = ROOT / "node_modules" / "@x402" / "evm" / "package.json"
CAPITALS = "/v1/streams/static.capitals"
PRICE = 1000
DEPOSIT = 1_000_000  # the gateway's minDeposit: what the official clients deposit first

needs_python_client = pytest.mark.skipif(not CLIENT_PYTHON.exists(), reason="the official Python client's venv")
needs_ts_client = pytest.mark.skipif(shutil.which("node") is None or not TS_PACKAGE.exists(), reason="@x402/evm")


@pytest.fixture(scope="module")
def batch_settings(settings: Settings) -> Settings:
    timers = BatchSettings(claim_interval_s=3600, settle_interval_s=3600)  # the tests flush when they mean to
    return with_settings(settings, schemes=("exact", "batch-settlement"), batch=timers)


@pytest.fixture
async def reader(devnet: EvmDevnet) -> AsyncIterator[BatchChainReader]:
    rpc = EvmRpc(devnet.rpc_url)
    yield BatchChainReader(devnet.network, rpc)
    await rpc.close()


def refund_with_python(url: str, key: str, network: str, count: int, refund: str, **env: str) -> dict[str, Any]:
    environment = {**os.environ, "URL": url, "PAYER_KEY": key, "NETWORK": network, "COUNT": str(count)}
    environment.update(REFUND=refund, **env)
    command = [str(CLIENT_PYTHON), "tests/clients/refund_batch.py"]
    done = subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    answer: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return answer


def refund_with_typescript(url: str, key: str, devnet: EvmDevnet, count: int, refund: str) -> dict[str, Any]:
    environment = {**os.environ, "URL": url, "PAYER_KEY": key, "NETWORK": devnet.network, "COUNT": str(count)}
    environment.update(REFUND=refund, RPC_URL=devnet.rpc_url)
    command = ["node", "tests/clients/refund_batch.mjs"]
    done = subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    answer: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return answer


async def channel_of(pool: asyncpg.Pool, payer: str) -> asyncpg.Record:
    row = await pool.fetchrow("SELECT * FROM batch_channels WHERE payer = $1", payer.lower())
    assert row is not None
    return row


async def states_of(pool: asyncpg.Pool, payer: str) -> dict[str, int]:
    rows = await pool.fetch("SELECT state, count(*) AS n FROM payments WHERE payer = $1 GROUP BY state", payer.lower())
    return {r["state"]: int(r["n"]) for r in rows}


async def revenue_of(pool: asyncpg.Pool, payer: str) -> int:
    total = await pool.fetchval(
        "SELECT -COALESCE(sum(p.amount_atomic), 0) FROM journal_postings p JOIN journal_entries e ON e.id = p.entry_id"
        " JOIN payments pay ON pay.id = e.payment_id WHERE pay.payer = $1 AND p.account LIKE 'revenue:%'",
        payer.lower(),
    )
    return int(total)


async def flush(settings: Settings, pool: asyncpg.Pool) -> Any:
    parts = batch_setup.build(settings, pool, Services(pool=pool))
    try:
        return await parts.settler.flush()
    finally:
        await parts.rpc.close()


# ---- the official clients ----


@needs_python_client
async def test_the_official_python_client_gets_back_what_it_did_not_spend(
    batch_settings: Settings, devnet: EvmDevnet, pool: asyncpg.Pool, reader: BatchChainReader
) -> None:
    key = new_payer(devnet)
    payer = Account.from_key(key).address
    held = usdc_balance(devnet, payer)
    with running_gateway(batch_settings) as gateway:
        url = f"{gateway.url}{CAPITALS}?limit=1"
        done = await asyncio.to_thread(refund_with_python, url, key, devnet.network, 5, "all")
    assert done["statuses"] == [200] * 5 and done["error"] is None, done
    refund = done["refund"]
    spent = 5 * PRICE
    assert refund["success"] is True and refund["transaction"].startswith("0x") and refund["network"] == devnet.network
    assert refund["amount"] == str(DEPOSIT - spent)
    state = refund["extra"]["channelState"]
    assert (state["balance"], state["totalClaimed"], state["refundNonce"]) == (str(spent), str(spent), "1")
    assert state["chargedCumulativeAmount"] == str(spent) and "chargedAmount" not in refund["extra"]
    assert done["channel_after"] == {}  # a full refund: the client dropped its channel record
    assert usdc_balance(devnet, payer) == held - spent  # the deposit back, less what it spent

    # on chain: the charge claimed in the same transaction, the rest refunded
    book = await channel_of(pool, payer)
    chain = await reader.read_channel(book["channel_id"])
    assert (chain.balance, chain.total_claimed, chain.refund_nonce) == (spent, spent, 1)
    # the ledger: the mirror, the claim (its vouchers claimed on chain by the refund), the refund, no revenue moved
    assert (book["balance_atomic"], book["claimed_atomic"], book["charged_atomic"], book["refund_nonce"]) == (
        spent,
        spent,
        spent,
        1,
    )
    assert await states_of(pool, payer) == {"claimed_onchain": 5}
    hashes = await pool.fetch(
        "SELECT DISTINCT tx_hash FROM payments WHERE payer = $1 AND state = 'claimed_onchain'", payer.lower()
    )
    assert [r["tx_hash"] for r in hashes] == [refund["transaction"].lower()]
    [recorded] = await refunds.channel_refunds(pool, book["channel_id"])
    assert (recorded.outcome, recorded.refunded_atomic, recorded.claim_atomic, recorded.balance_after_atomic) == (
        "refunded",
        DEPOSIT - spent,
        spent,
        spent,
    )
    pending = await pool.fetchval("SELECT outcome FROM batch_pending_tx WHERE tx_hash = $1", recorded.tx_hash)
    assert pending == "recorded"  # its claim part, written ahead for the settler, was recorded here
    assert await revenue_of(pool, payer) == spent
    assert (await ledger.verify.verify(pool)).ok

    # the settler has nothing left to claim on that channel; its sweep moves exactly what was spent
    pay_to = usdc_balance(devnet, devnet.pay_to)
    report = await flush(batch_settings, pool)
    assert report.settled_atomic >= spent
    assert usdc_balance(devnet, devnet.pay_to) - pay_to == report.settled_atomic
    assert await states_of(pool, payer) == {"settled": 5}
    assert (await ledger.verify.verify(pool)).ok


@needs_python_client
async def test_a_partial_refund_leaves_the_channel_paying(
    batch_settings: Settings, devnet: EvmDevnet, pool: asyncpg.Pool, reader: BatchChainReader
) -> None:
    key = new_payer(devnet)
    payer = Account.from_key(key).address
    with running_gateway(batch_settings) as gateway:
        url = f"{gateway.url}{CAPITALS}?limit=1"
        done = await asyncio.to_thread(refund_with_python, url, key, devnet.network, 3, "400000", AFTER="2")
    assert done["statuses"] == [200] * 3 and done["error"] is None and done["after"] == [200, 200], done
    assert done["refund"]["amount"] == "400000"
    [record] = done["channel_after"].values()  # the client kept its channel, less what came back
    assert (record["balance"], record["chargedCumulativeAmount"]) == (str(DEPOSIT - 400_000), str(3 * PRICE))
    book = await channel_of(pool, payer)
    chain = await reader.read_channel(book["channel_id"])
    assert (chain.balance, chain.total_claimed, chain.refund_nonce) == (DEPOSIT - 400_000, 3 * PRICE, 1)
    assert (book["balance_atomic"], book["charged_atomic"], book["claimed_atomic"]) == (
        DEPOSIT - 400_000,
        5 * PRICE,
        3 * PRICE,
    )
    assert await states_of(pool, payer) == {"claimed_onchain": 3, "accepted": 2}
    assert (await ledger.verify.verify(pool)).ok


@needs_python_client
async def test_a_client_without_its_channel_state_rebases_on_the_corrective_402_and_refunds(
    batch_settings: Settings, devnet: EvmDevnet, pool: asyncpg.Pool
) -> None:
    """A new client process knows only the chain (nothing claimed yet: it signs a refund at 0). The corrective 402
    carries what the channel was charged and our last voucher; the client re-bases and its refund goes through."""
    key = new_payer(devnet)
    payer = Account.from_key(key).address
    with running_gateway(batch_settings) as gateway:
        url = f"{gateway.url}{CAPITALS}?limit=1"
        paid = await asyncio.to_thread(refund_with_python, url, key, devnet.network, 4, "1")  # pay 4, refund 1 unit
        fresh = await asyncio.to_thread(refund_with_python, url, key, devnet.network, 0, "all", RPC_URL=devnet.rpc_url)
    assert paid["error"] is None and paid["refund"]["amount"] == "1", paid
    assert fresh["error"] is None, fresh
    assert fresh["refund"]["amount"] == str(DEPOSIT - 1 - 4 * PRICE)
    assert fresh["refund"]["extra"]["channelState"]["chargedCumulativeAmount"] == str(4 * PRICE)
    book = await channel_of(pool, payer)
    assert (book["balance_atomic"], book["claimed_atomic"], book["refund_nonce"]) == (4 * PRICE, 4 * PRICE, 2)
    assert (await ledger.verify.verify(pool)).ok


@needs_ts_client
async def test_the_official_typescript_client_gets_back_what_it_did_not_spend(
    batch_settings: Settings, devnet: EvmDevnet, pool: asyncpg.Pool, reader: BatchChainReader
) -> None:
    key = new_payer(devnet)
    payer = Account.from_key(key).address
    held = usdc_balance(devnet, payer)
    with running_gateway(batch_settings) as gateway:
        url = f"{gateway.url}{CAPITALS}?limit=1"
        done = await asyncio.to_thread(refund_with_typescript, url, key, devnet, 4, "all")
    assert done["statuses"] == [200] * 4 and done["error"] is None, done
    assert done["refund"]["success"] is True and done["refund"]["amount"] == str(DEPOSIT - 4 * PRICE)
    assert usdc_balance(devnet, payer) == held - 4 * PRICE
    book = await channel_of(pool, payer)
    chain = await reader.read_channel(book["channel_id"])
    assert (
        (chain.balance, chain.total_claimed)
        == (book["balance_atomic"], book["claimed_atomic"])
        == (
            4 * PRICE,
            4 * PRICE,
        )
    )
    assert await states_of(pool, payer) == {"claimed_onchain": 4}
    assert (await ledger.verify.verify(pool)).ok


# ---- raw payloads ----


class Channel:
    """A payer's channel opened through the gateway; vouchers and refunds sent as PAYMENT-SIGNATURE headers."""

    def __init__(self, gateway: Gateway, devnet: EvmDevnet, offer: dict[str, Any]) -> None:
        self.gateway, self.offer = gateway, offer
        self.payer = Payer(devnet, offer["payTo"])
        mint(devnet.rpc_url, devnet.asset, self.payer.address, 10 * DEPOSIT)
        extra = offer["extra"]
        self.config = self.payer.config(
            receiverAuthorizer=extra["receiverAuthorizer"], withdrawDelay=extra["withdrawDelay"]
        )
        self.id = self.payer.channel_id(self.config).lower()
        self.charged = 0

    @classmethod
    async def opened(cls, gateway: Gateway, devnet: EvmDevnet, deposit: int = DEPOSIT) -> Channel:
        channel = cls(gateway, devnet, await batch_offer(gateway))
        answer = await channel.send(channel.payer.deposit_payload(channel.config, deposit, PRICE))
        assert answer.status_code == 200, answer.text
        channel.charged = PRICE
        return channel

    def header(self, payload: dict[str, Any]) -> dict[str, str]:
        return {"PAYMENT-SIGNATURE": b64({"x402Version": 2, "accepted": self.offer, "payload": payload})}

    async def send(self, payload: dict[str, Any], gateway: Gateway | None = None) -> httpx.Response:
        return await (gateway or self.gateway).get(f"{CAPITALS}?limit=1", headers=self.header(payload))

    async def pay(self) -> httpx.Response:
        answer = await self.send(self.payer.voucher_payload(self.config, self.charged + PRICE))
        if answer.status_code == 200:
            self.charged += PRICE
        return answer

    def refund_payload(self, cumulative: int | None = None, amount: int | None = None) -> dict[str, Any]:
        payload = {**self.payer.voucher_payload(self.config, self.charged if cumulative is None else cumulative)}
        payload["type"] = "refund"
        if amount is not None:
            payload["amount"] = str(amount)
        return payload


async def batch_offer(gateway: Gateway) -> dict[str, Any]:
    accepts = unb64((await gateway.get(CAPITALS)).headers["payment-required"])["accepts"]
    [offer] = [o for o in accepts if o["scheme"] == "batch-settlement"]
    return offer


def refused(answer: httpx.Response) -> dict[str, Any]:
    assert answer.status_code == 402, answer.text
    assert "payment-response" not in answer.headers
    return unb64(answer.headers["payment-required"])


async def test_refunds_outside_the_rules_are_refused_with_the_reasons_the_clients_know(
    batch_settings: Settings, devnet: EvmDevnet, pool: asyncpg.Pool
) -> None:
    with running_gateway(batch_settings) as gateway:
        channel = await Channel.opened(gateway, devnet, deposit=10 * PRICE)
        assert (await channel.pay()).status_code == 200  # charged 2 prices
        too_much = refused(await channel.send(channel.refund_payload(amount=8 * PRICE + 1)))
        stale = refused(await channel.send(channel.refund_payload(cumulative=PRICE)))
        partial = await channel.send(channel.refund_payload(amount=3 * PRICE))
        rest = await channel.send(channel.refund_payload())
        nothing_left = refused(await channel.send(channel.refund_payload()))
        stranger = Channel(gateway, devnet, channel.offer)  # a channel never funded
        unknown = refused(await stranger.send(stranger.refund_payload(cumulative=0)))
    assert too_much["error"] == "invalid_batch_settlement_evm_refund_amount_invalid"
    assert stale["error"] == "invalid_batch_settlement_evm_cumulative_amount_mismatch"
    [corrective] = [o for o in stale["accepts"] if o["scheme"] == "batch-settlement"]
    assert corrective["extra"]["channelState"]["chargedCumulativeAmount"] == str(2 * PRICE)
    assert corrective["extra"]["voucherState"]["signedMaxClaimable"] == str(2 * PRICE)
    assert partial.status_code == 200 and partial.json()["refunded"] == str(3 * PRICE), partial.text
    receipt = unb64(partial.headers["payment-response"])
    assert (receipt["success"], receipt["amount"]) == (True, str(3 * PRICE))
    assert "records" not in partial.json()  # no handler ran: no data for a refund
    assert rest.status_code == 200 and rest.json()["refunded"] == str(5 * PRICE), rest.text
    assert nothing_left["error"] == "invalid_batch_settlement_evm_refund_no_balance"
    assert unknown["error"] == "invalid_batch_settlement_evm_channel_not_found"
    book = await pool.fetchrow("SELECT * FROM batch_channels WHERE channel_id = $1", channel.id)
    assert (book["balance_atomic"], book["claimed_atomic"], book["refund_nonce"]) == (2 * PRICE, 2 * PRICE, 2)
    assert [r.outcome for r in await refunds.channel_refunds(pool, channel.id)] == ["refunded", "refunded"]
    assert (await ledger.verify.verify(pool)).ok


async def test_a_refund_racing_a_voucher_on_its_channel_never_lets_both_take_the_same_money(
    batch_settings: Settings, devnet: EvmDevnet, pool: asyncpg.Pool
) -> None:
    """Across two gateways: a full refund and the channel's next voucher sent at once. One of them wins; the other
    is refused (the voucher: the balance is gone; the refund: the channel was charged once more), never both."""
    outcomes = []
    with running_gateway(batch_settings) as first, running_gateway(batch_settings) as second:
        for _ in range(4):
            channel = await Channel.opened(first, devnet, deposit=5 * PRICE)
            voucher = channel.send(channel.payer.voucher_payload(channel.config, 2 * PRICE), second)
            refund, paid = await asyncio.gather(channel.send(channel.refund_payload()), voucher)
            outcomes.append((refund.status_code, paid.status_code))
            book = await pool.fetchrow("SELECT * FROM batch_channels WHERE channel_id = $1", channel.id)
            if refund.status_code == 200:
                assert paid.status_code == 402 and refund.json()["refunded"] == str(4 * PRICE)
                assert book["charged_atomic"] == PRICE and book["balance_atomic"] == PRICE
            else:
                assert paid.status_code == 200 and refused(refund)["error"].endswith("cumulative_amount_mismatch")
                assert book["charged_atomic"] == 2 * PRICE and book["balance_atomic"] == 5 * PRICE
    assert all(sorted(o) == [200, 402] for o in outcomes), outcomes
    assert (await ledger.verify.verify(pool)).ok


async def test_a_refund_whose_answer_was_lost_is_answered_from_its_receipt(
    batch_settings: Settings, devnet: EvmDevnet, pool: asyncpg.Pool
) -> None:
    """The refund went out and the process died before recording it (its hash written ahead, nothing else). The
    same refund sent again reads that receipt: answered with it, recorded once, and no second refund is sent."""
    with running_gateway(batch_settings) as gateway:
        channel = await Channel.opened(gateway, devnet, deposit=10 * PRICE)
        assert (await channel.pay()).status_code == 200
        payload = channel.refund_payload()
        parts = batch_setup.build(batch_settings, pool, Services(pool=pool))
        try:
            checked = check_voucher(payload, msgspec.convert(channel.offer, type=PaymentRequirements))
            assert isinstance(checked, CheckedVoucher), checked
            snapshot = await parts.checkout.chain.read_channel(channel.id)
            plan = parts.checkout.chain.plan_refund(
                ClaimRow(checked.config, 2 * PRICE, checked.signature, 2 * PRICE), None, snapshot
            )
            assert isinstance(plan, RefundPlan)
            sent = await parts.checkout.chain.send_refund(plan, on_broadcast=_written_ahead(pool, channel, plan))
            assert sent.success, sent
        finally:
            await parts.rpc.close()
        [open_refund] = await refunds.open_refunds(pool, channel.id)
        held = usdc_balance(devnet, channel.payer.address)
        again = await channel.send(payload)
    assert again.status_code == 200, again.text
    assert (again.json()["transaction"], again.json()["refunded"]) == (open_refund.tx_hash, str(8 * PRICE))
    assert usdc_balance(devnet, channel.payer.address) == held  # nothing sent twice
    [recorded] = await refunds.channel_refunds(pool, channel.id)
    assert (recorded.outcome, recorded.refunded_atomic) == ("refunded", 8 * PRICE)
    book = await pool.fetchrow("SELECT * FROM batch_channels WHERE channel_id = $1", channel.id)
    assert (book["balance_atomic"], book["claimed_atomic"]) == (2 * PRICE, 2 * PRICE)
    assert (await ledger.verify.verify(pool)).ok


def _written_ahead(pool: asyncpg.Pool, channel: Channel, plan: RefundPlan) -> Any:
    async def ahead(tx_hash: str) -> None:
        await refunds.write_ahead(
            pool,
            tx_hash,
            channel_id=channel.id,
            network=channel.offer["network"],
            payer=channel.payer.address,
            requested_atomic=None,
            claim_atomic=plan.row.total_claimed if plan.claims else None,
            refund_nonce=plan.nonce,
        )
        claims = batch_recovery.claim_rows([(channel.id, plan.row.total_claimed)])
        await batch_recovery.write_ahead(pool, tx_hash, channel.offer["network"], "claim", claims)

    return ahead


# ---- the payer's timed withdrawal (on a private anvil and a ledger of its own: it moves the chain's clock) ----


@pytest.fixture
def private_devnet() -> Iterator[EvmDevnet]:
    anvil = Anvil(84532).start()
    try:
        devnet = provision(anvil.rpc_url, 84532)
        devnet_batch.install_batch_settlement(anvil.rpc_url)
        yield devnet
    finally:
        anvil.stop()


async def test_a_timed_withdrawal_is_noticed_claimed_before_its_delay_and_mirrored_down_after(
    batch_settings: Settings, private_devnet: EvmDevnet, database: Database
) -> None:
    devnet = private_devnet
    rpc = Rpc(devnet.rpc_url)
    async with fresh_database(database) as fresh:
        pool = fresh.pool
        settings = with_settings(batch_settings, database_url=fresh.url, evm=devnet_settings(devnet))
        parts = batch_setup.build(settings, pool, Services(pool=pool))
        try:
            with running_gateway(settings) as gateway:
                channel = await Channel.opened(gateway, devnet, deposit=10 * PRICE)
                assert (await channel.pay()).status_code == 200 and (await channel.pay()).status_code == 200
                payer = channel.payer.address
                rpc("anvil_setBalance", payer, hex(10**18))  # the payer sends its own withdrawal: it needs gas
                rpc("anvil_impersonateAccount", payer)
                c = channel.config
                config = devnet_batch.ChannelConfig(
                    c["payer"], c["payerAuthorizer"], c["receiver"], c["receiverAuthorizer"], c["token"],
                    c["withdrawDelay"], bytes.fromhex(c["salt"][2:]),
                )  # fmt: skip
                rpc.send(payer, devnet_batch.BATCH_SETTLEMENT_ADDRESS, initiate_withdraw_calldata(config, 8 * PRICE))

                # the settler's watch notices it on an owed channel: mirrored, and due for a claim now
                assert await parts.settler.withdrawal_due()
                book = await pool.fetchrow("SELECT * FROM batch_channels WHERE channel_id = $1", channel.id)
                assert (book["withdrawal_amount_atomic"], book["withdraw_requested_at"] > 0) == (8 * PRICE, True)
                # a voucher beyond what the withdrawal leaves (10 - 8 prices; 3 are charged already) is refused
                beyond = refused(await channel.pay())
                assert beyond["error"] == "invalid_batch_settlement_evm_cumulative_exceeds_balance"
                report = await parts.settler.flush()  # claimed before the delay ends, and swept
                assert report.claimed_atomic == 3 * PRICE and report.settled_atomic == 3 * PRICE

                rpc("evm_increaseTime", hex(900))
                rpc("evm_mine")
                held = usdc_balance(devnet, payer)
                rpc.send(payer, devnet_batch.BATCH_SETTLEMENT_ADDRESS, finalize_withdraw_calldata(config))
                assert usdc_balance(devnet, payer) == held + 7 * PRICE  # what was left once our claim landed
                # the next voucher finds the mirror stale, reads the chain: the balance is mirrored down
                assert refused(await channel.pay())["error"].endswith("cumulative_exceeds_balance")
                book = await pool.fetchrow("SELECT * FROM batch_channels WHERE channel_id = $1", channel.id)
        finally:
            await parts.rpc.close()
            rpc.close()
        assert (book["balance_atomic"], book["claimed_atomic"], book["withdraw_requested_at"]) == (
            3 * PRICE,
            3 * PRICE,
            0,
        )
        assert usdc_balance(devnet, devnet.pay_to) == 3 * PRICE
        assert (await ledger.verify.verify(pool)).ok


async def test_a_refund_over_mcp_answers_its_receipt_and_no_data(
    batch_settings: Settings, devnet: EvmDevnet, pool: asyncpg.Pool
) -> None:
    with running_gateway(batch_settings) as gateway:
        channel = await Channel.opened(gateway, devnet, deposit=5 * PRICE)
        async with connected(gateway) as client:
            unpaid = await client.call_tool("get_stream", {"id": "static.capitals"})
            [offer] = [o for o in unpaid.structured_content["accepts"] if o["scheme"] == "batch-settlement"]
            paid = {"x402Version": 2, "accepted": offer, "payload": channel.refund_payload()}
            done = await client.call_tool("get_stream", {"id": "static.capitals"}, meta={"x402/payment": paid})
    assert not done.is_error, done
    receipt = done.meta["x402/payment-response"]
    assert (receipt["success"], receipt["amount"]) == (True, str(4 * PRICE))
    assert done.structured_content["refunded"] == str(4 * PRICE) and "records" not in done.structured_content
    book = await pool.fetchrow("SELECT * FROM batch_channels WHERE channel_id = $1", channel.id)
    assert (book["balance_atomic"], book["claimed_atomic"]) == (PRICE, PRICE)
    assert (await ledger.verify.verify(pool)).ok
