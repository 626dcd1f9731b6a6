"""SIGKILL between claim and response: the gateway process dies at a random step of a paid request, on EVM
and Solana, then a new process starts on the same Postgres, Redis and chains, reconciles, and the payer
retries with the same payment.

The kill steps, in the order a request passes them (app/runtime/faultpoints.py; the gateway kills itself there):
after_claim, after_verify, after_serve, after_broadcast (on chain, not yet booked), after_record (killed
from outside while the booking transaction has the settled row written and is blocked before its journal
entry, by a lock this test holds on journal_entries, at a random moment 0-250 ms into that wait),
after_journal (booked, the response not yet sent). Each kill draws its step, chain and whether the payment
carries a payment-identifier from a seeded generator (the seed is printed and in the table; rerun one
with WORLDGATE_FAULT_SEED=<seed>); every step is drawn on both chains at least once.

After each kill: every claim is resolved (settled if the transfer landed, expired/failed if not), 0
settlements missing from the ledger, each payer debited at most once, and the retry gets the designed
answer: a payment that settled is served again under its settlement, without a second charge, with or
without a payment-identifier (app/usecases/retries.py `_redeliver`, app/usecases/checkout.py
`_claimed_before`: its answer never left), and one that did not settle is told it was not charged
(409 `payment_not_charged`, reason `expired`, no quote).
"""

from __future__ import annotations

import asyncio
import os
import random
import secrets
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
from solders.keypair import Keypair

import ledger
from app.runtime import faultpoints
from app.runtime.settings import Settings, replace
from app.usecases.retries import REDELIVER_AFTER_S
from ledger import audit
from payments.devnet.evm import EvmDevnet
from payments.devnet.solana_process import SolanaDevnetProcess

from ..chain import authorization_used, b64, unb64
from ..ledger_helpers import FreshDatabase
from .conftest import GatewayProcess, admin_token, gateway_env
from .report import FaultRow, record
from .rig import Payer, evm_payer, fault_db, fee_payer, has_data, relayer_key, sign, svm_payer, why  # noqa: F401

PATH = "/v1/streams/static.capitals"
EXTERNAL = "after_record"  # not a hook: a lock held by the test stops the booking transaction there
STEPS = (*faultpoints.STEPS[:4], EXTERNAL, faultpoints.STEPS[4])
SETTLES = {"after_broadcast", EXTERNAL, "after_journal"}  # the transfer is on chain by then
KILLS = 24  # every step on both chains (12), then 12 at random
FINAL = {"settled", "failed", "expired", "released"}
SECTION = "Process crashes (SIGKILL)"
WHAT = {
    "after_claim": "claimed in Postgres, not yet verified",
    "after_verify": "verified, the handler not yet run",
    "after_serve": "the handler ran (its answer held back), settlement not started",
    "after_broadcast": "the transfer confirmed on chain, not yet booked",
    EXTERNAL: "settled row written, the journal entry not: inside the booking transaction",
    "after_journal": "settled and booked, the response not yet sent",
}


@dataclass
class Kill:
    step: str
    family: str  # "eip155" | "solana"
    with_id: bool  # the payment carries an x402 payment-identifier
    payer: Payer | None = None
    header: str = ""
    first_answered: bool = False  # the killed request got an answer (it must not)
    state_after_kill: str = "-"
    state: str = "-"  # after restart + reconcile
    debits: int = 0
    retry: httpx.Response | None = None
    debits_after_retry: int = 0
    journal_entries: int = 0
    tx_hash: str | None = None
    notes: list[str] = field(default_factory=list)


def _with_id(header: str) -> str:
    document = unb64(header)
    document["extensions"] = {"payment-identifier": {"info": {"id": f"kill-{secrets.token_hex(12)}"}}}
    return b64(document)


def _plan(rng: random.Random) -> list[Kill]:
    pairs = [(step, family) for step in STEPS for family in ("eip155", "solana")]
    pairs += [(rng.choice(STEPS), rng.choice(("eip155", "solana"))) for _ in range(KILLS - len(pairs))]
    rng.shuffle(pairs)
    return [Kill(step, family, rng.random() < 0.5) for step, family in pairs]


async def _offers(url: str) -> dict[str, dict[str, Any]]:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        answer = await client.get(PATH)
    assert answer.status_code == 402, answer.text
    accepts = unb64(answer.headers["payment-required"])["accepts"]
    return {o["network"].split(":")[0]: o for o in accepts if o["scheme"] == "exact"}  # batch has its own tests


async def _get(url: str, header: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        return await client.get(PATH, headers={"PAYMENT-SIGNATURE": header})


async def _blocked_journal_insert(pool: asyncpg.Pool) -> bool:
    return bool(
        await pool.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND wait_event_type = 'Lock' AND query LIKE 'INSERT INTO journal_entries%'"
        )
    )


