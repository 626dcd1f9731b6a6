"""Acceptance: the remote-facilitator path works against a double on loopback, and no faulty facilitator
answer (HTML, truncated JSON, success:false, a timeout, a success-looking 503) ever releases the body."""

from __future__ import annotations

from collections.abc import Iterator

import asyncpg
import pytest
from eth_account import Account

from app.runtime.settings import Settings, replace
from payments.devnet.evm import EvmDevnet
from payments.devnet.solana_process import SolanaDevnetProcess

from . import svm
from .chain import authorization_used, new_payer, pay_for, unb64, usdc_balance
from .conftest import Gateway, running_gateway
from .facilitator_double import FacilitatorDouble, serving_double

PATH = "/v1/streams/static.volcanoes"


@pytest.fixture(scope="module")
def double(devnet: EvmDevnet, solana: SolanaDevnetProcess) -> Iterator[tuple[FacilitatorDouble, str]]:
    with serving_double(devnet, solana.state) as served:
        yield served


@pytest.fixture(scope="module")
def remote_gateway(settings: Settings, double: tuple[FacilitatorDouble, str]) -> Iterator[Gateway]:
    assert settings.evm is not None
    remote = replace(
        settings,
        facilitator_url=double[1],
        facilitator_auth="Bearer test-token",
        facilitator_settle_timeout_s=1.5,
        # the gateway itself holds no key and no RPC for either chain
        evm=replace(settings.evm, rpc_url=None, relayer_key=None),
        svm=replace(settings.svm, rpc_url=None, fee_payer_key=None),
    )
    with running_gateway(remote) as gateway:
        yield gateway


async def test_remote_facilitator_settles(
    remote_gateway: Gateway, double: tuple[FacilitatorDouble, str], devnet: EvmDevnet, pool: asyncpg.Pool
) -> None:
    facilitator, _ = double
    facilitator.mode = "ok"
    key = new_payer(devnet)
    offer = await remote_gateway.offer(PATH)
    answer = await remote_gateway.get(PATH, headers={"PAYMENT-SIGNATURE": pay_for(key, devnet, offer)})
    assert answer.status_code == 200, answer.text
    receipt = unb64(answer.headers["payment-response"])
    assert receipt["success"] is True
    assert usdc_balance(devnet, Account.from_key(key).address) == 10_000_000 - 2000
    row = await pool.fetchrow(
        "SELECT state, tx_hash, gas_cost_atomic FROM payments WHERE payer = $1", Account.from_key(key).address.lower()
    )
    assert row["state"] == "settled" and row["tx_hash"] == receipt["transaction"] and row["gas_cost_atomic"] is None


async def test_solana_offers_name_the_remote_fee_payer_and_settle_through_it(
    remote_gateway: Gateway, double: tuple[FacilitatorDouble, str], solana: SolanaDevnetProcess, pool: asyncpg.Pool
) -> None:
    facilitator, _ = double
    facilitator.mode = "ok"
    offer = await remote_gateway.offer(PATH, "solana")
    assert offer["extra"]["feePayer"] == str(facilitator.fee_payer.pubkey())  # from the remote's /supported
    assert offer["extra"]["feePayer"] != solana.state["fee_payer"]
    payer = svm.new_payer(solana.state)
    answer = await remote_gateway.get(PATH, headers={"PAYMENT-SIGNATURE": svm.pay(payer, solana.state, offer)})
    assert answer.status_code == 200, answer.text
    receipt = unb64(answer.headers["payment-response"])
    assert receipt["success"] is True and receipt["network"] == solana.state["network"]
    assert svm.usdc_balance(solana.state, payer.pubkey()) == 10_000_000 - 2000
    row = await pool.fetchrow("SELECT state, tx_hash FROM payments WHERE payer = $1", str(payer.pubkey()))
    assert row["state"] == "settled" and row["tx_hash"] == receipt["transaction"]


# mode → the state the ledger must leave the payment in (never `settled`)
FAULTS = {
    "settle_html": "settling",  # reached the facilitator, unreadable answer: outcome unknown
    "settle_truncated": "settling",
    "settle_timeout": "settling",
    "settle_503_after_settling": "settling",
    "settle_success_without_transaction": "settling",
    "settle_pending": "settling",
    "settle_false": "failed",  # a clear refusal
}


@pytest.mark.parametrize("mode", list(FAULTS))
async def test_faulty_settlement_never_serves(
    mode: str, remote_gateway: Gateway, double: tuple[FacilitatorDouble, str], devnet: EvmDevnet, pool: asyncpg.Pool
) -> None:
    facilitator, _ = double
    facilitator.mode = mode
    key = new_payer(devnet)
    payer = Account.from_key(key).address
    offer = await remote_gateway.offer(PATH)
    header = pay_for(key, devnet, offer)
    settle_calls = facilitator.calls["settle"]
    try:
        answer = await remote_gateway.get(PATH, headers={"PAYMENT-SIGNATURE": header})
    finally:
        facilitator.mode = "ok"

    # only the facilitator's own `settlement_pending` earns one retry; an unreadable answer never does
    assert facilitator.calls["settle"] - settle_calls == (2 if mode == "settle_pending" else 1)
    pending = unb64(answer.headers["payment-response"])["errorReason"] == "settlement_pending"
    assert answer.status_code == (503 if pending else 402), answer.text  # unknown outcome: wait, never pay again
    assert "records" not in answer.text
    assert answer.headers["cache-control"] == "no-store"
    receipt = unb64(answer.headers["payment-response"])
    assert receipt["success"] is False and receipt["errorReason"]
    row = await pool.fetchrow("SELECT state FROM payments WHERE payer = $1", payer.lower())
    assert row["state"] == FAULTS[mode]
    nonce = unb64(header)["payload"]["authorization"]["nonce"]
    charged = authorization_used(devnet, payer, nonce)
    assert charged == (mode == "settle_503_after_settling")  # only that double really settled
    assert usdc_balance(devnet, payer) == 10_000_000 - (2000 if charged else 0)


async def test_verify_failure_is_unavailable_and_releases(
    remote_gateway: Gateway, double: tuple[FacilitatorDouble, str], devnet: EvmDevnet, pool: asyncpg.Pool
) -> None:
    facilitator, _ = double
    facilitator.mode = "verify_html"
    key = new_payer(devnet)
    offer = await remote_gateway.offer(PATH)
    header = pay_for(key, devnet, offer)
    try:
        answer = await remote_gateway.get(PATH, headers={"PAYMENT-SIGNATURE": header})
    finally:
        facilitator.mode = "ok"
    assert answer.status_code == 503 and "records" not in answer.text
    assert answer.json()["reason"] == "unexpected_verify_error"
    row = await pool.fetchrow("SELECT state FROM payments WHERE payer = $1", Account.from_key(key).address.lower())
    assert row["state"] == "released"
    # released means the same payment goes through once the facilitator is back
    again = await remote_gateway.get(PATH, headers={"PAYMENT-SIGNATURE": header})
    assert again.status_code == 200


async def test_local_checks_run_before_the_facilitator(
    remote_gateway: Gateway, double: tuple[FacilitatorDouble, str], devnet: EvmDevnet
) -> None:
    facilitator, _ = double
    calls_before = dict(facilitator.calls)
    offer = await remote_gateway.offer(PATH)
    answer = await remote_gateway.get(
        PATH, headers={"PAYMENT-SIGNATURE": pay_for(new_payer(devnet), devnet, offer, value=1)}
    )
    assert answer.status_code == 402
    assert facilitator.calls == calls_before  # refused locally: no round trip spent on it
