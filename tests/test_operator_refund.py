"""The operator's refund of a sale (issue 15, item 4): `worldgate ledger refund` and the admin API.

An `exact` sale settled is reversed and owed back to its payer; a voucher sale not yet claimed is never collected
(its channel's claim is lower, the payer keeps that money in its channel and gets it back with its cooperative
refund); one claimed on chain is owed back like an `exact` one. Each sale is refunded once, the books verify, and
a refund of a voucher sale waits for the settler (its claims cannot take money the ledger says was refunded).
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
from contextlib import redirect_stderr, redirect_stdout
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from eth_account import Account

import ledger
from app.cli.operator import main
from app.runtime.settings import BatchSettings, Settings
from app.usecases import batch_setup
from app.usecases.sale_refund import refund_sale
from app.usecases.services import Services
from ledger.refunds import RefundRefused, SaleRefund
from ledger.sql import queries
from payments.devnet.evm import EvmDevnet
from payments.evm.batch import BatchChainReader

from .chain import new_payer, pay_for, usdc_balance
from .conftest import Gateway, running_gateway, with_settings
from .ledger_helpers import fresh_database, record, settle_new
from .services import Database
from .test_admin import token

ROOT = Path(__file__).resolve().parents[1]
CLIENT_PYTHON = ROOT / ".venv-x402-svm" / "bin" / "python"
CAPITALS = "/v1/streams/static.capitals"
PRICE = 1000
DEPOSIT = 1_000_000


@pytest.fixture(scope="module")
def batch_settings(settings: Settings) -> Settings:
    timers = BatchSettings(claim_interval_s=3600, settle_interval_s=3600)  # the tests flush when they mean to
    return with_settings(settings, schemes=("exact", "batch-settlement"), batch=timers)


def cli(database: Database, *argv: str) -> tuple[int, str, str]:
    """`worldgate <argv>` in this process (its own event loop, in a thread), with the suite's database."""
    out, err = io.StringIO(), io.StringIO()
    os.environ["DATABASE_URL"] = database.url
    try:
        with redirect_stdout(out), redirect_stderr(err):
            code = main(list(argv))
    finally:
        os.environ.pop("DATABASE_URL", None)
    return code, out.getvalue(), err.getvalue()


async def admin_post(gateway: Gateway, path: str, body: Any, bearer: str | None = None) -> httpx.Response:
    headers = {} if bearer == "" else {"authorization": f"Bearer {bearer or token()}"}
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as client:
        return await client.post(path, json=body, headers=headers)


async def balance(pool: asyncpg.Pool, account: str) -> int:
    value = await pool.fetchval("SELECT sum(balance_atomic) FROM account_balances WHERE account = $1", account)
    return int(value or 0)