async def _kill_in_booking(gateway: GatewayProcess, pool: asyncpg.Pool, kill: Kill, rng: random.Random) -> None:
    """Hold journal_entries so the booking transaction stops after its settled row, then SIGKILL the gateway
    at a random moment while it waits there; the transaction dies uncommitted with the process."""
    async with pool.acquire() as connection:
        transaction = connection.transaction()
        await transaction.start()
        await connection.execute("LOCK TABLE journal_entries IN SHARE MODE")
        request = asyncio.create_task(_get(gateway.url, kill.header))
        try:
            while not await _blocked_journal_insert(pool):
                assert not request.done(), f"the request finished before booking: {request.result().text}"
                await asyncio.sleep(0.01)
            await asyncio.sleep(rng.uniform(0.0, 0.25))
            gateway.kill()
        finally:
            await transaction.rollback()
        try:
            await request
            kill.first_answered = True
        except httpx.HTTPError:
            pass


async def _kill_at_hook(gateway: GatewayProcess, kill: Kill) -> None:
    try:
        answer = await _get(gateway.url, kill.header)
    except httpx.HTTPError:
        gateway.wait_dead()  # the connection died with the process: no answer at all
        return
    kill.first_answered = True  # the step was never reached (a failure `_check` reports): end it here
    kill.notes.append(f"answered before the kill: {why(answer)}")
    gateway.kill()


async def _state(pool: asyncpg.Pool, payer: Payer) -> tuple[str, int | None]:
    rows = await pool.fetch("SELECT id, state FROM payments WHERE payer = $1", payer.address)
    assert len(rows) <= 1, rows
    return (rows[0]["state"], rows[0]["id"]) if rows else ("-", None)


async def _reconcile(url: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=url, timeout=120) as client:
        answer = await client.post("/admin/api/reconcile", headers={"authorization": f"Bearer {admin_token()}"})
    assert answer.status_code == 200, answer.text
    report: dict[str, Any] = answer.json()
    assert report["errors"] == [] and report["skipped"] is None, report
    return report


def _check_retry(kill: Kill, context: str) -> None:
    """The designed answer to a retry with the same payment after the crash and recovery."""
    retry = kill.retry
    assert retry is not None, context
    if kill.state == "settled":
        assert retry.status_code == 200 and has_data(retry), f"{context}: {why(retry)}"
        receipt = unb64(retry.headers["payment-response"])
        assert receipt["success"] is True and receipt["transaction"] == kill.tx_hash, f"{context}: {receipt}"
    else:
        assert retry.status_code == 409 and not has_data(retry), f"{context}: {why(retry)}"
        assert "payment-required" not in retry.headers, f"{context}: a quote invites a second payment"
        refusal = retry.json()
        assert refusal["error"] == "payment_not_charged" and refusal["reason"] == "expired", f"{context}: {refusal}"
        assert "not charged" in refusal["message"], f"{context}: {refusal}"


async def test_sigkill_at_random_steps_then_restart(
    settings: Settings,
    devnet: EvmDevnet,
    solana: SolanaDevnetProcess,
    fault_db: FreshDatabase,  # noqa: F811
    relayer_key: str,  # noqa: F811
    fee_payer: Keypair,  # noqa: F811
    gateway_process: Any,
) -> None:
    seed = int(os.environ.get("WORLDGATE_FAULT_SEED") or secrets.randbits(32))
    print(f"SIGKILL scenario seed: {seed} (rerun with WORLDGATE_FAULT_SEED={seed})")
    rng = random.Random(seed)
    plan = _plan(rng)
    assert settings.evm is not None and settings.svm is not None
    ours = replace(
        settings,
        database_url=fault_db.url,
        evm=replace(settings.evm, relayer_key=relayer_key),
        svm=replace(settings.svm, fee_payer_key=str(fee_payer)),
    )
    pool = fault_db.pool

    started: list[GatewayProcess] = []

    def start(step: str | None) -> GatewayProcess:
        armed = {faultpoints.VARIABLE: step} if step in faultpoints.STEPS else {}
        started.append(gateway_process(gateway_env(ours, **armed)))
        return started[-1]

    gateway = start(plan[0].step)
    offers = await _offers(gateway.url)
    for index, kill in enumerate(plan):
        offer = offers[kill.family]
        kill.payer = evm_payer(devnet, offer) if kill.family == "eip155" else svm_payer(solana.state, offer)
        header = sign(kill.payer, offer, devnet, solana.state)
        kill.header = _with_id(header) if kill.with_id else header
        if kill.step == EXTERNAL:
            await _kill_in_booking(gateway, pool, kill, rng)
        else:
            await _kill_at_hook(gateway, kill)
        assert not gateway.alive()
        killed_at = time.monotonic()
        kill.state_after_kill, payment_id = await _state(pool, kill.payer)

        # restart (armed for the next kill), reconcile through it, then retry the same payment
        following = plan[index + 1].step if index + 1 < len(plan) else None
        gateway = start(following)
        await _reconcile(gateway.url)
        kill.state, payment_id = await _state(pool, kill.payer)
        kill.debits = kill.payer.debited(devnet, solana.state)
        kill.tx_hash = await pool.fetchval("SELECT tx_hash FROM payments WHERE id = $1", payment_id)
        kill.journal_entries = await pool.fetchval(
            "SELECT count(*) FROM journal_entries WHERE payment_id = $1", payment_id
        )
        # a sale its killed request settled is redelivered once it is REDELIVER_AFTER_S old
        await asyncio.sleep(max(0.0, REDELIVER_AFTER_S - (time.monotonic() - killed_at)))
        kill.retry = await _get(gateway.url, kill.header)
        kill.debits_after_retry = kill.payer.debited(devnet, solana.state)

    _record_rows(plan, seed)  # the figures first, so a failure below is in the table too
    for index, kill in enumerate(plan):
        _check(kill, devnet, f"kill {index} ({kill.step}, {kill.family}, id={kill.with_id}, seed {seed})")

    # the ledger after every crash: balanced, nothing flagged, every settled payment found on chain
    assert (await ledger.verify.verify(pool)).ok
    final = await _reconcile(gateway.url)
    assert final["flagged"] == 0 and final["left_pending"] == 0, final
    assert await audit.open_flags(pool, 100) == []
    open_rows = await pool.fetchval("SELECT count(*) FROM payments WHERE state <> ALL($1::text[])", list(FINAL))
    assert open_rows == 0
    assert not [g.log_path.name for g in started if "Traceback" in g.log_tail(10**7)]


