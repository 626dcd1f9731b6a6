"""SIGTERM with paid requests in flight (a rolling update): `worldgate serve` itself, as a process with two workers,
on the session's Postgres, Redis, anvil and Solana devnet, the chains' RPCs behind fault proxies that slow
verification so the requests are surely in flight when the signal comes.

- Within the grace period: 20 paid requests (12 EVM, 8 Solana) in verification get SIGTERM; new connections are
  refused while they finish; every one is served and settled, and the process exits 0.
- Past the grace period: 10 requests are settling (their receipts slowed) and 10 more are still in verification
  when a grace period of 0.5 s runs out: the settling ones finish (served, settled, booked), the others are
  answered 503 `shutting_down` and are not charged; the process exits 0.

Either way: no 200 unsettled, no charge without a 200, the ledger verifies after reconciliation.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from solders.keypair import Keypair

import ledger
from app.runtime.settings import Settings, replace
from payments.devnet.evm import EvmDevnet
from payments.devnet.process import die_with_parent
from payments.devnet.solana_process import SolanaDevnetProcess

from ..chain import unb64
from ..ledger_helpers import FreshDatabase
from ..services import free_port
from .conftest import ROOT, gateway_env
from .proxy import FaultProxy
from .rig import (  # noqa: F401
    Sale,
    assert_safe,
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
SECTION = "Shutdown (SIGTERM)"
START_TIMEOUT_S = 120.0
VERIFY_DELAY_S = 3.0  # each verification's chain call (eth_call, simulateTransaction) waits this long
RECEIPT_DELAY_S = 4.0  # past the grace period: each receipt poll of a settlement waits this long


class Serve:
    """`worldgate serve` as its own process (the command an operator runs, the image's CMD), output in a file."""

    def __init__(self, env: dict[str, str], workdir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "serve.log"
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "app", "serve", "--host", "127.0.0.1", "--port", str(self.port)],
                env={**env, "PYTHONPATH": str(ROOT)},
                cwd=workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent,
            )

    def wait_healthy(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"serve exited at startup: {self.log()}"
            try:
                if httpx.get(f"{self.url}/v1/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"serve did not become healthy: {self.log()}")

    def terminate(self) -> None:
        os.kill(self.process.pid, signal.SIGTERM)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]


def _settings(
    settings: Settings, database_url: str, relayer: str, payer: Keypair, evm_rpc: str, svm_rpc: str
) -> Settings:
    assert settings.evm is not None and settings.svm is not None
    # timeouts well above the proxies' delays: the delays make requests slow, never failed
    evm = replace(settings.evm, rpc_url=evm_rpc, relayer_key=relayer, rpc_timeout_s=20.0, receipt_timeout_s=30.0)
    svm = replace(settings.svm, rpc_url=svm_rpc, fee_payer_key=str(payer), rpc_timeout_s=20.0)
    return replace(settings, database_url=database_url, evm=evm, svm=svm)


async def _offers(url: str) -> dict[str, dict[str, Any]]:
    async with httpx.AsyncClient(timeout=30) as client:
        answer = await client.get(f"{url}{PATH}")
    assert answer.status_code == 402, answer.text
    accepts = unb64(answer.headers["payment-required"])["accepts"]
    return {o["network"].split(":")[0]: o for o in accepts if o["scheme"] == "exact"}  # batch has its own suite


async def _send(client: httpx.AsyncClient, url: str, sale: Sale) -> None:
    sale.answers.append(await client.get(f"{url}{PATH}", headers={"PAYMENT-SIGNATURE": sale.header}))


async def _until(condition: Any, timeout_s: float, what: str, what_else: Any = str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}: {what_else()}"
        await asyncio.sleep(0.02)


async def _refused_while(url: str, pending: list[asyncio.Task[None]]) -> bool:
    """Is a new connection refused while the requests in flight are still pending?"""
    while not all(task.done() for task in pending):
        try:
            async with httpx.AsyncClient(timeout=1) as client:
                await client.get(f"{url}/v1/health/live")
        except httpx.ConnectError:
            return not all(task.done() for task in pending)
        except httpx.HTTPError:
            pass  # accepted before the listener closed, then cut: not an answer, try again
        await asyncio.sleep(0.05)
    return False


async def _settle_and_check(pool: Any, settings: Settings, devnet: EvmDevnet, solana: Any, sales: list[Sale]) -> None:
    report = await reconcile(pool, settings)
    assert report.errors == [], report
    for sale in sales:
        sale.after_reconcile = await ledger_state(pool, sale.payer)
        sale.debits = sale.payer.debited(devnet, solana.state)
        assert_safe(sale)  # no data unsettled, at most one charge, a charge is booked, no 500
        [answer] = sale.answers
        assert (answer.status_code == 200) == (sale.debits == 1), (why(answer), sale.debits)
    assert (await ledger.verify.verify(pool)).ok


async def test_sigterm_lets_paid_requests_in_flight_finish(
    settings: Settings,
    devnet: EvmDevnet,
    solana: SolanaDevnetProcess,
    fault_db: FreshDatabase,  # noqa: F811
    relayer_key: str,  # noqa: F811
    fee_payer: Keypair,  # noqa: F811
    tmp_path: Path,
) -> None:
    assert settings.evm is not None and settings.svm is not None and settings.evm.rpc_url and settings.svm.rpc_url
    evm_proxy, svm_proxy = FaultProxy(settings.evm.rpc_url).start(), FaultProxy(settings.svm.rpc_url).start()
    ours = _settings(settings, fault_db.url, relayer_key, fee_payer, evm_proxy.url, svm_proxy.url)
    env = gateway_env(ours, WORLDGATE_WORKERS="2", WORLDGATE_SHUTDOWN_GRACE_S="30")
    serve = Serve(env, tmp_path)
    try:
        serve.wait_healthy()
        offers = await _offers(serve.url)
        sales = [Sale(evm_payer(devnet, offers["eip155"])) for _ in range(12)]
        sales += [Sale(svm_payer(solana.state, offers["solana"])) for _ in range(8)]
        for sale in sales:
            sale.header = sign(sale.payer, offers[sale.payer.family], devnet, solana.state)
        evm_proxy.fault("eth_call", "pass", delay_s=VERIFY_DELAY_S)
        svm_proxy.fault("simulateTransaction", "pass", delay_s=VERIFY_DELAY_S)
        seen = evm_proxy.seen["eth_call"], svm_proxy.seen["simulateTransaction"]

        limits = httpx.Limits(max_connections=len(sales), max_keepalive_connections=0)
        async with httpx.AsyncClient(timeout=120, limits=limits) as client:
            flying = [asyncio.create_task(_send(client, serve.url, sale)) for sale in sales]
            await _until(
                lambda: (
                    evm_proxy.seen["eth_call"] - seen[0] >= 12 and svm_proxy.seen["simulateTransaction"] - seen[1] >= 8
                ),
                60,
                "every request to be in verification",
                lambda: (evm_proxy.seen, svm_proxy.seen, [why(s.answers[0]) for s in sales if s.answers], serve.log()),
            )
            serve.terminate()
            refused = await _refused_while(serve.url, flying)
            await asyncio.gather(*flying)
        code = await asyncio.to_thread(serve.process.wait, 60)
        assert code == 0, serve.log()
        assert refused, "a new connection was still accepted after SIGTERM while requests were in flight"
        evm_proxy.clear()
        svm_proxy.clear()
        await _settle_and_check(fault_db.pool, ours, devnet, solana, sales)
        kinds = Counter(why(sale.answers[0]) for sale in sales)
        recorded = row(
            SECTION,
            "SIGTERM with 20 paid requests in verification (grace period 30 s)",
            "`worldgate serve` with 2 workers; 12 EVM + 8 Solana payments sent at once, their chain checks slowed"
            f" {VERIFY_DELAY_S:g} s; SIGTERM once all 20 are in verification; a new connection tried meanwhile",
            sales,
            outcome=", ".join(f"{n} x {k}" for k, n in kinds.most_common())
            + "; new connections refused while they finished; exit code 0",
        )
        assert recorded.served == recorded.settled == recorded.charged == len(sales), kinds
        assert "Traceback" not in serve.log_path.read_text(errors="replace")
    finally:
        serve.stop()
        evm_proxy.stop()
        svm_proxy.stop()


async def test_past_the_grace_period_only_what_is_settling_finishes(
    settings: Settings,
    devnet: EvmDevnet,
    solana: SolanaDevnetProcess,
    fault_db: FreshDatabase,  # noqa: F811
    relayer_key: str,  # noqa: F811
    fee_payer: Keypair,  # noqa: F811
    tmp_path: Path,
) -> None:
    assert settings.evm is not None and settings.svm is not None and settings.evm.rpc_url and settings.svm.rpc_url
    evm_proxy, svm_proxy = FaultProxy(settings.evm.rpc_url).start(), FaultProxy(settings.svm.rpc_url).start()
    ours = _settings(settings, fault_db.url, relayer_key, fee_payer, evm_proxy.url, svm_proxy.url)
    env = gateway_env(ours, WORLDGATE_WORKERS="2", WORLDGATE_SHUTDOWN_GRACE_S="0.5")
    serve = Serve(env, tmp_path)
    try:
        serve.wait_healthy()
        offer = (await _offers(serve.url))["eip155"]
        settling = [Sale(evm_payer(devnet, offer)) for _ in range(10)]
        verifying = [Sale(evm_payer(devnet, offer)) for _ in range(10)]
        for sale in [*settling, *verifying]:
            sale.header = sign(sale.payer, offer, devnet, solana.state)
        evm_proxy.fault("eth_getTransactionReceipt", "pass", delay_s=RECEIPT_DELAY_S)
        limits = httpx.Limits(max_connections=20, max_keepalive_connections=0)
        async with httpx.AsyncClient(timeout=120, limits=limits) as client:
            first = [asyncio.create_task(_send(client, serve.url, sale)) for sale in settling]
            await _until(lambda: evm_proxy.seen["eth_getTransactionReceipt"] >= 10, 60, "the first 10 to be settling")
            evm_proxy.fault("eth_call", "hang")  # the next ones stay in verification until they are cut
            calls = evm_proxy.seen["eth_call"]
            second = [asyncio.create_task(_send(client, serve.url, sale)) for sale in verifying]
            await _until(lambda: evm_proxy.seen["eth_call"] - calls >= 10, 60, "the next 10 to be in verification")
            serve.terminate()
            await asyncio.gather(*first, *second)
        code = await asyncio.to_thread(serve.process.wait, 120)
        assert code == 0, serve.log()
        evm_proxy.clear()
        sales = [*settling, *verifying]
        await _settle_and_check(fault_db.pool, ours, devnet, solana, sales)
        assert [why(s.answers[0]) for s in settling] == ["200 with data"] * 10
        assert [s.answers[0].status_code for s in verifying] == [503] * 10
        assert {s.answers[0].json()["error"] for s in verifying} == {"shutting_down"}
        assert all(s.debits == 0 for s in verifying) and all(s.debits == 1 for s in settling)
        kinds = Counter(why(sale.answers[0]) for sale in sales)
        row(
            SECTION,
            "SIGTERM past a grace period of 0.5 s: 10 payments settling, 10 still in verification",
            "`worldgate serve` with 2 workers; 10 EVM payments whose receipts are slowed"
            f" {RECEIPT_DELAY_S:g} s, then 10 whose verification hangs; SIGTERM",
            sales,
            outcome=", ".join(f"{n} x {k}" for k, n in kinds.most_common())
            + "; the settling ones finished past the grace period, the others were not charged; exit code 0",
        )
    finally:
        serve.stop()
        evm_proxy.stop()
        svm_proxy.stop()
