"""Chain RPC faults, EVM (anvil) and Solana (the LiteSVM devnet): a fault proxy stands between a running
gateway and each node, and breaks one JSON-RPC method at a time, before or after the node acted on it.

For every fault: what the client got (in `sync` mode never data unless the payment settled: a 402 with a
reason, or a 503), what the ledger held, and, after a reconcile run (`worldgate ledger reconcile`, asking
the chains directly), that every payment is resolved: charged on chain ⇒ settled in the ledger, not
charged ⇒ failed or released, nobody charged twice.

When a transaction lands but every answer about it is lost for the whole wait (receipt or status polling
broken throughout), the payer is charged and got a 402 `settlement_pending` naming the transaction;
reconcile books the sale, and the payer's retry with the same payment gets the data under that settlement
(app/usecases/checkout.py `_claimed_before`), never charged again.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterator
from typing import Any

import pytest
from eth_account import Account
from solders.keypair import Keypair

from app.runtime.settings import Settings
from app.usecases import reconcile as reconcile_module
from payments.devnet.evm import EvmDevnet
from payments.devnet.solana_process import SolanaDevnetProcess
from payments.evm.exact import TRANSFER_TOPIC

from .. import svm
from ..chain import b64, unb64
from ..conftest import Gateway, running_gateway
from ..ledger_helpers import FreshDatabase
from .proxy import FaultProxy, evm_tx_hash, svm_signature
from .rig import (  # noqa: F401 - fixtures
    PATH,
    Payer,
    Sale,
    assert_safe,
    evm_payer,
    expiring_soon,
    fault_db,
    fee_payer,
    gateway_settings,
    has_data,
    ledger_state,
    reconcile,
    relayer_key,
    row,
    settle_receipt,
    settle_up,
    sign,
    svm_payer,
)

SECTION = "Chain RPC"
AFTER_BROADCAST = ("hang", "drop", "html_502", "truncated", "503_success")
VERIFY_SHAPES = ("hang", "drop", "html_502", "truncated", "503_success")
EXPIRY_S = 9  # EVM authorizations in the "never broadcast" cases stop being usable this soon
REDELIVERED = (
    "the 402 names the transaction, reconcile books the sale, and the retry with the same payment gets the data"
    " under that settlement, not charged again"
)
SHAPES = {
    "hang": "no answer (timeout)",
    "drop": "connection dropped",
    "html_502": "HTML 502",
    "truncated": "truncated 200 body",
    "503_success": "503 with the node's own success body",
}


@pytest.fixture(scope="module")
def evm_proxy(devnet: EvmDevnet) -> Iterator[FaultProxy]:
    proxy = FaultProxy(devnet.rpc_url).start()
    yield proxy
    proxy.stop()


@pytest.fixture(scope="module")
def svm_proxy(solana: SolanaDevnetProcess) -> Iterator[FaultProxy]:
    proxy = FaultProxy(solana.state["rpc_url"]).start()
    yield proxy
    proxy.stop()


@pytest.fixture(scope="module")
def chain_gateway(
    settings: Settings,
    fault_db: FreshDatabase,  # noqa: F811
    relayer_key: str,  # noqa: F811
    fee_payer: Keypair,  # noqa: F811
    evm_proxy: FaultProxy,
    svm_proxy: FaultProxy,
) -> Iterator[Gateway]:
    faulted = gateway_settings(
        settings,
        fault_db.url,
        relayer_key=relayer_key,
        fee_payer=fee_payer,
        evm_rpc=evm_proxy.url,
        svm_rpc=svm_proxy.url,
    )
    with running_gateway(faulted) as gateway:
        yield gateway


class Rig:
    """One gateway, its two proxies, the chains and the ledger: what each scenario drives and reads."""

    def __init__(
        self,
        gateway: Gateway,
        proxies: dict[str, FaultProxy],
        devnet: EvmDevnet,
        solana: SolanaDevnetProcess,
        db: FreshDatabase,
        settings: Settings,
    ) -> None:
        self.gateway, self.proxies, self.devnet, self.state, self.db, self.settings = (
            gateway,
            proxies,
            devnet,
            solana.state,
            db,
            settings,
        )

    async def buy(self, family: str, method: str, shape: str, payer: Payer | None = None, **options: Any) -> Sale:
        """One paid request with `method` broken as `shape` on its chain's proxy; the ledger read after it."""
        offer = await self.gateway.offer(PATH, family)
        if payer is None:
            payer = evm_payer(self.devnet, offer) if family == "eip155" else svm_payer(self.state, offer)
        fields = options.pop("fields", {})
        header = sign(payer, offer, self.devnet, self.state, **fields)
        proxy = self.proxies[family]
        proxy.fault(method, shape, **options)
        try:
            answer = await self.gateway.get(PATH, headers={"PAYMENT-SIGNATURE": header})
        finally:
            proxy.clear(method)
        return Sale(payer, [answer], before_reconcile=await ledger_state(self.db.pool, payer), header=header)

    async def settle_up(self, *sales: Sale) -> None:
        await settle_up(self.db.pool, self.settings, self.devnet, self.state, sales)


