"""The operator's transfer of a refund owed, booked against its payable: `worldgate ledger refund-sent`.

A refunded `exact` sale is owed to its payer; the operator sends the amount from payTo on the devnet (anvil,
payTo impersonated: the gateway holds no payTo key) and records the transaction. The chain is asked first: only
a landed transfer of exactly the amount, of the sale's token, from its payTo to its payer is booked, once, and a
transaction pays one refund. The books verify after, and verify names a transfer booked wrong.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import asyncpg
import pytest
from eth_account import Account
from solders.message import MessageV0
from solders.transaction import VersionedTransaction

import ledger
from app.runtime.settings import Settings
from app.usecases.reconcile import auditors_for
from app.usecases.refund_transfer import record_refund_transfer
from ledger.refund_transfers import OwedRefund, RefundTransfer, refusal
from ledger.refunds import RefundRefused, SaleRefund
from ledger.sql import queries
from payments import ChainAuditor
from payments.devnet.evm import EvmDevnet, Rpc, calldata, mint
from payments.devnet.process import free_port
from payments.devnet.solana import devnet_keypair
from payments.devnet.solana_process import SolanaDevnetProcess

from . import svm
from .chain import new_payer, pay_for, usdc_balance
from .conftest import Gateway
from .ledger_helpers import fresh_database, record, settle_new
from .services import Database
from .test_batch_reconcile import worldgate
from .test_operator_refund import admin_post

CAPITALS = "/v1/streams/static.capitals"


@pytest.fixture
async def auditors(devnet: EvmDevnet) -> AsyncIterator[dict[str, ChainAuditor]]:
    found, rpcs = auditors_for([(devnet.network, devnet.rpc_url)])
    try:
        yield found
    finally:
        for rpc in rpcs:
            await rpc.close()


def send_usdc(devnet: EvmDevnet, sender: str, to: str, amount: int) -> str:
    """A plain ERC-20 transfer from `sender` (impersonated on anvil, given gas): what an operator's wallet sends."""
    rpc = Rpc(devnet.rpc_url)
    try:
        rpc("anvil_impersonateAccount", sender)
        rpc("anvil_setBalance", sender, hex(10**18))
        return str(rpc.send(sender, devnet.asset, calldata("transfer(address,uint256)", to, amount))["transactionHash"])
    finally:
        rpc.close()


async def refunded_sale(gateway: Gateway, devnet: EvmDevnet, pool: asyncpg.Pool, key: str) -> SaleRefund:
    offer = await gateway.offer(CAPITALS)
    paid = await gateway.get(f"{CAPITALS}?limit=1", headers={"PAYMENT-SIGNATURE": pay_for(key, devnet, offer)})
    assert paid.status_code == 200, paid.text
    payer = Account.from_key(key).address.lower()
    payment_id = await pool.fetchval(
        "SELECT max(id) FROM payments WHERE lower(payer) = $1 AND state = 'settled'", payer
    )
    done = await ledger.refunds.refund_sale(pool, payment_id, reason="stale answer", actor="ops@test")
    assert isinstance(done, SaleRefund) and done.kind == "payable"
    return done


async def owed_to(pool: asyncpg.Pool, account: str) -> int:
    value = await pool.fetchval("SELECT sum(balance_atomic) FROM account_balances WHERE account = $1", account)
    return -int(value or 0)


