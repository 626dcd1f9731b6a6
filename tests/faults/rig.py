"""What the fault scenarios of this package share: a ledger of their own, keys of their own, payers on both
chains, reconciliation as `worldgate ledger reconcile` runs it, and counting (from HTTP answers, the chains
and the ledger) into the reliability table's rows.

A test module uses the fixtures by importing them: `from .rig import fault_db, relayer_key, fee_payer  # noqa: F401`.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
import pytest
from eth_account import Account
from solders.keypair import Keypair

from app.runtime.settings import ReconcileSettings, Settings, replace
from app.usecases.reconcile import Reconciler, RunReport, auditors_for, chains_of
from payments.devnet.evm import EvmDevnet

from .. import svm
from ..chain import new_payer, pay_for, rpc, unb64, usdc_balance
from ..ledger_helpers import FreshDatabase, fresh_database
from ..services import Database
from .report import FaultRow, record

PATH = "/v1/streams/static.capitals"  # a static stream: its data needs no upstream, so only the fault decides
FUNDED = 10_000_000  # every payer starts with this much test USDC
INTENDED_5XX = (502, 503, 504)  # refusals a client can retry; anything else >= 500 is a failure
AT_ONCE = ReconcileSettings(interval_s=0, grace_s=0.0, settled_sample=1000)  # no grace: every open row is judged


@pytest.fixture(scope="module")
async def fault_db(database: Database) -> AsyncIterator[FreshDatabase]:
    """A ledger of the module's own: reconcile runs over it without touching other tests' rows."""
    async with fresh_database(database) as fresh:
        yield fresh


@pytest.fixture(scope="module")
def relayer_key(devnet: EvmDevnet) -> str:
    """A relayer of the module's own, so broken broadcasts never disturb the session gateway's nonces."""
    key = "0x" + os.urandom(32).hex()
    rpc(devnet, "anvil_setBalance", Account.from_key(key).address, hex(10**20))
    return key


@pytest.fixture(scope="module")
def fee_payer(solana: Any) -> Keypair:
    keypair = Keypair()
    svm.rpc(solana.state, "requestAirdrop", str(keypair.pubkey()), 10**10)
    return keypair


def gateway_settings(
    settings: Settings,
    database_url: str,
    *,
    relayer_key: str,
    fee_payer: Keypair,
    evm_rpc: str | None = None,
    svm_rpc: str | None = None,
    **changes: Any,
) -> Settings:
    """The session's settings on another ledger, with our keys, the RPCs through proxies, and short waits
    (a faulted call costs its timeout: the suite's budget is counted in them)."""
    assert settings.evm is not None and settings.svm is not None
    evm = replace(
        settings.evm,
        rpc_url=evm_rpc or settings.evm.rpc_url,
        relayer_key=relayer_key,
        rpc_timeout_s=1.0,
        receipt_timeout_s=1.0,
    )
    solana = replace(
        settings.svm,
        rpc_url=svm_rpc or settings.svm.rpc_url,
        fee_payer_key=str(fee_payer),
        rpc_timeout_s=1.0,
        confirm_timeout_s=1.0,
    )
    return replace(settings, database_url=database_url, evm=evm, svm=solana, **changes)


async def reconcile(pool: asyncpg.Pool, settings: Settings, *, remote: bool = False) -> RunReport:
    """One run as `worldgate ledger reconcile` makes it, asking the chains directly (no proxy); `remote`:
    the gateway settles through a remote facilitator (which writes no hash ahead)."""
    auditors, rpcs = auditors_for(chains_of(settings))
    try:
        return await Reconciler(pool, auditors, AT_ONCE, write_ahead=not remote).run("cli")
    finally:
        for client in rpcs:
            await client.close()


async def settle_up(
    pool: asyncpg.Pool, settings: Settings, devnet: EvmDevnet, state: dict[str, Any], sales: Sequence[Sale],
    *, remote: bool = False,
) -> None:  # fmt: skip
    """Reconcile, then read every sale's final ledger state and its debits from the chain."""
    report = await reconcile(pool, settings, remote=remote)
    assert report.errors == [], report
    for sale in sales:
        sale.after_reconcile = await ledger_state(pool, sale.payer)
        sale.debits = sale.payer.debited(devnet, state)


# ---- payers and what the chain says about them ----


@dataclass
class Payer:
    """One fresh payer holding FUNDED, on EVM (a key) or Solana (a keypair), and the price it pays."""

    family: str
    price: int
    key: str | None = None
    keypair: Keypair | None = None

    @property
    def address(self) -> str:  # as the ledger stores it
        if self.family == "eip155":
            return Account.from_key(self.key).address.lower()
        assert self.keypair is not None
        return str(self.keypair.pubkey())

    def debited(self, devnet: EvmDevnet, solana_state: dict[str, Any]) -> int:
        """How many times the price left this payer's wallet (on chain)."""
        if self.family == "eip155":
            balance = usdc_balance(devnet, Account.from_key(self.key).address)
        else:
            assert self.keypair is not None
            balance = svm.usdc_balance(solana_state, self.keypair.pubkey())
        spent = FUNDED - balance
        assert spent % self.price == 0, f"debited {spent}, not a multiple of {self.price}"
        return spent // self.price


def evm_payer(devnet: EvmDevnet, offer: dict[str, Any]) -> Payer:
    return Payer("eip155", int(offer["amount"]), key=new_payer(devnet, FUNDED))


def svm_payer(solana_state: dict[str, Any], offer: dict[str, Any]) -> Payer:
    return Payer("solana", int(offer["amount"]), keypair=svm.new_payer(solana_state, FUNDED))


def sign(payer: Payer, offer: dict[str, Any], devnet: EvmDevnet, solana_state: dict[str, Any], **fields: Any) -> str:
    """A PAYMENT-SIGNATURE for `offer` (EVM authorization fields such as validBefore may be overridden)."""
    if payer.family == "eip155":
        assert payer.key is not None
        return pay_for(payer.key, devnet, offer, **fields)
    assert payer.keypair is not None
    return svm.pay(payer.keypair, solana_state, offer)


def expiring_soon(seconds: int) -> dict[str, int]:
    """Authorization fields that make an EVM payment unusable on chain `seconds` from now."""
    return {"valid_before": int(time.time()) + seconds}


async def ledger_state(pool: asyncpg.Pool, payer: Payer) -> list[str]:
    rows = await pool.fetch("SELECT state FROM payments WHERE payer = $1 ORDER BY id", payer.address)
    return [r["state"] for r in rows]


# ---- answers ----


def has_data(answer: httpx.Response) -> bool:
    """Did this answer carry the paid data? (every paid stream answer has `records`)"""
    if answer.status_code != 200:
        return False
    try:
        return "records" in answer.json()
    except ValueError:
        return False


def why(answer: httpx.Response) -> str:
    """`402 settlement_pending`, `503 unexpected_verify_error`, `200`: an answer in a few words."""
    if answer.status_code == 200:
        return "200 with data" if has_data(answer) else "200 without data"
    try:
        document = answer.json()
    except ValueError:
        return f"{answer.status_code} (not JSON)"
    reason = document.get("error") if answer.status_code == 402 else document.get("reason") or document.get("error")
    return f"{answer.status_code} {reason}"


def assert_safe(sale: Sale) -> None:
    """What must hold under every fault: data only for a payment charged on chain, at most one charge, a
    charge booked as settled (nothing lost), no charge ended failed/released/expired (or never claimed),
    and no 5xx but the intended 502/503/504."""
    assert not any(has_data(a) for a in sale.answers) or sale.debits == 1, "data for a payment that did not settle"
    assert sale.debits <= 1, "charged twice"
    final = sale.after_reconcile[-1] if sale.after_reconcile else None
    if sale.debits:
        assert final == "settled", sale.after_reconcile
    else:
        assert final in ("failed", "released", "expired", None), sale.after_reconcile
    assert all(a.status_code < 500 or a.status_code in INTENDED_5XX for a in sale.answers)


def settle_receipt(answer: httpx.Response) -> dict[str, Any] | None:
    header = answer.headers.get("payment-response")
    return unb64(header) if header else None


@dataclass
class Sale:
    """One payment and every answer a request carrying it got, with the ledger's states along the way."""

    payer: Payer
    answers: list[httpx.Response] = field(default_factory=list)
    before_reconcile: list[str] = field(default_factory=list)  # ledger states right after the requests
    after_reconcile: list[str] = field(default_factory=list)
    debits: int = 0  # times the price left the payer's wallet, read from the chain at the end
    header: str = ""  # the PAYMENT-SIGNATURE sent


def row(
    section: str,
    fault: str,
    action: str,
    sales: Sequence[Sale],
    *,
    outcome: str | None = None,
    notes: Sequence[str] = (),
    requests: int | None = None,
) -> FaultRow:
    """Count the sales into one reliability row and record it. Every count is read, not assumed:
    served from the answers, charged from the chain, lost from the chain against the ledger. A scenario
    that leaves a payer charged without data retries the payment and keeps that answer in the sale, so
    `charged_undelivered` counts only payers whose retry could not fetch the data either."""
    answers = [a for sale in sales for a in sale.answers]
    served_unsettled = sum(sum(has_data(a) for a in sale.answers) for sale in sales if sale.debits == 0)
    described = outcome or _describe(sales)
    return record(
        FaultRow(
            section=section,
            fault=fault,
            action=action,
            outcome=described,
            requests=len(answers) if requests is None else requests,  # a request whose answer nobody read
            served=sum(has_data(a) for a in answers),
            settled=sum(1 for sale in sales if sale.debits > 0),
            charged=sum(sale.debits for sale in sales),
            served_unsettled=served_unsettled,
            double_charged=sum(1 for sale in sales if sale.debits > 1),
            lost=sum(1 for sale in sales if sale.debits > 0 and "settled" not in sale.after_reconcile),
            status_500=sum(1 for a in answers if a.status_code >= 500 and a.status_code not in INTENDED_5XX),
            # charged, and no answer (the retries the scenario made included) carried the data
            charged_undelivered=sum(1 for sale in sales if sale.debits and not any(has_data(a) for a in sale.answers)),
            notes=tuple(notes),
        )
    )


def _describe(sales: Sequence[Sale]) -> str:
    answers = list(dict.fromkeys(why(a) for sale in sales for a in sale.answers))  # in the order they came
    before = "/".join(sorted({s for sale in sales for s in sale.before_reconcile})) or "-"
    after = "/".join(sorted({s for sale in sales for s in sale.after_reconcile})) or "-"
    text = f"{', then '.join(answers)}; ledger {before}"
    return text + (f", {after} after reconcile" if after != before else ", unchanged by reconcile")
