"""Remote facilitator faults: the gateway settles through a facilitator double (tests/facilitator_double.py:
worldgate's own local facilitator on the devnets, with keys of its own) reached through the fault proxy,
which breaks `/verify` and `/settle` before or after the facilitator acted.

For each fault: what the client got (never data unless settled; a 402 with a reason, or a 503), what the
ledger held, and after a reconcile run (asking the chains directly, as an operator who configured RPC
URLs beside the facilitator) that every payment is resolved, nobody charged twice, nothing lost.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest

from app.runtime.settings import Settings, replace
from app.usecases import reconcile as reconcile_module
from payments.devnet.evm import EvmDevnet
from payments.devnet.solana_process import SolanaDevnetProcess

from ..conftest import Gateway, running_gateway
from ..facilitator_double import FacilitatorDouble, serving_double
from ..ledger_helpers import FreshDatabase
from .proxy import FaultProxy
from .rig import (  # noqa: F401 - fixtures
    PATH,
    Payer,
    Sale,
    assert_safe,
    evm_payer,
    expiring_soon,
    fault_db,
    has_data,
    ledger_state,
    reconcile,
    row,
    settle_receipt,
    settle_up,
    sign,
    svm_payer,
)

SECTION = "Remote facilitator"
SHAPES = {
    "hang": "no answer (timeout)",
    "drop": "connection dropped",
    "html_502": "HTML 502",
    "truncated": "truncated 200 body",
    "503_success": "503 with a success body",
}
EXPIRY_S = 9
REDELIVERED = (
    "the payer got a 402 settlement_pending, reconcile books the sale, and the same payment sent again gets the"
    " data under that settlement, not charged again"
)


@pytest.fixture(scope="module")
def double(devnet: EvmDevnet, solana: SolanaDevnetProcess) -> Iterator[tuple[FacilitatorDouble, str]]:
    with serving_double(devnet, solana.state) as served:
        yield served


@pytest.fixture(scope="module")
def facilitator_proxy(double: tuple[FacilitatorDouble, str]) -> Iterator[FaultProxy]:
    proxy = FaultProxy(double[1]).start()
    yield proxy
    proxy.stop()


@pytest.fixture(scope="module")
def remote_gateway(
    settings: Settings,
    fault_db: FreshDatabase,  # noqa: F811
    facilitator_proxy: FaultProxy,
) -> Iterator[Gateway]:
    assert settings.evm is not None and settings.svm is not None
    remote = replace(
        settings,
        database_url=fault_db.url,
        facilitator_url=facilitator_proxy.url,
        facilitator_auth="Bearer test-token",
        facilitator_verify_timeout_s=1.0,
        facilitator_settle_timeout_s=1.5,
        # no keys: the facilitator does the chain work. The RPC URLs stay, as an operator keeps them for
        # reconciliation (the gateway itself never calls them).
        evm=replace(settings.evm, relayer_key=None),
        svm=replace(settings.svm, fee_payer_key=None),
    )
    with running_gateway(remote) as gateway:
        yield gateway


class Remote:
    def __init__(
        self,
        gateway: Gateway,
        proxy: FaultProxy,
        double: FacilitatorDouble,
        devnet: EvmDevnet,
        solana: SolanaDevnetProcess,
        db: FreshDatabase,
        settings: Settings,
    ) -> None:
        self.gateway, self.proxy, self.double = gateway, proxy, double
        self.devnet, self.state, self.db, self.settings = devnet, solana.state, db, settings

    async def buy(self, path: str, shape: str | None, family: str = "eip155", **options: Any) -> Sale:
        """One paid request with the facilitator's `path` broken as `shape` (None: the double's own mode)."""
        offer = await self.gateway.offer(PATH, family)
        payer = evm_payer(self.devnet, offer) if family == "eip155" else svm_payer(self.state, offer)
        header = sign(payer, offer, self.devnet, self.state, **options.pop("fields", {}))
        if shape is not None:
            self.proxy.fault(path, shape, **options)
        try:
            answer = await self.gateway.get(PATH, headers={"PAYMENT-SIGNATURE": header})
        finally:
            self.proxy.clear(path)
            self.double.mode = "ok"
        return Sale(payer, [answer], before_reconcile=await ledger_state(self.db.pool, payer), header=header)

    async def settle_up(self, *sales: Sale) -> None:
        await settle_up(self.db.pool, self.settings, self.devnet, self.state, sales, remote=True)


@pytest.fixture
def remote(
    remote_gateway: Gateway,
    facilitator_proxy: FaultProxy,
    double: tuple[FacilitatorDouble, str],
    devnet: EvmDevnet,
    solana: SolanaDevnetProcess,
    fault_db: FreshDatabase,  # noqa: F811
    settings: Settings,
) -> Remote:
    return Remote(remote_gateway, facilitator_proxy, double[0], devnet, solana, fault_db, settings)


def pending(sale: Sale) -> None:
    """The client got a 503 settlement_pending (Retry-After, never a 402 inviting a second payment) with no
    data, and the ledger keeps the payment open."""
    answer = sale.answers[0]
    assert answer.status_code == 503 and int(answer.headers["retry-after"]) > 0, answer.text
    assert answer.json()["error"] == "settlement_pending" and "records" not in answer.text
    receipt = settle_receipt(answer)
    assert receipt is not None and receipt["success"] is False
    assert sale.before_reconcile == ["settling"]


async def retry(remote: Remote, sale: Sale) -> None:
    """The payer, charged without data, sends the same payment again: the data, under the booked settlement,
    and not charged again; once delivered, the payment is spent."""
    again = await remote.gateway.get(PATH, headers={"PAYMENT-SIGNATURE": sale.header})
    sale.answers.append(again)
    assert again.status_code == 200 and has_data(again), again.text
    assert sale.payer.debited(remote.devnet, remote.state) == 1
    spent = await remote.gateway.get(PATH, headers={"PAYMENT-SIGNATURE": sale.header})
    assert spent.status_code == 402 and spent.json()["error"] == "payment_already_claimed", spent.text


# ---- /verify ----


@pytest.mark.parametrize("shape", list(SHAPES))
async def test_verify_fails(remote: Remote, shape: str) -> None:
    """No readable yes from /verify: 503, the claim released (nothing charged), the payment reusable."""
    forged = {"body": lambda _d: {"isValid": True, "payer": "0x" + "cd" * 20}} if shape == "503_success" else {}
    sale = await remote.buy("/verify", shape, **forged)
    answer = sale.answers[0]
    assert answer.status_code == 503, answer.text
    assert answer.json()["reason"] == "unexpected_verify_error" and sale.before_reconcile == ["released"]
    again = await remote.gateway.get(PATH, headers={"PAYMENT-SIGNATURE": sale.header})
    sale.answers.append(again)
    assert again.status_code == 200, again.text
    await remote.settle_up(sale)
    assert sale.debits == 1
    assert_safe(sale)
    what = "503 with a forged isValid:true" if shape == "503_success" else SHAPES[shape]
    row(SECTION, f"/verify: {what}", "1 paid GET (sync), then the same payment once /verify answers", [sale])


# ---- /settle never reaches the facilitator ----


async def test_settle_never_reaches_the_facilitator(remote: Remote, monkeypatch: pytest.MonkeyPatch) -> None:
    """/settle lost on the way (each shape), or answered `settlement_pending` twice by a facilitator that
    never sends: the outcome is unknown to the gateway (402 settlement_pending, no data). An unused EVM
    authorization can still be sent until its validBefore, so reconcile fails the payments only then."""
    made_up = {"success": True, "transaction": "0x" + "ab" * 32, "payer": "0x" + "cd" * 20}
    sales, labels = [], []
    forwarded = remote.proxy.forwarded["/settle"]
    for shape in SHAPES:
        forged: dict[str, Any] = {"body": lambda _d: made_up} if shape == "503_success" else {}
        sales.append(await remote.buy("/settle", shape, fields=expiring_soon(EXPIRY_S), **forged))
        labels.append("503 with a forged success (a made-up hash)" if shape == "503_success" else SHAPES[shape])
    assert remote.proxy.forwarded["/settle"] == forwarded  # the facilitator never saw them
    remote.double.mode = "settle_pending"
    calls, last_signed = remote.double.calls["settle"], time.time()
    sales.append(await remote.buy("/settle", None, fields=expiring_soon(EXPIRY_S)))
    assert remote.double.calls["settle"] - calls == 2  # the one retry the protocol allows
    labels.append("settlement_pending twice (the facilitator never sends)")
    for sale in sales:
        pending(sale)
    monkeypatch.setattr(reconcile_module, "EVM_EXPIRY_MARGIN_S", 0.0)  # anvil's clock is the wall clock
    await asyncio.sleep(max(0.0, last_signed + EXPIRY_S + 1 - time.time()))  # every authorization has expired
    await remote.settle_up(*sales)
    for label, sale in zip(labels, sales, strict=True):
        assert sale.debits == 0 and sale.after_reconcile == ["failed"]
        assert_safe(sale)
        forwarded_or_not = "" if "pending" in label else ", not forwarded"
        row(SECTION, f"/settle: {label}{forwarded_or_not}", "1 paid GET (sync); reconcile once the authorization "
            "expired", [sale])  # fmt: skip


# ---- /settle settles, its answer is lost ----


@pytest.mark.parametrize("family", ["eip155", "solana"])
@pytest.mark.parametrize("shape", list(SHAPES))
async def test_settle_answer_lost_after_settling(remote: Remote, shape: str, family: str) -> None:
    """The facilitator settled on chain; the gateway got no readable answer: 402 settlement_pending (no
    data); reconcile finds the charge and books it."""
    sale = await remote.buy("/settle", shape, family, forward=True)
    pending(sale)
    await remote.settle_up(sale)
    assert sale.debits == 1
    await retry(remote, sale)
    assert_safe(sale)
    chain = "EVM" if family == "eip155" else "Solana"
    what = "503 with its own success body" if shape == "503_success" else SHAPES[shape]
    row(SECTION, f"{chain} /settle: {what}, after the facilitator settled",
        "1 paid GET (sync); reconcile; the same payment again", [sale], notes=(REDELIVERED,))  # fmt: skip


# ---- settlement_pending ----


@pytest.mark.parametrize("family", ["eip155", "solana"])
async def test_settlement_pending_after_settling(remote: Remote, family: str) -> None:
    """The facilitator settles, answers settlement_pending with the transaction; the one retry settles
    nothing new (the authorization is spent). The payment is not failed on the retry's word: reconcile
    books the transaction the first answer named."""

    def as_pending(answer: Any) -> Any:
        return {**answer, "success": False, "errorReason": "settlement_pending", "errorMessage": "still confirming"}

    calls = remote.double.calls["settle"]
    sale = await remote.buy("/settle", "503_success", family, forward=True, rewrite=as_pending, status=200, times=1)
    assert remote.double.calls["settle"] - calls == 2
    pending(sale)
    await remote.settle_up(sale)
    assert sale.debits == 1
    await retry(remote, sale)
    assert_safe(sale)
    chain = "EVM" if family == "eip155" else "Solana"
    row(SECTION, f"{chain} /settle: settled, answered settlement_pending (with its hash); the retry fails",
        "1 paid GET (sync); reconcile; the same payment again", [sale],
        notes=(REDELIVERED,))  # fmt: skip