def _check(kill: Kill, devnet: EvmDevnet, context: str) -> None:
    assert not kill.first_answered, f"{context}: {kill.notes}"
    assert kill.state in FINAL, f"{context}: claim left {kill.state}"
    assert kill.debits == (1 if kill.state == "settled" else 0), f"{context}: {kill.state}, {kill.debits} debits"
    assert kill.debits_after_retry == kill.debits, f"{context}: the retry charged again"
    assert kill.journal_entries == (1 if kill.state == "settled" else 0), context
    if kill.family == "eip155":
        authorization = unb64(kill.header)["payload"]["authorization"]
        used = authorization_used(devnet, authorization["from"], authorization["nonce"])
        assert used == (kill.state == "settled"), context
    if kill.step in SETTLES:
        assert kill.state == "settled", context
    else:
        assert kill.state == "expired" and kill.debits == 0, context
    _check_retry(kill, context)


def _record_rows(plan: list[Kill], seed: int) -> list[FaultRow]:
    rows = []
    for step in STEPS:
        kills = [k for k in plan if k.step == step]
        retries = [k.retry for k in kills if k.retry is not None]
        states = Counter(k.state for k in kills)
        resolved = sum(n for state, n in states.items() if state in FINAL)
        after_kill = Counter(k.state_after_kill for k in kills)
        answers = Counter(why(r) + (" (payment id)" if k.with_id else "") for k, r in zip(kills, retries, strict=True))
        chains = Counter("EVM" if k.family == "eip155" else "Solana" for k in kills)
        undelivered = sum(1 for k in kills if k.debits and not (k.retry is not None and has_data(k.retry)))
        outcome = (
            "the killed request got no answer; ledger at the kill: "
            + ", ".join(f"{n} {s}" for s, n in sorted(after_kill.items()))
            + f"; after restart + reconcile {resolved}/{len(kills)} claims resolved ("
            + ", ".join(f"{n} {s}" for s, n in sorted(states.items()))
            + "); the retry with the same payment: "
            + ", ".join(f"{n} x {a}" for a, n in sorted(answers.items()))
        )
        notes = [f"{', '.join(f'{n} {c}' for c, n in sorted(chains.items()))}; seed {seed}"]
        if undelivered:
            notes.append(f"{undelivered} payer(s) charged and not served on the retry")
        rows.append(
            record(
                FaultRow(
                    section=SECTION,
                    fault=f"SIGKILL {step}: {WHAT[step]}",
                    action=f"{len(kills)} payments, each with its own payer; gateway killed, a new process started, "
                    "reconciled via the admin API, the payment retried",
                    outcome=outcome,
                    requests=2 * len(kills),
                    served=sum(has_data(r) for r in retries),
                    settled=states["settled"],
                    charged=sum(k.debits_after_retry for k in kills),
                    served_unsettled=sum(
                        1 for k in kills if not k.debits and k.retry is not None and has_data(k.retry)
                    ),
                    double_charged=sum(1 for k in kills if k.debits_after_retry > 1),
                    lost=sum(1 for k in kills if k.debits and k.state != "settled"),
                    status_500=sum(1 for r in retries if r.status_code >= 500),
                    notes=tuple(notes),
                    charged_undelivered=undelivered,
                )
            )
        )
    return rows
