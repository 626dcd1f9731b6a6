"""SIGKILL of the whole gateway with paid requests in flight while the chains run on, a restart, and every client
whose request died retrying its same payment at once (issue 21).

Each round starts a gateway, sends IN_FLIGHT payments (EVM and Solana, about half with a payment-identifier)
spread over a few hundred milliseconds, and SIGKILLs the gateway at a random moment among them. In most rounds
one step is slow on both chains' nodes (SLOW: the verification's simulation, the broadcast's answer after the
node took it, the receipt), so that the kill finds claims held at that step too: claimed, settling with a
transaction on its way or landed and unbooked. The nodes are fast again for the restart. A new gateway
starts on the same Postgres and chains, and nothing else runs: no reconciliation. Every client
that got no answer sends its payment again at once, all together, and again after each Retry-After, as a
client told "pending" does. The retry resolves the open claim itself (app/usecases/recovery.py).

What must hold, counted from the answers, the chains and the ledger: a payer whose money moved got the data;
no retry is a 402 asking a charged (or maybe charged) payer to pay again; nobody is charged twice; after the
retries every claim is closed, every on-chain transfer booked, and reconciliation afterwards has nothing to
fix; the ledger's settled amount per network equals payTo's on-chain credit over the run.
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

import httpx
from solders.keypair import Keypair

import ledger
from app.runtime.settings import Settings
from payments.devnet.evm import EvmDevnet
from payments.devnet.solana_process import SolanaDevnetProcess

from .. import svm
from ..chain import b64, unb64, usdc_balance
from ..ledger_helpers import FreshDatabase
from .conftest import GatewayProcess, gateway_env
from .proxy import FaultProxy
from .report import FaultRow, record
from .rig import (  # noqa: F401 - fixtures
    Payer,
    evm_payer,
    fault_db,
    fee_payer,
    gateway_settings,
    has_data,
    reconcile,
    relayer_key,
    sign,
    svm_payer,
    why,
)

PATH = "/v1/streams/static.capitals"
ROUNDS = 5
IN_FLIGHT = 10  # payments in flight when the gateway dies, per round
SPREAD_S = 0.3  # the requests of a round start over this long
KILL_WITHIN_S = (0.05, 0.6)  # the kill comes this long after the first request
RETRY_BUDGET_S = 120.0  # a client keeps retrying a pending payment (after each Retry-After) this long
SLOW_S = 0.5  # how long a slow node takes over one step
SLOW = {  # a round's slow step: the RPC methods (EVM, Solana) answered SLOW_S late, after the node acted on them
    "verification": ("eth_call", "simulateTransaction"),
    "broadcast": ("eth_sendRawTransaction", "sendTransaction"),
    "receipt": ("eth_getTransactionReceipt", "getSignatureStatuses"),
    "none": (),
}
FINAL = {"settled", "failed", "expired", "released"}
SECTION = "Process crashes (SIGKILL)"


@dataclass
class Client:
    """One payer, its one payment, and every answer it got."""

    payer: Payer
    header: str
    with_id: bool
    slow: str = "none"  # the step the nodes were slow at when the gateway died
    first: httpx.Response | None = None  # None: the connection died with the gateway
    retries: list[httpx.Response] = field(default_factory=list)
    state_at_kill: str = "-"
    state: str = "-"  # after the retries
    debits: int = 0
    resolved_after_s: float | None = None  # from the first retry to its final answer

    @property
    def answers(self) -> list[httpx.Response]:
        return ([self.first] if self.first is not None else []) + self.retries

    @property
    def served(self) -> bool:
        return any(has_data(a) for a in self.answers)


def _with_id(header: str) -> str:
    document = unb64(header)
    document["extensions"] = {"payment-identifier": {"info": {"id": f"crash-{secrets.token_hex(12)}"}}}
    return b64(document)


def _pending(answer: httpx.Response) -> bool:
    return answer.status_code == 503 and "retry-after" in answer.headers


def _not_charged(answer: httpx.Response) -> bool:
    """A 409 `payment_not_charged` (its settlement failed, or it expired unsettled): no quote, nothing charged."""
    if answer.status_code != 409 or "payment-required" in answer.headers:
        return False
    try:
        message = str(answer.json().get("message", ""))
    except ValueError:
        return False
    return answer.json().get("error") == "payment_not_charged" and "not charged" in message


def told_to_pay_again(client: Client) -> int:
    """Retries answered with a 402 (which asks for a payment) or told "not charged" while the payer's money
    moved."""
    return sum(1 for a in client.retries if a.status_code == 402 or (client.debits and _not_charged(a)))


async def _send(url: str, header: str, delay_s: float) -> httpx.Response | None:
    await asyncio.sleep(delay_s)
    try:
        async with httpx.AsyncClient(base_url=url, timeout=60) as http:
            return await http.get(PATH, headers={"PAYMENT-SIGNATURE": header})
    except httpx.HTTPError:
        return None  # the gateway died under it


async def _retry_until_final(url: str, client: Client) -> None:
    """Send the same payment again, and again after each Retry-After, until an answer that is not pending."""
    started = time.monotonic()
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        while True:
            answer = await http.get(PATH, headers={"PAYMENT-SIGNATURE": client.header})
            client.retries.append(answer)
            if not _pending(answer) or time.monotonic() - started > RETRY_BUDGET_S:
                client.resolved_after_s = time.monotonic() - started
                return
            await asyncio.sleep(min(float(answer.headers["retry-after"]), 15.0))


async def _states(pool: Any, clients: list[Client]) -> dict[str, str]:
    rows = await pool.fetch(
        "SELECT payer, state FROM payments WHERE payer = ANY($1::text[])", [c.payer.address for c in clients]
    )
    return {r["payer"]: r["state"] for r in rows}


async def _settled_atomic(pool: Any, family: str) -> int:
    total = await pool.fetchval(
        "SELECT COALESCE(sum(amount_atomic), 0) FROM payments WHERE state = 'settled' AND network LIKE $1",
        f"{family}:%",
    )
    return int(total)


async def test_sigkill_with_payments_in_flight_then_every_client_retries_at_once(
    settings: Settings,
    devnet: EvmDevnet,
    solana: SolanaDevnetProcess,
    fault_db: FreshDatabase,  # noqa: F811
    relayer_key: str,  # noqa: F811
    fee_payer: Keypair,  # noqa: F811
    gateway_process: Any,
) -> None:
    seed = int(os.environ.get("WORLDGATE_FAULT_SEED") or secrets.randbits(32))
    print(f"crash-retry scenario seed: {seed} (rerun with WORLDGATE_FAULT_SEED={seed})")
    rng = random.Random(seed)
    assert settings.evm is not None and settings.svm is not None and settings.svm.rpc_url
    nodes = [FaultProxy(devnet.rpc_url).start(), FaultProxy(settings.svm.rpc_url).start()]
    try:
        ours = gateway_settings(
            settings,
            fault_db.url,
            relayer_key=relayer_key,
            fee_payer=fee_payer,
            evm_rpc=nodes[0].url,
            svm_rpc=nodes[1].url,
        )
        await _scenario(ours, devnet, solana, fault_db, gateway_process, nodes, rng, seed)
    finally:
        for node in nodes:
            node.stop()


async def _scenario(
    ours: Settings,
    devnet: EvmDevnet,
    solana: SolanaDevnetProcess,
    fresh: FreshDatabase,
    gateway_process: Any,
    nodes: list[FaultProxy],
    rng: random.Random,
    seed: int,
) -> None:
    pool = fresh.pool
    started: list[GatewayProcess] = []

    def start() -> GatewayProcess:
        started.append(gateway_process(gateway_env(ours)))
        return started[-1]

    gateway = start()
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as http:
        quote = await http.get(PATH)
    accepts = unb64(quote.headers["payment-required"])["accepts"]
    offers = {o["network"].split(":")[0]: o for o in accepts if o["scheme"] == "exact"}  # batch: its own tests
    pay_to = {family: offer["payTo"] for family, offer in offers.items()}
    credit_before = {
        "eip155": usdc_balance(devnet, pay_to["eip155"]),
        "solana": svm.usdc_balance(solana.state, pay_to["solana"]),
    }

    everyone: list[Client] = []
    slow_steps = [*SLOW, *(rng.choice(list(SLOW)) for _ in range(ROUNDS - len(SLOW)))]
    rng.shuffle(slow_steps)
    for slow in slow_steps:
        for node, method in zip(nodes, SLOW[slow], strict=False):  # none at all in a round without a slow step
            node.fault(method, "pass", delay_s=SLOW_S)
        clients = []
        for index in range(IN_FLIGHT):
            family = "eip155" if index % 2 == 0 else "solana"
            offer = offers[family]
            payer = evm_payer(devnet, offer) if family == "eip155" else svm_payer(solana.state, offer)
            with_id = rng.random() < 0.5
            header = sign(payer, offer, devnet, solana.state)
            clients.append(Client(payer, _with_id(header) if with_id else header, with_id, slow=slow))
        requests = [asyncio.create_task(_send(gateway.url, c.header, rng.uniform(0, SPREAD_S))) for c in clients]
        await asyncio.sleep(rng.uniform(*KILL_WITHIN_S))
        gateway.kill()  # the whole gateway, mid-flight; anvil and the Solana devnet run on
        for node in nodes:
            node.clear()
        for client, answer in zip(clients, await asyncio.gather(*requests), strict=True):
            client.first = answer
        at_kill = await _states(pool, clients)
        for client in clients:
            client.state_at_kill = at_kill.get(client.payer.address, "-")

        gateway = start()  # no reconciliation: the retries alone resolve what the dead process left
        waiting = [c for c in clients if c.first is None or c.first.status_code >= 500]
        await asyncio.gather(*(_retry_until_final(gateway.url, c) for c in waiting))
        after = await _states(pool, clients)
        for client in clients:
            client.state = after.get(client.payer.address, "-")
            client.debits = client.payer.debited(devnet, solana.state)
        everyone += clients

    # reconciliation afterwards: nothing left for it to resolve or flag
    report = await reconcile(pool, ours)
    ledger_ok = (await ledger.verify.verify(pool)).ok
    credit = {
        "eip155": usdc_balance(devnet, pay_to["eip155"]) - credit_before["eip155"],
        "solana": svm.usdc_balance(solana.state, pay_to["solana"]) - credit_before["solana"],
    }
    booked = {family: await _settled_atomic(pool, family) for family in ("eip155", "solana")}
    rows = [_row(family, everyone, seed, report, credit, booked) for family in ("eip155", "solana")]
    gateway.stop()

    for client in everyone:
        context = f"{client.payer.family} {client.payer.address} (seed {seed}): {[why(a) for a in client.answers]}"
        assert client.debits <= 1, f"charged twice: {context}"
        assert not client.debits or client.served, f"charged, never served: {context}"
        assert client.served or client.debits == 0, context
        assert told_to_pay_again(client) == 0, f"told to pay again: {context}"
        assert not client.retries or not _pending(client.retries[-1]), f"still pending after the budget: {context}"
        assert client.state in FINAL | {"-"}, f"claim left {client.state}: {context}"
        assert (client.state == "settled") == bool(client.debits), (
            f"ledger {client.state}, {client.debits} debits: {context}"
        )
        assert all(a.status_code < 500 or a.status_code in (502, 503, 504) for a in client.answers), context
    assert report.errors == [] and report.resolved == 0 and report.flagged == 0, report
    assert ledger_ok
    assert credit == booked, f"payTo's on-chain credit {credit} against the ledger's settled amounts {booked}"
    assert all(r.charged_undelivered == 0 and r.double_charged == 0 and r.lost == 0 for r in rows)
    assert not [g.log_path.name for g in started if "Traceback" in g.log_tail(10**7)]


def _row(
    family: str, everyone: list[Client], seed: int, report: Any, credit: dict[str, int], booked: dict[str, int]
) -> FaultRow:
    clients = [c for c in everyone if c.payer.family == family]
    retried = [c for c in clients if c.retries]
    at_kill = Counter(c.state_at_kill for c in clients)
    finals = Counter(why(c.retries[-1]) + (" (payment id)" if c.with_id else "") for c in retried)
    at_once = sum(1 for c in retried if len(c.retries) == 1)
    told = sum(told_to_pay_again(c) for c in clients)
    not_charged = sum(1 for c in retried if _not_charged(c.retries[-1]))
    slowest = max((c.resolved_after_s or 0.0 for c in retried), default=0.0)
    name = "EVM" if family == "eip155" else "Solana"
    outcome = (
        "ledger at the kill: "
        + ", ".join(f"{n} {s}" for s, n in sorted(at_kill.items()))
        + f"; {len(retried)} clients got no answer (or a 5xx) and retried at once, no reconciliation: {at_once} "
        + f"answered at their first retry, {len(retried) - at_once} after pending (Retry-After), all within "
        + f"{slowest:.1f} s; final answers: "
        + ", ".join(f"{n} x {a}" for a, n in sorted(finals.items()))
        + f"; retries told to pay again: {told}; told not charged: {not_charged}"
    )
    slow = ", ".join(sorted({c.slow for c in clients}))
    notes = [
        f"{ROUNDS} kills x {IN_FLIGHT} payments (both chains), the nodes slow ({SLOW_S} s) at: {slow}; seed {seed}",
        f"reconcile afterwards: resolved {report.resolved}, flagged {report.flagged}",
        f"payTo credited {credit[family]} on chain, ledger settled {booked[family]}",
    ]
    return record(
        FaultRow(
            section=SECTION,
            fault=f"SIGKILL of the whole gateway with {IN_FLIGHT} payments in flight ({name}), the chain running on",
            action="restart, then every client without an answer retries its payment at once, and after each "
            "Retry-After",
            outcome=outcome,
            requests=sum(1 + len(c.retries) for c in clients),  # the first attempt, answered or not
            served=sum(has_data(a) for c in clients for a in c.answers),
            settled=sum(1 for c in clients if c.debits),
            charged=sum(c.debits for c in clients),
            served_unsettled=sum(sum(has_data(a) for a in c.answers) for c in clients if not c.debits),
            double_charged=sum(1 for c in clients if c.debits > 1),
            lost=sum(1 for c in clients if c.debits and c.state != "settled"),
            status_500=sum(
                1 for c in clients for a in c.answers if a.status_code >= 500 and a.status_code not in (502, 503, 504)
            ),
            charged_undelivered=sum(1 for c in clients if c.debits and not c.served),
            told_to_pay_again=told,
            notes=tuple(notes),
        )
    )
