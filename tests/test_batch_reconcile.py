"""Reconcile reads batch-settlement channels from the contract (issue 15, item 7): a claim the ledger never
recorded, a claimed total above what we charged and a withdrawal that can finalize before our next claim are
findings; `worldgate batch flush` leaves the books and the chain agreeing; the settler claims a channel with a
pending withdrawal at once.

Each test has a database and a payTo of its own: a claim made behind the ledger's back is swept with the rest
of its receiver's claims, which would upset any other test sharing that receiver.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from eth_abi import encode as abi_encode
from eth_account import Account

import ledger
from app.runtime.settings import BatchSettings, ReconcileSettings, Settings, replace
from app.usecases import batch_setup
from app.usecases.batch_settler import claim_row
from app.usecases.reconcile import Reconciler, auditors_for, chains_of
from app.usecases.services import Services
from ledger import batch_recovery, channel_audit, findings
from payments import EvmRpc, PaymentRequirements
from payments.codec import convert
from payments.devnet.evm import EvmDevnet
from payments.evm.batch import BatchSettlementChain, CheckedVoucher, ClaimRow, LocalAuthorizer, check_voucher
from payments.evm.batch.abi import config_tuple
from payments.evm.batch.digests import BATCH_SETTLEMENT_ADDRESS
from payments.evm.eip712 import keccak256
from payments.evm.relayer import Relayer

from .chain import rpc, unb64
from .conftest import Gateway, running_gateway
from .ledger_helpers import FreshDatabase, fresh_database
from .services import Database
from .test_admin import admin_call, admin_get
from .test_batch_gateway import PRICE, Channel

ROOT = Path(__file__).resolve().parents[1]
AT_ONCE = ReconcileSettings(interval_s=0, grace_s=0.0, settled_sample=1000)
FAR = BatchSettings(claim_interval_s=3600, settle_interval_s=3600)  # the test flushes when it means to
CONFIG_ABI = "(address,address,address,address,address,uint40,bytes32)"


@pytest.fixture
async def fresh(database: Database) -> AsyncIterator[FreshDatabase]:
    async with fresh_database(database) as made:
        yield made


def own_settings(settings: Settings, fresh: FreshDatabase) -> Settings:
    """Batch on, the timers far off, a ledger and a payTo of this test's own."""
    assert settings.evm is not None
    evm = replace(settings.evm, pay_to=Account.create().address)
    return replace(settings, database_url=fresh.url, schemes=("exact", "batch-settlement"), batch=FAR, evm=evm)


@contextlib.contextmanager
def gateway_for(settings: Settings) -> Iterator[Gateway]:
    with running_gateway(settings) as gateway:
        yield gateway


async def batch_offer(gateway: Gateway) -> dict[str, Any]:
    accepts = unb64((await gateway.get("/v1/streams/static.capitals")).headers["payment-required"])["accepts"]
    [offer] = [o for o in accepts if o["scheme"] == "batch-settlement"]
    return offer


async def paid_channel(gateway: Gateway, devnet: EvmDevnet, vouchers: int, deposit: int = 10 * PRICE) -> Channel:
    """A channel opened through the gateway (its deposit carries the first voucher) and `vouchers` accepted."""
    channel = Channel(gateway, devnet, await batch_offer(gateway))
    await channel.open(deposit)
    for cumulative in range(2, vouchers + 1):
        answer = await channel.voucher(cumulative * PRICE)
        assert answer.status_code == 200, answer.text
    return channel


def checked(channel: Channel, cumulative: int) -> CheckedVoucher:
    offer = convert(channel.offer, PaymentRequirements)
    voucher = check_voucher(channel.payer.voucher_payload(channel.config, cumulative), offer)
    assert isinstance(voucher, CheckedVoucher), voucher
    return voucher


def channel_id(channel: Channel) -> str:
    return channel.payer.channel_id(channel.config).lower()


@contextlib.asynccontextmanager
async def reconciler_for(settings: Settings, fresh: FreshDatabase, **kw: Any) -> AsyncIterator[Reconciler]:
    auditors, rpcs = auditors_for(chains_of(settings))
    try:
        yield Reconciler(fresh.pool, auditors, AT_ONCE, **kw)
    finally:
        for client in rpcs:
            await client.close()


