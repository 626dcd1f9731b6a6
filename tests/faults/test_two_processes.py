"""Two gateway processes on one Postgres and one Redis receive the same payments at once: 200 concurrent
requests carrying 20 distinct payments (10 EVM, 10 Solana; each sent 10 times, 5 to each process) are served
20 times and settled 20 times; the other 180 are refused with a structured 402 (spent) or 503 (still being
sold), none with a 500."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from typing import Any

import httpx
from solders.keypair import Keypair

import ledger
from app.runtime.settings import Settings, replace
from payments.devnet.evm import EvmDevnet
from payments.devnet.solana_process import SolanaDevnetProcess

from .. import svm
from ..chain import unb64, usdc_balance
from ..ledger_helpers import FreshDatabase
from .conftest import GatewayProcess, gateway_env
from .rig import (  # noqa: F401
    Sale,
    evm_payer,
    fault_db,
    fee_payer,
    has_data,
    ledger_state,
    reconcile,
    relayer_key,
    row,
    sign,
    svm_payer,
    why,
)

PATH = "/v1/streams/static.capitals"
PAYMENTS_PER_CHAIN = 10
COPIES = 10  # requests per payment, half to each process


async def test_two_processes_share_one_ledger(
    settings: Settings,
    devnet: EvmDevnet,
    solana: SolanaDevnetProcess,
    fault_db: FreshDatabase,  # noqa: F811
    relayer_key: str,  # noqa: F811
    fee_payer: Keypair,  # noqa: F811
    gateway_process: Any,
) -> None:
    assert settings.evm is not None and settings.svm is not None
    ours = replace(
        settings,
        database_url=fault_db.url,
        evm=replace(settings.evm, relayer_key=relayer_key),
        svm=replace(settings.svm, fee_payer_key=str(fee_payer)),
    )
    env = gateway_env(ours)
    gateways: list[GatewayProcess] = [gateway_process(env), gateway_process(env)]
    assert gateways[0].pid != gateways[1].pid and all(g.alive() for g in gateways)

    async with httpx.AsyncClient(timeout=30) as client:
        quote, _ = [await client.get(f"{g.url}{PATH}") for g in gateways]  # both warm, both quoting
    accepts = unb64(quote.headers["payment-required"])["accepts"]
    offers = {o["network"].split(":")[0]: o for o in accepts if o["scheme"] == "exact"}
    sales = [Sale(evm_payer(devnet, offers["eip155"])) for _ in range(PAYMENTS_PER_CHAIN)]
    sales += [Sale(svm_payer(solana.state, offers["solana"])) for _ in range(PAYMENTS_PER_CHAIN)]
    for sale in sales:
        sale.header = sign(sale.payer, offers[sale.payer.family], devnet, solana.state)
    pay_to_before = (usdc_balance(devnet, ours.evm.pay_to), svm.usdc_balance(solana.state, ours.svm.pay_to))

    sends = [(sale, gateways[copy % 2]) for sale in sales for copy in range(COPIES)]
    random.shuffle(sends)  # the copies of one payment interleave with every other payment, on both processes
    limits = httpx.Limits(max_connections=len(sends), max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        answers = await asyncio.gather(
            *(client.get(f"{g.url}{PATH}", headers={"PAYMENT-SIGNATURE": s.header}) for s, g in sends)
        )
    served_by = Counter()
    for (sale, gateway), answer in zip(sends, answers, strict=True):
        sale.answers.append(answer)
        if has_data(answer):
            served_by[gateway.port] += 1

    for sale in sales:
        sale.before_reconcile = await ledger_state(fault_db.pool, sale.payer)
    report = await reconcile(fault_db.pool, ours)  # also checks every settled payment against its chain
    for sale in sales:
        sale.after_reconcile = await ledger_state(fault_db.pool, sale.payer)
        sale.debits = sale.payer.debited(devnet, solana.state)
    kinds = Counter(why(a) for a in answers)
    recorded = row(
        "Concurrency",
        "two gateway processes, one Postgres and Redis, the same payments at once",
        f"{len(sends)} concurrent requests carrying {len(sales)} distinct payments (10 EVM, 10 Solana), each sent "
        f"{COPIES} times, {COPIES // 2} to each process, shuffled",
        sales,
        outcome=", ".join(f"{n} x {k}" for k, n in kinds.most_common())
        + f"; served by process A {served_by[gateways[0].port]}, B {served_by[gateways[1].port]}",
    )

    assert recorded.served == len(sales) and recorded.settled == len(sales) and recorded.charged == len(sales)
    assert (recorded.double_charged, recorded.lost, recorded.status_500, recorded.served_unsettled) == (0, 0, 0, 0)
    for sale in sales:
        assert [has_data(a) for a in sale.answers].count(True) == 1, [why(a) for a in sale.answers]
        assert sale.after_reconcile == ["settled"] and sale.debits == 1
    refusals = [a for a in answers if not has_data(a)]
    assert len(refusals) == len(sends) - len(sales)
    # spent (402), or still held by the request selling it (503: retry the same payment, never a new one)
    refused = {(a.status_code, a.json()["error"]) for a in refusals}
    assert refused <= {(402, "payment_already_claimed"), (503, "settlement_pending")}, kinds
    assert all("records" not in a.text for a in refusals)

    price = {family: int(offer["amount"]) for family, offer in offers.items()}
    assert usdc_balance(devnet, ours.evm.pay_to) == pay_to_before[0] + PAYMENTS_PER_CHAIN * price["eip155"]
    assert svm.usdc_balance(solana.state, ours.svm.pay_to) == pay_to_before[1] + PAYMENTS_PER_CHAIN * price["solana"]
    pool = fault_db.pool
    settled = await pool.fetchval("SELECT count(*) FROM payments WHERE state = 'settled' AND claims = 1")
    entries = await pool.fetchval("SELECT count(*) FROM journal_entries WHERE kind = 'settlement'")
    assert (settled, entries) == (len(sales), len(sales))
    assert (await ledger.verify.verify(pool)).ok
    assert report.errors == [] and report.flagged == 0
    assert not [g.log_path.name for g in gateways if "Traceback" in g.log_tail(10**7)]