def pay_by_voucher(url: str, key: str, network: str, count: int) -> dict[str, Any]:
    env = {**os.environ, "URL": url, "PAYER_KEY": key, "NETWORK": network, "COUNT": str(count)}
    done = subprocess.run(
        [str(CLIENT_PYTHON), "tests/clients/pay_batch.py"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    answer: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return answer


def refund_by_client(url: str, key: str, devnet: EvmDevnet) -> dict[str, Any]:
    env = {**os.environ, "URL": url, "PAYER_KEY": key, "NETWORK": devnet.network, "COUNT": "0", "REFUND": "all"}
    env["RPC_URL"] = devnet.rpc_url  # a new process: it reads the chain, then re-bases on our corrective 402
    command = [str(CLIENT_PYTHON), "tests/clients/refund_batch.py"]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    answer: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return answer


async def test_an_exact_sale_refunded_is_owed_to_its_payer_once(
    gateway: Gateway, devnet: EvmDevnet, pool: asyncpg.Pool, database: Database
) -> None:
    key = new_payer(devnet)
    payer = Account.from_key(key).address.lower()
    offer = await gateway.offer(CAPITALS)
    paid = await gateway.get(f"{CAPITALS}?limit=1", headers={"PAYMENT-SIGNATURE": pay_for(key, devnet, offer)})
    assert paid.status_code == 200, paid.text
    payment_id = await pool.fetchval("SELECT id FROM payments WHERE payer = $1 AND state = 'settled'", payer)
    price = int(offer["amount"])

    code, out, _ = await asyncio.to_thread(
        cli,
        database,
        "ledger",
        "refund",
        str(payment_id),
        "--reason",
        "stale answer",
        "--by",
        "ops@test",
        "--format",
        "json",
    )
    assert code == 0, out
    refund = json.loads(out)
    owed = f"payable:refunds:{devnet.network}:{payer}"
    assert (refund["kind"], refund["amount_atomic"], refund["account"], refund["actor"]) == (
        "payable",
        price,
        owed,
        "ops@test",
    )
    assert await pool.fetchval("SELECT state FROM payments WHERE id = $1", payment_id) == "settled"  # the money moved
    assert await balance(pool, owed) == -price  # owed to the payer, until the operator sends it
    entries = await pool.fetch(
        "SELECT kind, reverses FROM journal_entries WHERE payment_id = $1 ORDER BY id", payment_id
    )
    assert [e["kind"] for e in entries] == ["settlement", "reversal"]
    window = (datetime(2000, 1, 1, tzinfo=UTC), datetime.now(UTC) + timedelta(minutes=1))
    summary = await ledger.reports.summary(pool, *window, payer=payer)
    assert (summary.refunded, summary.refunded_atomic, summary.revenue_atomic) == (1, price, 0)

    again, _, err = await asyncio.to_thread(cli, database, "ledger", "refund", str(payment_id), "--reason", "twice")
    assert again == 1 and "already_refunded" in err
    listed, out, _ = await asyncio.to_thread(
        cli, database, "ledger", "refunds", "--payment", str(payment_id), "--format", "json"
    )
    assert listed == 0 and [r["reason"] for r in json.loads(out)] == ["stale answer"]
    assert (await ledger.verify.verify(pool)).ok


@pytest.mark.skipif(not CLIENT_PYTHON.exists(), reason="the official Python client's venv is missing: make install")
async def test_a_voucher_sale_refunded_before_its_claim_is_never_claimed_and_the_payer_keeps_it(
    batch_settings: Settings, devnet: EvmDevnet, pool: asyncpg.Pool
) -> None:
    key = new_payer(devnet)
    payer = Account.from_key(key).address.lower()
    with running_gateway(batch_settings) as gateway:
        url = f"{gateway.url}{CAPITALS}?limit=1"
        paid = await asyncio.to_thread(pay_by_voucher, url, key, devnet.network, 5)
        assert paid["statuses"] == [200] * 5
        ids = [r["id"] for r in await pool.fetch("SELECT id FROM payments WHERE payer = $1 ORDER BY id", payer)]

        refunded = await admin_post(gateway, f"/admin/api/payments/{ids[2]}/refund", {"reason": "upstream was down"})
        assert refunded.status_code == 201, refunded.text
        assert (refunded.json()["kind"], refunded.json()["actor"]) == ("voucher_unclaimed", "ops@test")
        twice = await admin_post(gateway, f"/admin/api/payments/{ids[2]}/refund", {"reason": "again"})
        unknown = await admin_post(gateway, "/admin/api/payments/999999999/refund", {"reason": "?"})
        no_reason = await admin_post(gateway, f"/admin/api/payments/{ids[0]}/refund", {})
        no_token = await admin_post(gateway, f"/admin/api/payments/{ids[0]}/refund", {"reason": "x"}, bearer="")
        assert (twice.status_code, twice.json()["error"]) == (409, "already_refunded")
        assert (unknown.status_code, no_reason.status_code, no_token.status_code) == (404, 400, 401)

        states = {
            r["id"]: r["state"] for r in await pool.fetch("SELECT id, state FROM payments WHERE payer = $1", payer)
        }
        assert states[ids[2]] == "refunded" and sum(s == "accepted" for s in states.values()) == 4
        book = await pool.fetchrow("SELECT * FROM batch_channels WHERE payer = $1", payer)
        assert (book["charged_atomic"], book["refunded_atomic"], book["unsettled_atomic"]) == (
            5 * PRICE,
            PRICE,
            4 * PRICE,
        )
        [status] = [c for c in await ledger.channels.batch_status(pool) if c.payer == payer]
        assert (status.charged_atomic, status.owed_atomic) == (5 * PRICE, 4 * PRICE)  # owed: what a claim will take
        assert (await ledger.verify.verify(pool)).ok

        # the settler claims charged - refunded: the four sales left, each claimed and swept once
        pay_to = usdc_balance(devnet, devnet.pay_to)
        parts = batch_setup.build(batch_settings, pool, Services(pool=pool))
        try:
            report = await parts.settler.flush()
            chain = await BatchChainReader(devnet.network, parts.rpc).read_channel(book["channel_id"])
        finally:
            await parts.rpc.close()
        assert (chain.balance, chain.total_claimed) == (DEPOSIT, 4 * PRICE)  # the refunded price stays the payer's
        assert usdc_balance(devnet, devnet.pay_to) - pay_to == report.settled_atomic
        states = {
            r["id"]: r["state"] for r in await pool.fetch("SELECT id, state FROM payments WHERE payer = $1", payer)
        }
        assert [states[i] for i in ids] == ["settled", "settled", "refunded", "settled", "settled"]
        assert (await ledger.verify.verify(pool)).ok

        # a sale already swept: its money is ours, so it is owed back
        swept = await admin_post(gateway, f"/admin/api/payments/{ids[4]}/refund", {"reason": "duplicate request"})
        assert swept.status_code == 201 and swept.json()["kind"] == "payable", swept.text
        listed = await gateway.get("/admin/api/refunds?limit=5", headers={"authorization": f"Bearer {token()}"})
        assert [r["payment_id"] for r in listed.json()["refunds"][:2]] == [ids[4], ids[2]]

        # the payer's cooperative refund returns what it did not spend, the refunded sale included
        held = usdc_balance(devnet, payer)
        back = await asyncio.to_thread(refund_by_client, url, key, devnet)
    assert back["error"] is None and back["refund"]["amount"] == str(DEPOSIT - 4 * PRICE), back
    assert usdc_balance(devnet, payer) == held + DEPOSIT - 4 * PRICE
    window = (datetime(2000, 1, 1, tzinfo=UTC), datetime.now(UTC) + timedelta(minutes=1))
    summary = await ledger.reports.summary(pool, *window, payer=payer)
    assert (summary.refunded, summary.refunded_atomic, summary.revenue_atomic) == (2, 2 * PRICE, 3 * PRICE)
    assert (await ledger.verify.verify(pool)).ok


async def test_a_voucher_sale_is_refunded_only_while_no_settler_holds_its_network(
    batch_settings: Settings, devnet: EvmDevnet, pool: asyncpg.Pool
) -> None:
    """A claim the settler computed before a refund must not land after it: the refund waits for its lock."""
    key = new_payer(devnet)
    payer = Account.from_key(key).address.lower()
    with running_gateway(batch_settings) as gateway:
        paid = await asyncio.to_thread(pay_by_voucher, f"{gateway.url}{CAPITALS}?limit=1", key, devnet.network, 2)
    assert paid["statuses"] == [200, 200]
    payment_id = await pool.fetchval("SELECT max(id) FROM payments WHERE payer = $1", payer)
    async with ledger.locks.advisory_lock(pool, f"batch-settler:{devnet.network}"):
        waiting = asyncio.create_task(refund_sale(pool, payment_id, reason="late", actor="ops@test"))
        await asyncio.sleep(0.5)
        assert not waiting.done()
    done = await asyncio.wait_for(waiting, 10)
    assert isinstance(done, SaleRefund) and done.kind == "voucher_unclaimed"
    assert (await ledger.verify.verify(pool)).ok


async def test_a_sale_that_charged_nothing_is_not_refunded(gateway: Gateway, pool: asyncpg.Pool) -> None:
    payment_id = await ledger.claims.claim(pool, record())  # claimed, never settled
    assert payment_id is not None
    answer = await admin_post(gateway, f"/admin/api/payments/{payment_id}/refund", {"reason": "never settled"})
    assert (answer.status_code, answer.json()["error"]) == (409, "not_refundable")
    assert await pool.fetchval("SELECT count(*) FROM payment_refunds WHERE payment_id = $1", payment_id) == 0


async def test_verify_names_a_refund_booked_twice_and_a_payable_that_does_not_add_up(database: Database) -> None:
    async with fresh_database(database) as fresh:
        pool = fresh.pool
        payment_id = await settle_new(pool, record(payer="0xpayer", amount_atomic=700))
        done = await ledger.refunds.refund_sale(pool, payment_id, reason="wrong city", actor="ops@test")
        assert isinstance(done, SaleRefund) and done.account == "payable:refunds:eip155:84532:0xpayer"
        assert (await ledger.verify.verify(pool)).ok
        again = await ledger.refunds.refund_sale(pool, payment_id, reason="again", actor="ops@test")
        assert isinstance(again, RefundRefused) and again.error == "already_refunded"

        # the same refund booked once more by hand, and a payable moved without a refund
        settlement = await pool.fetchval(
            "SELECT id FROM journal_entries WHERE payment_id = $1 AND kind = 'settlement'", payment_id
        )
        async with pool.acquire() as connection, connection.transaction():
            entry = await connection.fetchval(queries["insert_journal_entry"], payment_id, "reversal", settlement, "x")
            await connection.execute(
                queries["insert_journal_postings"],
                entry,
                ["revenue:static.capitals", "payable:refunds:eip155:84532:0xpayer"],
                [done.asset, done.asset],
                [700, -700],
            )
        result = await ledger.verify.verify(pool)
    assert [v.check for v in result.violations] == ["refund_entry", "refund_payable"], result.violations
    assert "refunded twice" in result.violations[0].detail
    assert "holds 1400 owed; its refunds owe 700" in result.violations[1].detail
