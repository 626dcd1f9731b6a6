"""SIGKILL at each step of batch settlement, between a voucher's acceptance and its sweep, then restart (issue 15).

Each step gets its own payer and channel: the deposit and two vouchers go through a healthy gateway, then a
gateway armed at the step (app/runtime/faultpoints.py BATCH_STEPS) kills itself there:

- batch_after_serve, batch_after_accept: on the third voucher's request. A new gateway starts unarmed and the
  payer retries that voucher once, as a client whose connection died does: served but not booked, nothing
  was written and the voucher is sold then; booked, its answer never left, so it is served again under the
  booked sale, never charged again (app/usecases/batch_checkout.py `_served_again`).
- batch_after_claim, batch_after_sweep: in the gateway's settler, its claim or sweep landed on chain and not
  yet recorded. The next settler run finds the hash it wrote ahead (ledger/batch_recovery.py) and records it
  from the receipt (app/usecases/batch_settler.py `recover`).

Then the payer goes on to its fourth voucher and a flush runs in this process, on the same ledger and chain.
After every step: each of the four vouchers is booked once and settled once on chain (payTo's USDC rose by
exactly four prices), the payer got the data of each, nothing is left pending, and `ledger verify` passes.
payTo is an address of this module's own, so no other test's claims are swept with ours.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
from eth_account import Account

import ledger
from app.runtime import faultpoints
from app.runtime.settings import BatchSettings, Settings, replace
from app.usecases import batch_setup
from app.usecases.retries import REDELIVER_AFTER_S
from app.usecases.services import Services
from payments.devnet.evm import EvmDevnet, mint

from ..batch_payer import Payer
from ..chain import b64, unb64, usdc_balance
from ..ledger_helpers import FreshDatabase
from .conftest import GatewayProcess, gateway_env
from .report import FaultRow, record
from .rig import INTENDED_5XX, fault_db, has_data, relayer_key, why  # noqa: F401

PATH = "/v1/streams/static.capitals?limit=1"
SECTION = "Process crashes (SIGKILL), batch settlement"
SETTLER_TICK_S = 5.0  # the armed settler's timers: long enough for the gateway to answer its health check first
IDLE_S = 3600  # every other gateway's settler stays idle: the test flushes when it means to
IN_REQUEST = faultpoints.BATCH_STEPS[:2]
WHAT = {
    "batch_after_serve": "the handler ran (its answer held back), the voucher not yet booked",
    "batch_after_accept": "the voucher booked (accepted, revenue in the journal), the answer not yet sent",
    "batch_after_claim": "the settler's claim landed on chain, not yet recorded",
    "batch_after_sweep": "the settler's sweep to payTo landed on chain, not yet recorded",
}
STATE_AT_KILL = {"batch_after_serve": "none", "batch_after_accept": "accepted"}  # "none": no payment row


@dataclass
class Step:
    step: str
    answers: dict[int, list[httpx.Response]] = field(default_factory=dict)  # by voucher cumulative
    killed_answered: bool = False
    state_after_kill: str = "-"
    states: dict[int, list[str]] = field(default_factory=dict)  # payments per voucher after the flush
    delta_at_kill: int = 0  # payTo's USDC when the process died (a sweep that landed unrecorded shows here)
    delta: int = 0  # payTo's USDC over the step
    recovered: int = 0  # pending transactions the flush recorded
    pending_left: int = 0
    verified: bool = False

    @property
    def requests(self) -> int:
        return sum(len(a) for a in self.answers.values()) + (1 if self.step in IN_REQUEST else 0)


class Channel:
    """One payer's channel, its vouchers sent to whichever gateway is up."""

    def __init__(self, devnet: EvmDevnet, offer: dict[str, Any], price: int) -> None:
        self.offer, self.price = offer, price
        self.payer = Payer(devnet, offer["payTo"])
        mint(devnet.rpc_url, devnet.asset, self.payer.address, 100 * price)
        extra = offer["extra"]
        self.config = self.payer.config(
            receiverAuthorizer=extra["receiverAuthorizer"], withdrawDelay=extra["withdrawDelay"]
        )

    def header(self, cumulative: int, *, deposit: int = 0) -> str:
        payload = (
            self.payer.deposit_payload(self.config, deposit, cumulative)
            if deposit
            else self.payer.voucher_payload(self.config, cumulative)
        )
        return b64({"x402Version": 2, "accepted": self.offer, "payload": payload})