async def claim_behind_the_ledger(devnet: EvmDevnet, channel: Channel, cumulative: int) -> str:
    """A claim sent straight to the contract with the receiver authorizer's key (the gateway's relayer key on the
    devnet), from an account of its own: the ledger never hears of it."""
    sender = Account.create()
    rpc(devnet, "anvil_setBalance", sender.address, hex(10**18))
    client = EvmRpc(devnet.rpc_url)
    try:
        relayer = Relayer(client, "0x" + sender.key.hex(), devnet.chain_id, gas_limit=1_000_000)
        chain = BatchSettlementChain(devnet.network, client, relayer, LocalAuthorizer(devnet.relayer_private_key))
        voucher = checked(channel, cumulative)
        outcome = await chain.claim([ClaimRow(voucher.config, cumulative, voucher.signature, cumulative)])
    finally:
        await client.close()
    assert outcome.success and outcome.amount == cumulative, outcome
    return outcome.transaction


async def open_channel_findings(pool: Any, channel: str) -> dict[str, findings.Finding]:
    return {f.kind: f for f in await findings.findings(pool, "open") if f.channel_id == channel}


def worldgate(settings: Settings, devnet: EvmDevnet, state_dir: Path, *arguments: str) -> str:
    """A `worldgate` command, as an operator runs it, against this test's ledger, payTo and the devnet."""
    assert settings.evm is not None and settings.database_url is not None
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WORLDGATE_", "X402_")) and k != "DATABASE_URL"}
    env |= {
        "WORLDGATE_STATE_DIR": str(state_dir),
        "WORLDGATE_DATABASE_URL": settings.database_url,
        "WORLDGATE_SCHEMES": "exact,batch-settlement",
        "WORLDGATE_EVM_NETWORK": devnet.network,
        "WORLDGATE_EVM_RPC_URL": devnet.rpc_url,
        "WORLDGATE_EVM_ASSET": devnet.asset,
        "WORLDGATE_EVM_PAY_TO": settings.evm.pay_to,
        "WORLDGATE_EVM_EIP712_NAME": devnet.eip712_name,
        "WORLDGATE_EVM_EIP712_VERSION": devnet.eip712_version,
        "WORLDGATE_EVM_RELAYER_KEY": devnet.relayer_private_key,
    }
    done = subprocess.run(
        [sys.executable, "-m", "app", *arguments], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:] + done.stdout[-3000:]
    return done.stdout


async def test_a_claim_the_ledger_never_recorded_is_found_and_a_flush_leaves_the_chain_agreeing(
    settings: Settings, devnet: EvmDevnet, fresh: FreshDatabase, tmp_path: Path
) -> None:
    own = own_settings(settings, fresh)
    with gateway_for(own) as gateway:
        channel = await paid_channel(gateway, devnet, vouchers=3)
    channel_hex = channel_id(channel)
    async with reconciler_for(own, fresh) as reconciler:
        before = await reconciler.run("cli")
        assert before.errors == [] and before.channels == 1 and before.flagged == 0, before
        assert await open_channel_findings(fresh.pool, channel_hex) == {}  # charged 3000, nothing claimed: agreed

        await claim_behind_the_ledger(devnet, channel, 3 * PRICE)
        found = await reconciler.run("cli")
        again = await reconciler.run("cli")

        assert found.flagged == 1 and again.flagged == 0 and found.errors == [], found
        [finding] = (await open_channel_findings(fresh.pool, channel_hex)).values()
        assert finding.kind == "channel_claimed_mismatch" and finding.payment_id is None
        assert finding.network == devnet.network and finding.amount_atomic == 3 * PRICE
        assert "3000 claimed" in finding.detail and channel_hex in finding.detail
        mirror = await ledger.channels.channel(fresh.pool, channel_hex)
        assert mirror is not None and mirror.claimed_atomic == 0  # the unrecorded claim is not hidden in the mirror
        assert [f.channel_id for f in await channel_audit.open_findings(fresh.pool)] == [channel_hex]
        shown = await asyncio.to_thread(worldgate, own, devnet, tmp_path, "ledger", "reconcile")
        assert "OPEN  channel_claimed_mismatch" in shown and channel_hex in shown and "batch channels 1" in shown, shown

        # The settler claims what we charged (the contract skips it: already claimed), books it, and sweeps.
        flushed = await asyncio.to_thread(worldgate, own, devnet, tmp_path, "batch", "flush", "--format", "json")
        assert json.loads(flushed)["settled_atomic"] == 3 * PRICE, flushed
        clean = await reconciler.run("cli")

    assert clean.errors == [] and clean.flagged == 0 and clean.batch_transactions == 2, clean
    assert await open_channel_findings(fresh.pool, channel_hex) == {}
    closed = await findings.finding(fresh.pool, finding.id)
    assert closed is not None and closed.state == "closed" and closed.closed_by is None  # resolved by reconcile
    states = await fresh.pool.fetch(
        "SELECT DISTINCT state FROM payments WHERE payer = $1", channel.payer.address.lower()
    )
    assert [r["state"] for r in states] == ["settled"]
    assert (await ledger.verify.verify(fresh.pool)).ok