async def test_a_refund_owed_is_booked_once_when_the_chain_shows_its_transfer(
    gateway: Gateway,
    devnet: EvmDevnet,
    pool: asyncpg.Pool,
    settings: Settings,
    auditors: dict[str, ChainAuditor],
    tmp_path: Path,
) -> None:
    assert settings.evm is not None
    pay_to = settings.evm.pay_to
    key = new_payer(devnet)
    payer = Account.from_key(key).address
    first = await refunded_sale(gateway, devnet, pool, key)
    second = await refunded_sale(gateway, devnet, pool, key)
    price = first.amount_atomic
    assert await owed_to(pool, first.account) == 2 * price
    mint(devnet.rpc_url, devnet.asset, pay_to, 3 * price)  # what payTo held before these sales: it sends 3 here

    async def sent(refund_id: int, tx: str) -> RefundTransfer | RefundRefused:
        return await record_refund_transfer(pool, auditors, refund_id, tx, actor="ops@test")

    never = await sent(first.id, "0x" + secrets.token_hex(32))
    short = send_usdc(devnet, pay_to, payer, price - 1)
    from_elsewhere = send_usdc(devnet, devnet.payer_address, payer, price)  # the amount, but not from payTo
    refused = [await sent(first.id, short), await sent(first.id, from_elsewhere), await sent(first.id, "nonsense")]
    assert isinstance(never, RefundRefused) and never.error == "transfer_not_found", never
    assert [r.error for r in refused if isinstance(r, RefundRefused)] == [
        "transfer_mismatch",
        "transfer_mismatch",
        "transfer_not_found",
    ], refused
    assert f"owes {price} from {pay_to.lower()}" in refused[0].detail
    assert await owed_to(pool, first.account) == 2 * price  # nothing booked

    paid_back = send_usdc(devnet, pay_to, payer, price)
    before = usdc_balance(devnet, payer)
    shouted = "0x" + paid_back[2:].upper()  # as a wallet may show it: stored in lower case all the same
    shown = await asyncio.to_thread(
        worldgate, settings, devnet, tmp_path, "ledger", "refund-sent", str(first.id), "--tx", shouted, "--by", "alice",
        "--format", "json",
    )  # fmt: skip
    document = json.loads(shown)
    assert (document["refund_id"], document["tx_hash"], document["amount_atomic"], document["actor"]) == (
        first.id,
        paid_back.lower(),
        price,
        "alice",
    )
    assert document["sender"].lower() == pay_to.lower()
    assert usdc_balance(devnet, payer) == before  # recording moves no money: it books what moved
    assert await owed_to(pool, first.account) == price  # the second refund is still owed

    again = await sent(first.id, paid_back)
    reused = await sent(second.id, paid_back)  # the same transfer cannot pay the other refund too
    assert isinstance(again, RefundRefused) and again.error == "already_sent", again
    assert isinstance(reused, RefundRefused) and reused.error == "transfer_already_used", reused
    unknown = await sent(999_999_999, paid_back)
    assert isinstance(unknown, RefundRefused) and unknown.error == "unknown_refund"
    dead, dead_rpcs = auditors_for([(devnet.network, f"http://127.0.0.1:{free_port()}")], timeout_s=2.0)
    try:  # a node that does not answer: nothing is booked, the operator tries again
        down = await record_refund_transfer(pool, dead, second.id, paid_back, actor="ops@test")
    finally:
        for rpc in dead_rpcs:
            await rpc.close()
    assert isinstance(down, RefundRefused) and down.error == "chain_unavailable", down
    assert await owed_to(pool, first.account) == price

    # the admin API books the second, read through the node the gateway settles on
    wrong = await admin_post(gateway, f"/admin/api/refunds/{second.id}/sent", {"transaction": short})
    no_tx = await admin_post(gateway, f"/admin/api/refunds/{second.id}/sent", {})
    taken = await admin_post(gateway, f"/admin/api/refunds/{second.id}/sent", {"transaction": paid_back})
    assert (wrong.status_code, wrong.json()["error"]) == (422, "transfer_mismatch")
    assert (no_tx.status_code, taken.status_code, taken.json()["error"]) == (400, 409, "transfer_already_used")
    odd = await admin_post(gateway, "/admin/api/refunds/%C2%B2/sent", {"transaction": paid_back})
    assert (odd.status_code, odd.json()["error"]) == (404, "unknown_refund")
    answer = await admin_post(
        gateway, f"/admin/api/refunds/{second.id}/sent", {"transaction": send_usdc(devnet, pay_to, payer, price)}
    )
    assert answer.status_code == 201, answer.text
    done = RefundTransfer(**{**answer.json(), "created_at": None})
    assert (done.refund_id, done.amount_atomic, done.actor) == (second.id, price, "ops@test")
    assert await owed_to(pool, first.account) == 0
    listed = await ledger.refunds.recent(pool, 10)
    sent_txs = {r["id"]: r["sent_tx"] for r in listed}
    assert sent_txs[first.id] == paid_back.lower() and sent_txs[second.id] == done.tx_hash
    entry = await pool.fetch("SELECT account, amount_atomic FROM journal_postings WHERE entry_id = $1", done.entry_id)
    assert {(r["account"], int(r["amount_atomic"])) for r in entry} == {
        (first.account, price),
        (f"onchain:{devnet.network}:{pay_to.lower()}", -price),
    }
    assert (await ledger.verify.verify(pool)).ok


