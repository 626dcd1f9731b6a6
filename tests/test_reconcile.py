"""Reconciliation against the real devnets, on a database of its own: crashes after broadcast are booked,
ledger rows the chain does not show are flagged, abandoned claims expire, and runs are idempotent."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from solders.keypair import Keypair
from solders.message import MessageV0
from solders.transaction import VersionedTransaction

import ledger
from app.runtime.settings import ReconcileSettings, Settings
from app.usecases.reconcile import Reconciler, auditors_for, chains_of, every
from app.wiring import build_facilitator
from ledger import PaymentRecord, claims
from payments import Facilitator, PaymentPayload, PaymentRequirements, decode_payment_header, inspect
from payments.codec import convert
from payments.devnet.evm import EvmDevnet
from payments.devnet.solana_process import SolanaDevnetProcess
from payments.svm.audit import SvmAuditor
from payments.svm.history import Scan, signatures
from payments.svm.rpc import SvmRpc

from . import svm
from .chain import new_payer, pay_for
from .conftest import Gateway
from .ledger_helpers import FreshDatabase, fresh_database, record, settle_new
from .services import Database

CAPITALS = "/v1/streams/static.capitals"
AT_ONCE = ReconcileSettings(interval_s=0, grace_s=0.0, settled_sample=1000)  # no grace: everything is old enough


@pytest.fixture
async def fresh(database: Database) -> AsyncIterator[FreshDatabase]:
    async with fresh_database(database) as made:
        yield made


@pytest.fixture
async def reconciler(fresh: FreshDatabase, settings: Settings) -> AsyncIterator[Reconciler]:
    auditors, rpcs = auditors_for(chains_of(settings))
    yield Reconciler(fresh.pool, auditors, AT_ONCE)
    for rpc in rpcs:
        await rpc.close()


@pytest.fixture
async def facilitator(fresh: FreshDatabase, settings: Settings) -> AsyncIterator[Facilitator]:
    made = await build_facilitator(settings, fresh.pool)
    yield made
    await made.close()


async def claim_only(pool: asyncpg.Pool, header: str, offer: dict[str, Any]) -> tuple[int, Any, Any]:
    """What the gate does first: decode, inspect against our offer, claim the payment key."""
    payload = decode_payment_header(header, version=2)
    assert isinstance(payload, PaymentPayload)
    requirements = convert(offer, PaymentRequirements)
    inspection = inspect(payload, requirements)
    assert not hasattr(inspection, "reason"), inspection
    valid_before = inspection.valid_before_unix_s
    payment_id = await claims.claim(
        pool,
        PaymentRecord(
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
            settlement_mode="sync",
            valid_before=datetime.fromtimestamp(valid_before, UTC) if valid_before else None,
        ),
    )
    assert payment_id is not None
    return payment_id, payload, requirements


async def claim_settling(pool: asyncpg.Pool, header: str, offer: dict[str, Any]) -> tuple[int, Any, Any]:
    """What the gate does up to the broadcast: claim, verify, serve, and move to `settling`."""
    payment_id, payload, requirements = await claim_only(pool, header, offer)
    for before, after in (("claimed", "verified"), ("verified", "served"), ("served", "settling")):
        assert await claims.advance(pool, payment_id, before, after)
    return payment_id, payload, requirements


async def crash_after_broadcast(
    pool: asyncpg.Pool, facilitator: Facilitator, header: str, offer: dict[str, Any]
) -> Any:
    """Settle on chain, with the hash written ahead, then 'crash' before booking it."""
    payment_id, payload, requirements = await claim_settling(pool, header, offer)

    async def write_ahead(tx_hash: str) -> None:
        await claims.record_tx_hash(pool, payment_id, tx_hash)

    settlement = await facilitator.settle(payload, requirements, write_ahead)
    assert settlement.success, settlement
    row = await pool.fetchrow("SELECT state, tx_hash FROM payments WHERE id = $1", payment_id)
    assert row["state"] == "settling" and row["tx_hash"] == settlement.transaction  # charged, not booked
    return payment_id, settlement


async def journal_of(pool: asyncpg.Pool, payment_id: int) -> dict[tuple[str, str], int]:
    rows = await pool.fetch(
        "SELECT p.account, p.asset, p.amount_atomic FROM journal_entries e JOIN journal_postings p"
        " ON p.entry_id = e.id WHERE e.payment_id = $1",
        payment_id,
    )
    return {(r["account"], r["asset"]): r["amount_atomic"] for r in rows}


async def test_a_crash_after_an_evm_broadcast_is_booked(
    fresh: FreshDatabase, facilitator: Facilitator, reconciler: Reconciler, gateway: Gateway, devnet: EvmDevnet
) -> None:
    offer = await gateway.offer(CAPITALS)
    key = new_payer(devnet)
    payment_id, settlement = await crash_after_broadcast(fresh.pool, facilitator, pay_for(key, devnet, offer), offer)

    report = await reconciler.run("cli")

    assert report.resolved == 1 and report.errors == [] and report.flagged == 0
    row = await fresh.pool.fetchrow("SELECT state, tx_hash, gas_cost_atomic FROM payments WHERE id = $1", payment_id)
    assert row["state"] == "settled" and row["tx_hash"] == settlement.transaction
    assert row["gas_cost_atomic"] == settlement.gas_cost_atomic
    lines = await journal_of(fresh.pool, payment_id)
    token = f"{devnet.network}/{devnet.asset.lower()}"
    assert lines[("revenue:static.capitals", token)] == -1000
    assert lines[(f"onchain:{devnet.network}:{devnet.pay_to.lower()}", token)] == 1000
    assert lines[(f"expense:gas:{devnet.network}", f"{devnet.network}/native")] == settlement.gas_cost_atomic

    again = await reconciler.run("cli")  # idempotent: nothing left to do, nothing new to say
    assert (again.resolved, again.flagged) == (0, 0) and again.errors == []
    assert await fresh.pool.fetchval("SELECT count(*) FROM journal_entries WHERE payment_id = $1", payment_id) == 1
    assert (await ledger.verify.verify(fresh.pool)).ok


async def test_a_crash_after_a_solana_send_is_booked(
    fresh: FreshDatabase,
    facilitator: Facilitator,
    reconciler: Reconciler,
    gateway: Gateway,
    solana: SolanaDevnetProcess,
) -> None:
    offer = await gateway.offer(CAPITALS, family="solana")
    payer = svm.new_payer(solana.state)
    header = svm.pay(payer, solana.state, offer)
    payment_id, settlement = await crash_after_broadcast(fresh.pool, facilitator, header, offer)

    report = await reconciler.run("cli")

    assert report.resolved == 1 and report.errors == []
    row = await fresh.pool.fetchrow("SELECT state, gas_cost_atomic FROM payments WHERE id = $1", payment_id)
    assert row["state"] == "settled" and row["gas_cost_atomic"] == settlement.gas_cost_atomic
    token = f"{offer['network']}/{offer['asset'].lower()}"
    assert (await journal_of(fresh.pool, payment_id))[("revenue:static.capitals", token)] == -1000


async def test_a_settlement_the_chain_does_not_show_is_flagged_once(
    fresh: FreshDatabase, reconciler: Reconciler, devnet: EvmDevnet
) -> None:
    ghost = await settle_new(fresh.pool, record(network=devnet.network, asset=devnet.asset, amount_atomic=5000))

    first = await reconciler.run("cli", all_settled=True)
    second = await reconciler.run("cli", all_settled=True)

    assert first.flagged == 1 and second.flagged == 0
    flags = await ledger.audit.open_flags(fresh.pool, 10)
    assert [(f.payment_id, f.kind) for f in flags] == [(ghost, "settlement_not_on_chain")]
    state = await fresh.pool.fetchval("SELECT state FROM payments WHERE id = $1", ghost)
    assert state == "settled"  # flagged for the operator, never silently rewritten


async def test_abandoned_claims_expire_and_unsent_settlements_fail(
    fresh: FreshDatabase, reconciler: Reconciler, gateway: Gateway, devnet: EvmDevnet
) -> None:
    abandoned = await claims.claim(fresh.pool, record(network=devnet.network))
    assert abandoned is not None
    offer = await gateway.offer(CAPITALS)
    key = new_payer(devnet)
    unsent, _payload, _requirements = await claim_settling(fresh.pool, pay_for(key, devnet, offer), offer)

    report = await reconciler.run("cli")

    states = dict(await fresh.pool.fetch("SELECT id, state FROM payments WHERE id = ANY($1)", [abandoned, unsent]))
    assert states == {abandoned: "expired", unsent: "failed"}
    assert report.resolved == 2


async def test_money_moved_for_a_payment_the_books_do_not_hold_is_flagged(
    fresh: FreshDatabase, facilitator: Facilitator, reconciler: Reconciler, gateway: Gateway, devnet: EvmDevnet
) -> None:
    """The reverse orphans: the chain moved money to payTo for a payment our books released, or whose
    transaction hash was lost. The lost one is found by its authorization's AuthorizationUsed log and
    booked; the released one is flagged (neither is failed or expired)."""
    offer = await gateway.offer(CAPITALS)
    lost, payload, requirements = await claim_settling(fresh.pool, pay_for(new_payer(devnet), devnet, offer), offer)
    assert (await facilitator.settle(payload, requirements, _ignore)).success  # hash never written
    released, payload, requirements = await claim_only(fresh.pool, pay_for(new_payer(devnet), devnet, offer), offer)
    assert await claims.advance(fresh.pool, released, "claimed", "released", reason="test")
    assert (await facilitator.settle(payload, requirements, _ignore)).success  # yet it moved on chain

    report = await reconciler.run("cli")

    flags = {(f.payment_id, f.kind) for f in await ledger.audit.open_flags(fresh.pool, 10)}
    assert flags == {(released, "chain_transfer_not_recorded")}
    states = dict(await fresh.pool.fetch("SELECT id, state FROM payments WHERE id = ANY($1)", [lost, released]))
    assert states == {lost: "settled", released: "released"} and report.errors == []
    assert (await reconciler.run("cli")).flagged == 0  # seen again: no new finding


def _later_transfers(state: dict[str, Any], payer: Keypair, offer: dict[str, Any], count: int) -> list[str]:
    """`count` transfers from the payer's token account, each its own (1, 2, ... atomic), the payer paying the fee:
    its history grows past one page of signatures."""
    svm.rpc(state, "requestAirdrop", str(payer.pubkey()), 10**9)
    sent = []
    for amount in range(1, count + 1):
        instruction = svm.transfer_ix(
            offer, source=svm.ata(payer.pubkey(), offer), authority=payer.pubkey(), amount=amount
        )
        message = MessageV0.try_compile(payer.pubkey(), [instruction], [], svm.blockhash(state))
        raw = base64.b64encode(bytes(VersionedTransaction(message, [payer]))).decode()
        sent.append(svm.rpc(state, "sendTransaction", raw, {"encoding": "base64"}))
    return sent


LATER = 130  # transactions on the payer's token account after its settlement: past the first 100 signatures


async def test_a_solana_settlement_older_than_the_last_100_signatures_is_found_and_booked(
    fresh: FreshDatabase,
    facilitator: Facilitator,
    reconciler: Reconciler,
    gateway: Gateway,
    solana: SolanaDevnetProcess,
) -> None:
    """A settlement whose signature was lost (a remote facilitator's answer that never came) is searched for in the
    payer's token account history; with 130 later transactions it is on the second page."""
    offer = await gateway.offer(CAPITALS, family="solana")
    payer = svm.new_payer(solana.state)
    payment_id, payload, requirements = await claim_settling(fresh.pool, svm.pay(payer, solana.state, offer), offer)
    settlement = await facilitator.settle(payload, requirements, _ignore)  # its signature never written
    assert settlement.success, settlement
    _later_transfers(solana.state, payer, offer, LATER)

    started = time.monotonic()
    report = await reconciler.run("cli")

    row = await fresh.pool.fetchrow("SELECT state, tx_hash FROM payments WHERE id = $1", payment_id)
    assert (row["state"], row["tx_hash"]) == ("settled", settlement.transaction), report
    scan = reconciler.auditors[offer["network"]].last_scan  # type: ignore[attr-defined]
    assert scan.pages == 2 and scan.seen == LATER + 1 and not scan.exhausted  # found on the second page
    assert report.resolved == 1 and report.errors == [] and time.monotonic() - started < 60


async def test_a_solana_history_search_stops_at_its_count_and_pages_with_before_and_until(
    solana: SolanaDevnetProcess, gateway: Gateway
) -> None:
    offer = await gateway.offer(CAPITALS, family="solana")
    payer = svm.new_payer(solana.state)
    sent = _later_transfers(solana.state, payer, offer, 150)
    account = str(svm.ata(payer.pubkey(), offer))
    rpc = SvmRpc(solana.state["rpc_url"])
    try:
        newest_first = list(reversed(sent))
        whole = Scan()
        found = [e["signature"] async for e in signatures(rpc, account, scan=whole, max_count=1000, deadline_s=30)]
        assert found == newest_first and whole.pages == 2 and whole.exhausted  # no signature seen twice
        until = Scan()
        bounded = [
            e["signature"]
            async for e in signatures(rpc, account, scan=until, max_count=1000, deadline_s=30, until=sent[9], page=50)
        ]
        assert bounded == newest_first[:140] and until.pages == 3 and until.exhausted  # stops before `until`
        counted = Scan()
        first = [e["signature"] async for e in signatures(rpc, account, scan=counted, max_count=120, deadline_s=30)]
        assert first == newest_first[:120] and not counted.exhausted

        # An auditor held to 100 signatures cannot reach a settlement 130 transactions back; the default can.
        short = SvmAuditor(rpc, offer["network"], history=100)
        key = f"{offer['network']}:{'1' * 44}"  # a message hash no transaction carries
        assert await short.find_settlement(key, payer=str(payer.pubkey()), asset=offer["asset"]) is None
        assert short.last_scan.seen == 100 and not short.last_scan.exhausted
    finally:
        await rpc.close()


async def _ignore(_tx_hash: str) -> None:
    """A broadcast whose hash is not written down (the crash this test is about)."""


async def test_one_run_at_a_time(fresh: FreshDatabase, reconciler: Reconciler) -> None:
    async with ledger.locks.advisory_lock(fresh.pool, "worldgate:reconcile"):
        busy = await reconciler.run("schedule")
    assert busy.skipped and busy.run_id is None
    free = await reconciler.run("schedule")
    assert free.skipped is None and free.run_id is not None
    [last] = await ledger.audit.last_runs(fresh.pool, 1)
    assert last.id == free.run_id and last.finished_at is not None and last.trigger == "schedule"


async def test_the_server_schedule_runs_reconcile_by_itself(fresh: FreshDatabase, reconciler: Reconciler) -> None:
    abandoned = await claims.claim(fresh.pool, record())
    task = asyncio.create_task(every(reconciler, 0.05))
    try:
        for _ in range(100):
            if await fresh.pool.fetchval("SELECT state FROM payments WHERE id = $1", abandoned) == "expired":
                break
            await asyncio.sleep(0.05)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert await fresh.pool.fetchval("SELECT state FROM payments WHERE id = $1", abandoned) == "expired"
    assert {run.trigger for run in await ledger.audit.last_runs(fresh.pool, 5)} == {"schedule"}
