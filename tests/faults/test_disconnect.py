"""The client hangs up while its paid request is under way. A fault proxy slows one chain call so the
request is at a known step, then the test resets the connection. Whatever the step, the payment ends in
exactly one outcome, the same on chain and in the ledger: settled and booked (charged once; the data
had nowhere to go), or released/expired with no charge."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from solders.keypair import Keypair

from app.runtime.settings import Settings
from app.usecases.retries import REDELIVER_AFTER_S
from payments.devnet.evm import EvmDevnet
from payments.devnet.solana_process import SolanaDevnetProcess

from ..conftest import Gateway, running_gateway
from ..ledger_helpers import FreshDatabase
from .proxy import FaultProxy
from .rig import (  # noqa: F401 - fixtures
    PATH,
    Sale,
    evm_payer,
    fault_db,
    fee_payer,
    gateway_settings,
    ledger_state,
    reconcile,
    relayer_key,
    row,
    sign,
    svm_payer,
    why,
)

FINAL = ("settled", "failed", "released", "expired")


@pytest.fixture(scope="module")
def proxies(devnet: EvmDevnet, solana: SolanaDevnetProcess) -> Iterator[dict[str, FaultProxy]]:
    evm, sol = FaultProxy(devnet.rpc_url).start(), FaultProxy(solana.state["rpc_url"]).start()
    yield {"eip155": evm, "solana": sol}
    evm.stop()
    sol.stop()


@pytest.fixture(scope="module")
def hung_up_gateway(
    settings: Settings,
    fault_db: FreshDatabase,  # noqa: F811
    relayer_key: str,  # noqa: F811
    fee_payer: Keypair,  # noqa: F811
    proxies: dict[str, FaultProxy],
) -> Iterator[Gateway]:
    faulted = gateway_settings(
        settings,
        fault_db.url,
        relayer_key=relayer_key,
        fee_payer=fee_payer,
        evm_rpc=proxies["eip155"].url,
        svm_rpc=proxies["solana"].url,
    )
    with running_gateway(faulted) as gateway:
        yield gateway


async def hang_up_during(gateway: Gateway, proxy: FaultProxy, method: str, header: str) -> None:
    """Send a paid GET on a raw socket, wait until the gateway makes `method` (slowed by half a second),
    then reset the connection without reading a byte of the answer."""
    url = urlsplit(gateway.url)
    seen = proxy.seen[method]
    proxy.fault(method, "pass", delay_s=0.5)
    try:
        _reader, writer = await asyncio.open_connection(url.hostname, url.port)
        request = f"GET {PATH} HTTP/1.1\r\nHost: {url.netloc}\r\nPAYMENT-SIGNATURE: {header}\r\n\r\n"
        writer.write(request.encode())
        await writer.drain()
        deadline = time.monotonic() + 10
        while proxy.seen[method] == seen:
            assert time.monotonic() < deadline, f"the gateway never called {method}"
            await asyncio.sleep(0.005)
        writer.transport.abort()  # a reset, as a client process that dies does
    finally:
        await asyncio.sleep(1.0)  # the slowed call answers after the client left
        proxy.clear(method)


async def final_state(db: FreshDatabase, sale: Sale, timeout_s: float = 10.0) -> list[str]:
    """The payment's ledger state once the gateway is done with it (the request runs on after the hang-up)."""
    deadline = time.monotonic() + timeout_s
    while True:
        states = await ledger_state(db.pool, sale.payer)
        if (states and states[-1] in FINAL) or time.monotonic() > deadline:
            return states
        await asyncio.sleep(0.05)


CASES = [
    # (family, the call the hang-up lands in, where that is in the sale)
    ("eip155", "eth_call", "during verification (before anything was sent)"),
    ("eip155", "eth_sendRawTransaction", "during the broadcast"),
    ("eip155", "eth_getTransactionReceipt", "after the broadcast, waiting for the receipt"),
    ("solana", "simulateTransaction", "during verification (before anything was sent)"),
    ("solana", "getSignatureStatuses", "after the send, waiting for confirmation"),
]


@pytest.mark.parametrize(("family", "method", "step"), CASES)
async def test_client_hangs_up(
    hung_up_gateway: Gateway,
    proxies: dict[str, FaultProxy],
    devnet: EvmDevnet,
    solana: SolanaDevnetProcess,
    fault_db: FreshDatabase,  # noqa: F811
    settings: Settings,
    family: str,
    method: str,
    step: str,
) -> None:
    offer = await hung_up_gateway.offer(PATH, family)
    payer = evm_payer(devnet, offer) if family == "eip155" else svm_payer(solana.state, offer)
    header = sign(payer, offer, devnet, solana.state)
    await hang_up_during(hung_up_gateway, proxies[family], method, header)
    sale = Sale(payer, header=header)
    sale.before_reconcile = await final_state(fault_db, sale)
    report = await reconcile(fault_db.pool, settings)
    assert report.errors == []
    sale.after_reconcile = await ledger_state(fault_db.pool, payer)
    sale.debits = payer.debited(devnet, solana.state)

    assert sale.before_reconcile[-1] in FINAL, sale.before_reconcile  # finished without the client
    assert sale.after_reconcile == sale.before_reconcile  # nothing left for reconcile: one outcome
    assert sale.debits == (1 if sale.after_reconcile == ["settled"] else 0)  # chain and ledger agree
    if "verification" in step:  # the gate saw the hang-up before anything was sent: not sold, not charged
        assert sale.after_reconcile[-1] == "released" and sale.debits == 0, (sale.after_reconcile, sale.debits)
    # Sent again: a released payment is still the payer's to spend (it buys the data now, charged once); a
    # sale charged while its client was gone is served again under that settlement, never charged again.
    await asyncio.sleep(REDELIVER_AFTER_S)  # a retry this soon could be the first request's twin: refused
    again = await hung_up_gateway.get(PATH, headers={"PAYMENT-SIGNATURE": header})
    left_at = sale.after_reconcile[-1]
    if left_at == "settled":
        assert again.status_code == 200 and "payment-response" in again.headers, again.text
        assert payer.debited(devnet, solana.state) == sale.debits == 1
        once_more = await hung_up_gateway.get(PATH, headers={"PAYMENT-SIGNATURE": header})  # delivered now
        assert once_more.status_code == 402 and once_more.json()["error"] == "payment_already_claimed"
    else:
        assert again.status_code == 200, again.text
        sale.debits = payer.debited(devnet, solana.state)
        sale.after_reconcile = await ledger_state(fault_db.pool, payer)
        assert sale.debits == 1 and sale.after_reconcile[-1] == "settled"
    chain = "EVM" if family == "eip155" else "Solana"
    outcome = f"no answer read; ledger {left_at} without reconcile"
    if left_at != "settled":
        notes: tuple[str, ...] = ("released when the client left: nothing charged; the retry bought the data",)
    else:
        notes = ("the transaction was already out: the sale completed and was booked, unanswered; the retry of "
                 "the same payment got the data under that settlement, not charged again",)  # fmt: skip
    assert again.status_code < 500
    sale.answers.append(again)  # the only answer the client read: whether a retry gets the data
    outcome += f"; the same payment again: {why(again)}"
    row("Client disconnect", f"{chain}: connection reset {step} ({method} slowed)", "1 paid GET on a raw socket, "
        "reset mid-request; the same payment again", [sale], outcome=outcome, notes=notes, requests=2)  # fmt: skip