async def test_a_solana_refund_is_booked_by_its_signature_as_the_chain_spells_it(
    gateway: Gateway, solana: SolanaDevnetProcess, pool: asyncpg.Pool
) -> None:
    state = solana.state
    offer = await gateway.offer(CAPITALS, family="solana")
    payer = svm.new_payer(state)
    paid = await gateway.get(f"{CAPITALS}?limit=1", headers={"PAYMENT-SIGNATURE": svm.pay(payer, state, offer)})
    assert paid.status_code == 200, paid.text
    payment_id = await pool.fetchval("SELECT id FROM payments WHERE payer = $1", str(payer.pubkey()))
    refund = await ledger.refunds.refund_sale(pool, payment_id, reason="wrong city", actor="ops@test")
    assert isinstance(refund, SaleRefund) and refund.kind == "payable"

    pay_to = devnet_keypair("pay to")  # the operator's wallet: the gateway never holds it
    svm.rpc(state, "requestAirdrop", str(pay_to.pubkey()), 10**9)
    instruction = svm.transfer_ix(
        offer,
        source=svm.ata(pay_to.pubkey(), offer),
        authority=pay_to.pubkey(),
        destination=svm.ata(payer.pubkey(), offer),
        amount=refund.amount_atomic,
    )
    message = MessageV0.try_compile(pay_to.pubkey(), [instruction], [], svm.blockhash(state))
    raw = base64.b64encode(bytes(VersionedTransaction(message, [pay_to]))).decode()
    signature = svm.rpc(state, "sendTransaction", raw, {"encoding": "base64"})

    auditors, rpcs = auditors_for([(state["network"], state["rpc_url"])])
    try:
        backwards = await record_refund_transfer(pool, auditors, refund.id, signature.lower(), actor="ops@test")
        done = await record_refund_transfer(pool, auditors, refund.id, signature, actor="ops@test")
    finally:
        for rpc in rpcs:
            await rpc.close()
    assert isinstance(backwards, RefundRefused) and backwards.error == "transfer_not_found"  # base58: case matters
    assert isinstance(done, RefundTransfer) and (done.tx_hash, done.sender) == (signature, offer["payTo"])
    assert await owed_to(pool, refund.account) == 0
    assert (await ledger.verify.verify(pool)).ok


def test_only_a_refund_owed_and_not_yet_sent_takes_a_transfer() -> None:
    owed = OwedRefund(1, 2, "payable", 700, "payable:refunds:n:p", "n/t", "n", "p", "q", "t", None)
    assert refusal(owed, 1) is None
    assert refusal(None, 9) == RefundRefused("unknown_refund", "no refund 9")
    unclaimed = refusal(replace(owed, kind="voucher_unclaimed"), 1)
    assert unclaimed is not None and unclaimed.error == "not_owed"
    sent = refusal(replace(owed, sent_tx="0xabc"), 1)
    assert sent is not None and (sent.error, "0xabc" in sent.detail) == ("already_sent", True)


async def test_verify_names_a_refund_transfer_booked_wrong(database: Database) -> None:
    async with fresh_database(database) as fresh:
        pool = fresh.pool
        payment_id = await settle_new(pool, record(payer="0xpayer", amount_atomic=700))
        done = await ledger.refunds.refund_sale(pool, payment_id, reason="wrong city", actor="ops@test")
        assert isinstance(done, SaleRefund)
        owed = await ledger.refund_transfers.owed(pool, done.id)
        assert owed is not None
        booked = await ledger.refund_transfers.record(pool, owed, "0x" + "ab" * 32, actor="ops@test")
        assert isinstance(booked, RefundTransfer)
        assert (await ledger.verify.verify(pool)).ok
        assert await owed_to(pool, done.account) == 0

        with pytest.raises(
            asyncpg.IntegrityConstraintViolationError
        ):  # the database refuses a transfer for another amount
            async with pool.acquire() as connection, connection.transaction():
                await connection.execute(
                    queries["refund_transfer_insert"], done.id, "eip155:84532", "0x" + "cd" * 32, "0xpayto", 699,
                    booked.entry_id, "ops@test",
                )  # fmt: skip
        # by hand: the payable debited once more, as if a second transfer had been booked without its row
        async with pool.acquire() as connection, connection.transaction():
            entry = await connection.fetchval(queries["insert_journal_entry"], None, "adjustment", None, "x")
            await connection.execute(
                queries["insert_journal_postings"],
                entry,
                [done.account, "onchain:eip155:84532:0xpayto"],
                [done.asset, done.asset],
                [700, -700],
            )
        result = await ledger.verify.verify(pool)
    assert [v.check for v in result.violations] == ["refund_payable"], result.violations
    assert "holds -700 owed; its refunds owe 0" in result.violations[0].detail