async def _get(url: str, header: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        return await client.get(PATH, headers={"PAYMENT-SIGNATURE": header})


async def _offer(url: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        answer = await client.get(PATH)
    assert answer.status_code == 402, answer.text
    [offer] = [o for o in unb64(answer.headers["payment-required"])["accepts"] if o["scheme"] == "batch-settlement"]
    return offer


async def _send(step: Step, url: str, channel: Channel, cumulative: int, *, deposit: int = 0) -> httpx.Response:
    answer = await _get(url, channel.header(cumulative, deposit=deposit))
    step.answers.setdefault(cumulative, []).append(answer)
    return answer


async def _states(pool: asyncpg.Pool, channel: Channel) -> dict[int, list[str]]:
    rows = await pool.fetch(
        "SELECT v.max_claimable_atomic, pay.state FROM payments pay JOIN batch_vouchers v ON v.payment_id = pay.id"
        " WHERE pay.payer = $1 ORDER BY pay.id",
        channel.payer.address.lower(),
    )
    states: dict[int, list[str]] = {}
    for row in rows:
        states.setdefault(int(row["max_claimable_atomic"]), []).append(row["state"])
    return states


async def test_sigkill_at_each_batch_step_then_restart_settles_every_voucher_once(
    settings: Settings,
    devnet: EvmDevnet,
    fault_db: FreshDatabase,  # noqa: F811
    relayer_key: str,  # noqa: F811
    gateway_process: Any,
) -> None:
    assert settings.evm is not None
    pay_to = Account.create().address
    ours = replace(
        settings,
        database_url=fault_db.url,
        evm=replace(settings.evm, relayer_key=relayer_key, pay_to=pay_to),
        schemes=("exact", "batch-settlement"),
        batch=BatchSettings(claim_interval_s=IDLE_S, settle_interval_s=IDLE_S),
    )
    pool = fault_db.pool
    started: list[GatewayProcess] = []

    def start(step: str | None) -> GatewayProcess:
        tick = SETTLER_TICK_S if step in faultpoints.BATCH_STEPS[2:] else IDLE_S
        env = {
            "WORLDGATE_SCHEMES": "exact,batch-settlement",
            "WORLDGATE_BATCH_CLAIM_INTERVAL_S": str(tick),
            "WORLDGATE_BATCH_SETTLE_INTERVAL_S": str(tick),
        }
        if step is not None:
            env[faultpoints.VARIABLE] = step
        started.append(gateway_process(gateway_env(ours, **env)))
        return started[-1]

    parts = batch_setup.build(ours, pool, Services(pool=pool))
    steps: list[Step] = []
    try:
        gateway = start(None)
        offer = await _offer(gateway.url)
        price = int(offer["amount"])
        for name in faultpoints.BATCH_STEPS:
            step = Step(name)
            steps.append(step)
            before = usdc_balance(devnet, pay_to)
            channel = Channel(devnet, offer, price)
            opened = await _send(step, gateway.url, channel, price, deposit=20 * price)
            assert opened.status_code == 200, why(opened)
            assert (await _send(step, gateway.url, channel, 2 * price)).status_code == 200

            armed = start(name)
            if name in IN_REQUEST:
                killed = channel.header(3 * price)
                try:
                    answer = await _get(armed.url, killed)
                    step.killed_answered = True
                    armed.kill()
                    raise AssertionError(f"{name}: answered before the kill: {why(answer)}")
                except httpx.HTTPError:
                    armed.wait_dead()  # the connection died with the process
            else:
                await asyncio.to_thread(armed.wait_dead, 60.0)  # its settler reaches the step on its own
            killed_at = time.monotonic()
            step.delta_at_kill = usdc_balance(devnet, pay_to) - before
            states = await _states(pool, channel)
            if name in IN_REQUEST:
                step.state_after_kill = states.get(3 * price, ["none"])[-1]
            else:
                step.state_after_kill = "/".join(sorted({s for v in states.values() for s in v}))

            # restart: a new gateway, unarmed; the old healthy one goes (its replacement serves from here)
            following = start(None)
            gateway.stop()
            gateway = following
            if name in IN_REQUEST:
                # a booked sale is old enough to be served again
                wait = REDELIVER_AFTER_S + 0.2 - (time.monotonic() - killed_at)
                await asyncio.sleep(max(0.0, wait))
                step.answers.setdefault(3 * price, []).append(await _get(gateway.url, killed))  # the retry, once
            else:
                assert (await _send(step, gateway.url, channel, 3 * price)).status_code == 200
            assert (await _send(step, gateway.url, channel, 4 * price)).status_code == 200  # the payer goes on

            report = await parts.settler.flush()
            step.recovered = len(report.recovered)
            step.delta = usdc_balance(devnet, pay_to) - before
            step.states = await _states(pool, channel)
            step.pending_left = await pool.fetchval("SELECT count(*) FROM batch_pending_tx WHERE resolved_at IS NULL")
            step.verified = (await ledger.verify.verify(pool)).ok
    finally:
        await parts.rpc.close()

    _record_rows(steps, price)  # the figures first, so a failure below is in the table too
    for step in steps:
        _check(step, price)
    assert not [g.log_path.name for g in started if "Traceback" in g.log_tail(10**7)]


def _settled(step: Step) -> list[int]:
    return sorted(v for v, states in step.states.items() if states == ["settled"])


def _served(step: Step) -> list[int]:
    return sorted(v for v, answers in step.answers.items() if any(has_data(a) for a in answers))


def _check(step: Step, price: int) -> None:
    answers = {v: [why(a) for a in r] for v, r in step.answers.items()}
    context = f"{step.step}: at the kill {step.state_after_kill}, answers {answers}"
    assert not step.killed_answered, context
    if step.step in STATE_AT_KILL:
        assert step.state_after_kill == STATE_AT_KILL[step.step], context
    vouchers = [price * i for i in range(1, 5)]
    # every voucher booked once, settled, and its data delivered (the killed one by its retry)
    assert step.states == {v: ["settled"] for v in vouchers}, f"{context}; ledger {step.states}"
    assert _served(step) == vouchers, context
    # settled once on chain: payTo rose by exactly the vouchers sold
    assert step.delta == len(vouchers) * price, f"{context}; payTo rose {step.delta}"
    assert step.pending_left == 0, context
    assert step.recovered == (1 if step.step in ("batch_after_claim", "batch_after_sweep") else 0), context
    assert step.delta_at_kill == (2 * price if step.step == "batch_after_sweep" else 0), context
    assert step.verified, context
    assert all(a.status_code < 500 or a.status_code in INTENDED_5XX for r in step.answers.values() for a in r)


def _record_rows(steps: list[Step], price: int) -> None:
    for step in steps:
        settled, served = _settled(step), _served(step)
        charged = step.delta // price
        answers = [a for r in step.answers.values() for a in r]
        in_request = step.step in IN_REQUEST
        killed = step.answers.get(3 * price, []) if in_request else []
        retry = f"; the voucher retried once: {why(killed[-1])}" if killed else ""
        recovered = f"; the flush recorded {step.recovered} landed transaction(s) by hash" if step.recovered else ""
        died = "the killed request got no answer" if in_request else "the settler's process died"
        swept = f", payTo already +{step.delta_at_kill}" if step.delta_at_kill else ""
        action = (
            "deposit and 2 vouchers through a healthy gateway, the 3rd through a gateway armed at the step; "
            "killed, a new process started, the 3rd voucher retried once, a 4th sent, then a flush"
            if in_request
            else "deposit and 2 vouchers through a healthy gateway, then a gateway armed at the step left to its "
            "settler's timer; killed, a new process started, 2 more vouchers, then a flush"
        )
        record(
            FaultRow(
                section=SECTION,
                fault=f"SIGKILL {step.step}: {WHAT[step.step]}",
                action=action,
                outcome=f"{died}; ledger at the kill: {step.state_after_kill}{swept}{retry}{recovered}; after the "
                f"flush {len(settled)}/{len(step.states)} vouchers settled, each once, payTo +{step.delta}",
                requests=step.requests,
                served=sum(has_data(a) for a in answers),
                settled=len(settled),
                charged=charged,
                served_unsettled=len(set(served) - set(settled)),
                double_charged=max(0, charged - len(settled)) + sum(len(s) > 1 for s in step.states.values()),
                lost=sum(1 for s in step.states.values() if s and s[-1] in ("accepted", "claimed_onchain")),
                status_500=sum(1 for a in answers if a.status_code >= 500 and a.status_code not in INTENDED_5XX),
                charged_undelivered=len(set(settled) - set(served)),
                notes=(f"one channel, 4 vouchers of {price} atomic units; charged: vouchers swept to payTo",),
            )
        )