async def test_a_claimed_total_above_what_we_charged_and_a_recorded_claim_the_chain_lacks_are_findings(
    settings: Settings, devnet: EvmDevnet, fresh: FreshDatabase
) -> None:
    own = own_settings(settings, fresh)
    with gateway_for(own) as gateway:
        channel = await paid_channel(gateway, devnet, vouchers=2)
    channel_hex = channel_id(channel)
    await claim_behind_the_ledger(devnet, channel, 5 * PRICE)  # a voucher the payer signed and we never accepted
    ghost = "0x" + os.urandom(32).hex()  # a claim recorded that no node ever saw
    await fresh.pool.execute(
        "INSERT INTO batch_transactions (tx_hash, network, kind, amount_atomic) VALUES ($1, $2, 'claim', 0)",
        ghost,
        devnet.network,
    )
    async with reconciler_for(own, fresh) as reconciler:
        report = await reconciler.run("cli")
        again = await reconciler.run("cli")
    found = await open_channel_findings(fresh.pool, channel_hex)
    assert set(found) == {"channel_claimed_above_charged"}, found
    assert found["channel_claimed_above_charged"].amount_atomic == 3 * PRICE
    mirror = await ledger.channels.channel(fresh.pool, channel_hex)
    assert mirror is not None and (mirror.charged_atomic, mirror.claimed_atomic) == (2 * PRICE, 0)
    [missing] = [f for f in await findings.findings(fresh.pool, "open") if f.batch_tx_hash == ghost]
    assert missing.kind == "batch_tx_not_on_chain" and missing.tx_hash == ghost and missing.network == devnet.network
    assert report.flagged == 2 and again.flagged == 0 and again.batch_transactions == 1  # read again: not confirmed

    # The operator sees both where findings show, and acknowledges the channel's like any other.
    with gateway_for(own) as gateway:
        listed = (await admin_get(gateway, "/admin/api/findings?state=open")).json()["findings"]
        above = found["channel_claimed_above_charged"]
        acted = await admin_call(gateway, "POST", f"/admin/api/findings/{above.id}/ack", json={"note": "asking payer"})
    subjects = {(f["kind"], f["channel_id"], f["batch_tx_hash"], f["payment_id"]) for f in listed}
    assert subjects == {
        ("channel_claimed_above_charged", channel_hex, None, None),
        ("batch_tx_not_on_chain", None, ghost, None),
    }
    assert acted.status_code == 200 and acted.json()["state"] == "acknowledged", acted.text


async def initiate_withdraw(devnet: EvmDevnet, channel: Channel, amount: int) -> None:
    """The payer's timed withdrawal (`initiateWithdraw(config, amount)`), sent from the payer's own account."""
    voucher = checked(channel, PRICE)
    data = keccak256(f"initiateWithdraw({CONFIG_ABI},uint128)".encode())[:4] + abi_encode(
        [CONFIG_ABI, "uint128"], [config_tuple(voucher.config), amount]
    )
    payer = channel.payer.address
    rpc(devnet, "anvil_setBalance", payer, hex(10**18))
    rpc(devnet, "anvil_impersonateAccount", payer)
    try:
        tx = rpc(
            devnet, "eth_sendTransaction", {"from": payer, "to": BATCH_SETTLEMENT_ADDRESS, "data": "0x" + data.hex()}
        )
    finally:
        rpc(devnet, "anvil_stopImpersonatingAccount", payer)
    receipt = rpc(devnet, "eth_getTransactionReceipt", tx)
    assert receipt is not None and int(receipt["status"], 16) == 1, receipt