@pytest.fixture
def rig(
    chain_gateway: Gateway,
    evm_proxy: FaultProxy,
    svm_proxy: FaultProxy,
    devnet: EvmDevnet,
    solana: SolanaDevnetProcess,
    fault_db: FreshDatabase,  # noqa: F811
    settings: Settings,
) -> Rig:
    return Rig(chain_gateway, {"eip155": evm_proxy, "solana": svm_proxy}, devnet, solana, fault_db, settings)


def reason(sale: Sale) -> str:
    answer = sale.answers[-1]
    if answer.status_code == 402:
        return str(answer.json()["error"])
    if answer.status_code == 503:  # unavailable (`reason`), or a settlement still pending (`error`)
        document = answer.json()
        return str(document.get("reason") or document.get("error"))
    return str(answer.status_code)


# ---- the broadcast never reaches the chain ----


def forged_receipt(devnet: EvmDevnet, payer: str, amount: int, relayer: str) -> Any:
    """A success receipt with the Transfer log settlement looks for: what a lying 503 could carry."""

    def topic(address: str) -> str:
        return "0x" + "0" * 24 + address.lower()[2:]

    def body(document: dict[str, Any]) -> dict[str, Any]:
        receipt = {
            "transactionHash": document["params"][0],
            "status": "0x1",
            "blockNumber": "0x1",
            "gasUsed": "0x1",
            "effectiveGasPrice": "0x1",
            "from": relayer.lower(),
            "logs": [
                {
                    "address": devnet.asset.lower(),
                    "topics": [TRANSFER_TOPIC, topic(payer), topic(devnet.pay_to)],
                    "data": "0x" + amount.to_bytes(32, "big").hex(),
                }
            ],
        }
        return {"jsonrpc": "2.0", "id": document["id"], "result": receipt}

    return body