async def test_a_withdrawal_before_our_next_claim_is_a_finding_and_the_settler_claims_it_at_once(
    settings: Settings, devnet: EvmDevnet, fresh: FreshDatabase
) -> None:
    own = own_settings(settings, fresh)
    with gateway_for(own) as gateway:
        channel = await paid_channel(gateway, devnet, vouchers=4)
    channel_hex = channel_id(channel)
    await initiate_withdraw(devnet, channel, 6 * PRICE)  # all the free escrow: balance 10000, owed 4000
    # The settler claims once an hour: a 900 s withdrawal delay ends before that.
    async with reconciler_for(own, fresh, claim_interval_s=FAR.claim_interval_s) as reconciler:
        report = await reconciler.run("cli")
        found = await open_channel_findings(fresh.pool, channel_hex)
        assert set(found) == {"channel_withdrawal_unclaimed"} and report.flagged == 1, (found, report)
        assert found["channel_withdrawal_unclaimed"].amount_atomic == 4 * PRICE
        mirror = await ledger.channels.channel(fresh.pool, channel_hex)
        assert mirror is not None and mirror.withdraw_requested_at > 0  # the settler sees it from here

        parts = batch_setup.build(own, fresh.pool, Services(pool=fresh.pool))
        parts.settler.watch_s = 0.05  # its withdrawal watch, instead of every 30 s
        running = asyncio.create_task(parts.settler.run())
        try:
            for _ in range(200):
                claimed = await fresh.pool.fetchval(
                    "SELECT claimed_atomic FROM batch_channels WHERE channel_id = $1", channel_hex
                )
                if claimed == 4 * PRICE:
                    break
                await asyncio.sleep(0.05)
        finally:
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running
            await parts.rpc.close()
        assert claimed == 4 * PRICE  # claimed long before the settler's hourly timer

        after = await reconciler.run("cli")
    assert after.flagged == 0 and after.errors == [], after
    assert await open_channel_findings(fresh.pool, channel_hex) == {}  # owed nothing now: the withdrawal takes


async def test_a_claim_landed_by_a_settler_that_died_before_recording_it_is_pending_then_booked_and_clean(
    settings: Settings, devnet: EvmDevnet, fresh: FreshDatabase
) -> None:
    """The SIGKILL between a claim landing and its record: the chain is ahead of the books, but the claim's hash
    was written ahead, so reconcile leaves it to the settler's recovery instead of raising a finding; after the
    restart's flush every accepted voucher is claimed and swept once, and the chain and the books agree."""
    own = own_settings(settings, fresh)
    with gateway_for(own) as gateway:
        channel = await paid_channel(gateway, devnet, vouchers=3)
    channel_hex = channel_id(channel)
    dead = batch_setup.build(own, fresh.pool, Services(pool=fresh.pool))
    try:
        owed = await ledger.channels.owed_channels(fresh.pool, devnet.network)
        totals = [(o.config.channel_id, o.claimable_atomic) for o in owed]

        async def write_ahead(tx_hash: str) -> None:
            await batch_recovery.write_ahead(
                fresh.pool, tx_hash, devnet.network, "claim", batch_recovery.claim_rows(totals)
            )

        landed = await dead.settler.chain.claim([claim_row(o) for o in owed], on_broadcast=write_ahead)
        assert landed.success and landed.amount == 3 * PRICE, landed  # on chain; the process "dies" here
    finally:
        await dead.rpc.close()

    async with reconciler_for(own, fresh) as reconciler:
        meanwhile = await reconciler.run("cli")
        assert meanwhile.flagged == 0 and meanwhile.left_pending == 1 and meanwhile.errors == [], meanwhile
        assert await open_channel_findings(fresh.pool, channel_hex) == {}

        restarted = batch_setup.build(own, fresh.pool, Services(pool=fresh.pool))
        try:
            report = await restarted.settler.flush()
        finally:
            await restarted.rpc.close()
        assert report.recovered == (landed.transaction,) and report.settled_atomic == 3 * PRICE, report
        after = await reconciler.run("cli")

    assert after.flagged == 0 and after.left_pending == 0 and after.errors == [], after
    assert after.batch_transactions == 2  # the recovered claim and the sweep, each receipt read
    states = await fresh.pool.fetch("SELECT state FROM payments WHERE payer = $1", channel.payer.address.lower())
    assert [r["state"] for r in states] == ["settled"] * 3
    assert (await ledger.verify.verify(fresh.pool)).ok