async def test_evm_broadcast_that_never_reaches_the_chain(
    rig: Rig,
    relayer_key: str,  # noqa: F811 - the fixture
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """eth_sendRawTransaction lost on the way (timeout, reset, an HTML 502, a forged "accepted"): the payer
    is never charged, never served; reconcile fails the row once the authorization can no longer land."""
    faults: list[tuple[str, dict[str, Any]]] = [
        ("hang", {}),
        ("drop", {}),
        ("html_502", {}),
        ("503_success", {"body": lambda d: {"jsonrpc": "2.0", "id": d["id"], "result": evm_tx_hash(d)}}),
    ]
    sales = []
    for shape, options in faults:
        sale = await rig.buy("eip155", "eth_sendRawTransaction", shape, fields=expiring_soon(EXPIRY_S), **options)
        sales.append(sale)
    # the same forged "accepted", and then a forged success receipt for it: data must still not leave
    offer = await rig.gateway.offer(PATH)
    payer = evm_payer(rig.devnet, offer)
    relayer = Account.from_key(relayer_key).address
    rig.proxies["eip155"].fault(
        "eth_getTransactionReceipt", "503_success", body=forged_receipt(rig.devnet, payer.address, payer.price, relayer)
    )
    last_signed = time.time()
    try:
        forged = await rig.buy(
            "eip155",
            "eth_sendRawTransaction",
            "503_success",
            payer,
            fields=expiring_soon(EXPIRY_S),
            body=lambda d: {"jsonrpc": "2.0", "id": d["id"], "result": evm_tx_hash(d)},
        )
    finally:
        rig.proxies["eip155"].clear()
    sales.append(forged)

    for sale in sales:
        assert sale.answers[0].status_code == 503, sale.answers[0].text  # pending: wait, never pay again
        assert reason(sale) == "settlement_pending"  # signed and maybe sent: only the chain can say
        assert sale.before_reconcile == ["settling"]
    # Wait for the authorizations' validBefore: from then on the chain itself refuses them, so "not on
    # chain" is final. (The reconciler's 60 s margin for block-timestamp lag is not needed on anvil.)
    monkeypatch.setattr(reconcile_module, "EVM_EXPIRY_MARGIN_S", 0.0)
    await asyncio.sleep(max(0.0, last_signed + EXPIRY_S + 1 - time.time()))
    await rig.settle_up(*sales)
    for sale in sales:
        assert sale.debits == 0 and sale.after_reconcile == ["failed"]
        assert_safe(sale)
    labels = [SHAPES["hang"], SHAPES["drop"], SHAPES["html_502"], "503 with a forged success (the tx hash)"]
    for label, sale in zip(labels, sales, strict=False):
        row(SECTION, f"EVM eth_sendRawTransaction: {label}, not forwarded (timeout before broadcast)",
            "1 paid GET (sync); reconcile once the authorization expired", [sale])  # fmt: skip
    row(
        SECTION,
        "EVM eth_sendRawTransaction and eth_getTransactionReceipt: 503 with forged success bodies (accepted, "
        "a receipt with the Transfer log), nothing forwarded",
        "1 paid GET (sync); reconcile once the authorization expired",
        [forged],
        notes=("a forged receipt behind a 5xx status is not believed: no data for a transfer that never happened",),
    )


async def test_solana_send_that_never_reaches_the_chain(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    faults: list[tuple[str, dict[str, Any]]] = [
        ("hang", {}),
        ("drop", {}),
        ("html_502", {}),
        ("503_success", {"body": lambda d: {"jsonrpc": "2.0", "id": d["id"], "result": svm_signature(d)}}),
    ]
    sales = [await rig.buy("solana", "sendTransaction", shape, **options) for shape, options in faults]
    # a forged "sent" and forged "finalized" statuses for it: data must still not leave
    rig.proxies["solana"].fault("getSignatureStatuses", "503_success")
    try:
        forged = await rig.buy("solana", "sendTransaction", "503_success", body=faults[3][1]["body"])
    finally:
        rig.proxies["solana"].clear()
    sales.append(forged)
    for sale in sales:
        assert sale.answers[0].status_code == 503, sale.answers[0].text
        assert reason(sale) == "settlement_pending"
        assert sale.before_reconcile == ["settling"]
    # The blockhash the payments were signed over expires: from then on none of them can land. (The
    # reconciler, which stores no blockhash, waits 180 s of wall clock for the same certainty.)
    svm.rpc(rig.state, "litesvm_expireBlockhash")
    monkeypatch.setattr(reconcile_module, "SOLANA_LANDING_WINDOW_S", 0.0)
    await rig.settle_up(*sales)
    for sale in sales:
        assert sale.debits == 0 and sale.after_reconcile == ["failed"]
        assert_safe(sale)
    labels = [SHAPES["hang"], SHAPES["drop"], SHAPES["html_502"], "503 with a forged success (the signature)"]
    for label, sale in zip(labels, sales, strict=False):
        row(SECTION, f"Solana sendTransaction: {label}, not forwarded (timeout before broadcast)",
            "1 paid GET (sync); reconcile once the blockhash expired", [sale])  # fmt: skip
    row(
        SECTION,
        "Solana sendTransaction and getSignatureStatuses: 503 with forged success bodies (sent, finalized), "
        "nothing forwarded",
        "1 paid GET (sync); reconcile once the blockhash expired",
        [forged],
        notes=("forged statuses behind a 5xx status are not believed: no data for a transfer that never happened",),
    )


# ---- the broadcast lands, its answer is lost ----


@pytest.mark.parametrize("shape", AFTER_BROADCAST)
@pytest.mark.parametrize(("family", "method"), [("eip155", "eth_sendRawTransaction"), ("solana", "sendTransaction")])
async def test_answer_lost_after_broadcast(rig: Rig, family: str, method: str, shape: str) -> None:
    """The node took the transaction; the gateway got a timeout, a reset, HTML, half a body or a 503.
    It keeps asking the chain for the outcome with the hash it wrote ahead, so the sale completes."""
    sale = await rig.buy(family, method, shape, forward=True)
    await rig.settle_up(sale)
    assert sale.debits == 1  # it did land
    assert sale.answers[0].status_code == 200, sale.answers[0].text
    receipt = settle_receipt(sale.answers[0])
    assert receipt is not None and receipt["success"] is True
    assert sale.before_reconcile == ["settled"]
    assert_safe(sale)
    chain = "EVM" if family == "eip155" else "Solana"
    row(SECTION, f"{chain} {method}: {SHAPES[shape]}, after forwarding (timeout after broadcast)",
        "1 paid GET (sync); reconcile", [sale])  # fmt: skip


# ---- verification calls ----


@pytest.mark.parametrize("shape", VERIFY_SHAPES)
@pytest.mark.parametrize(("family", "method"), [("eip155", "eth_call"), ("solana", "simulateTransaction")])
async def test_verification_call_fails(rig: Rig, family: str, method: str, shape: str) -> None:
    """The simulation cannot be read: 503, the claim released (nothing charged), and the same payment
    goes through once the node answers again."""
    sale = await rig.buy(family, method, shape)
    first = sale.answers[0]
    assert first.status_code == 503, first.text
    assert first.json()["reason"] == "unexpected_verify_error" and first.headers["retry-after"]
    assert sale.before_reconcile == ["released"]
    retry = await rig.gateway.get(PATH, headers={"PAYMENT-SIGNATURE": sale.header})  # type: ignore[attr-defined]
    sale.answers.append(retry)
    assert retry.status_code == 200, retry.text
    await rig.settle_up(sale)
    assert sale.debits == 1
    assert_safe(sale)
    chain = "EVM" if family == "eip155" else "Solana"
    what = "503 with a forged success body" if shape == "503_success" else SHAPES[shape]
    row(SECTION, f"{chain} {method} (verification): {what}",
        "1 paid GET (sync), then the same payment again once the node answers", [sale])  # fmt: skip


async def test_blockhash_check_fails(rig: Rig) -> None:
    sale = await rig.buy("solana", "isBlockhashValid", "html_502")
    assert sale.answers[0].status_code == 503 and sale.before_reconcile == ["released"]
    await rig.settle_up(sale)
    assert sale.debits == 0
    assert_safe(sale)
    row(SECTION, "Solana isBlockhashValid (verification): HTML 502", "1 paid GET (sync)", [sale])


# ---- receipt and status polling ----


@pytest.mark.parametrize("shape", ("hang", "drop", "html_502", "truncated", "503_success"))
@pytest.mark.parametrize(
    ("family", "method"), [("eip155", "eth_getTransactionReceipt"), ("solana", "getSignatureStatuses")]
)
async def test_outcome_polling_broken_throughout(rig: Rig, family: str, method: str, shape: str) -> None:
    """The transaction lands, but every receipt/status answer is broken for the whole wait: 402
    settlement_pending with the hash, no data; reconcile books the charge (charged, not delivered)."""
    sale = await rig.buy(family, method, shape, forward=True)
    answer = sale.answers[0]
    assert answer.status_code == 503 and int(answer.headers["retry-after"]) > 0, answer.text
    assert reason(sale) == "settlement_pending" and "records" not in answer.text
    receipt = settle_receipt(answer)
    assert receipt is not None and receipt["transaction"]  # the client is told which transaction to look for
    assert sale.before_reconcile == ["settling"]
    await rig.settle_up(sale)
    assert sale.debits == 1 and sale.after_reconcile == ["settled"]
    # The client retries with the same payment, as the 402 invites: the data, under the booked settlement.
    retry = await rig.gateway.get(PATH, headers={"PAYMENT-SIGNATURE": sale.header})
    sale.answers.append(retry)
    assert retry.status_code == 200 and has_data(retry), retry.text
    assert settle_receipt(retry)["transaction"] == receipt["transaction"]
    assert sale.payer.debited(rig.devnet, rig.state) == 1
    spent = await rig.gateway.get(PATH, headers={"PAYMENT-SIGNATURE": sale.header})  # delivered: spent now
    assert spent.status_code == 402 and spent.json()["error"] == "payment_already_claimed"
    assert_safe(sale)
    chain = "EVM" if family == "eip155" else "Solana"
    row(
        SECTION,
        f"{chain} {method} (outcome polling): {SHAPES[shape]} for the whole wait",
        "1 paid GET (sync); reconcile; the same payment again",
        [sale],
        notes=(REDELIVERED,),
    )


async def test_outcome_polling_broken_with_a_payment_identifier(rig: Rig) -> None:
    """The same loss for a client that sends the x402 payment-identifier to make its retries safe: after the
    sale is booked, it retries with the same id. Whatever it gets, it is not charged again."""
    offer = await rig.gateway.offer(PATH)
    payer = evm_payer(rig.devnet, offer)
    document = unb64(sign(payer, offer, rig.devnet, rig.state))
    document["extensions"] = {"payment-identifier": {"info": {"id": f"faults-{secrets.token_hex(12)}"}}}
    header = b64(document)
    rig.proxies["eip155"].fault("eth_getTransactionReceipt", "html_502", forward=True)
    try:
        answer = await rig.gateway.get(PATH, headers={"PAYMENT-SIGNATURE": header})
    finally:
        rig.proxies["eip155"].clear()
    sale = Sale(payer, [answer], before_reconcile=await ledger_state(rig.db.pool, payer), header=header)
    assert answer.status_code == 503 and reason(sale) == "settlement_pending"
    await rig.settle_up(sale)
    again = await rig.gateway.get(PATH, headers={"PAYMENT-SIGNATURE": header})
    sale.answers.append(again)
    assert again.status_code == 200 and has_data(again), again.text
    assert payer.debited(rig.devnet, rig.state) == 1  # never a second charge
    assert_safe(sale)
    notes = (REDELIVERED.replace("same payment", "same payment and id"),)
    row(SECTION, "EVM eth_getTransactionReceipt (outcome polling): HTML 502 for the whole wait, the payment "
        "carrying a payment-identifier", "1 paid GET (sync); reconcile; the same payment and id again", [sale],
        notes=notes)  # fmt: skip


@pytest.mark.parametrize(
    ("family", "method"), [("eip155", "eth_getTransactionReceipt"), ("solana", "getSignatureStatuses")]
)
async def test_outcome_polling_recovers(rig: Rig, family: str, method: str) -> None:
    """Two broken answers, then the node is back: the gateway keeps polling and delivers."""
    sale = await rig.buy(family, method, "html_502", times=2, forward=True)
    assert sale.answers[0].status_code == 200, sale.answers[0].text
    await rig.settle_up(sale)
    assert sale.debits == 1 and sale.before_reconcile == ["settled"]
    assert_safe(sale)
    chain = "EVM" if family == "eip155" else "Solana"
    row(SECTION, f"{chain} {method} (outcome polling): two HTML 502s, then answers",
        "1 paid GET (sync)", [sale])  # fmt: skip
