"""Forged payments cannot lock a payer out (issue 13, part 1).

A forger sends 60 payments that name a real payer but are not signed by it, from one address, with the
quote limit at 20/minute and a per-payer limit a forger could exhaust many times over. What must hold, on
each network and over MCP, and across two gateways sharing Redis: no forged payment is served, the
address limit answers 429 once its quota is spent (a payment header buys no exemption), no forged
attempt leaves a ledger row, and the real payer, from another address, is served on its first try.
"""

from __future__ import annotations

import base64
import contextlib
import secrets
from collections.abc import Callable, Iterator
from typing import Any

import asyncpg
import httpx
import pytest
from eth_account import Account
from solders.keypair import Keypair
from solders.transaction import VersionedTransaction

from app.mcp.server import PAYMENT_META_KEY
from app.runtime.settings import LimitSettings, Settings
from payments import Reason
from payments.devnet.evm import EvmDevnet
from payments.devnet.solana_process import SolanaDevnetProcess

from . import svm
from .chain import new_payer, pay_for, payment_header, sign_authorization, unb64
from .conftest import Gateway, running_gateway, with_settings
from .test_abuse import fresh_window, xff
from .test_mcp import connected, evm_offer, quote_of

CAPITALS = "/v1/streams/static.capitals"
FORGED = 60
QUOTE_PER_MINUTE = 20
FLOOD = LimitSettings(
    free="100000/minute",
    quote=f"{QUOTE_PER_MINUTE}/minute",
    payer="3/minute",  # a forger counted against the payer would exhaust it twenty times over
    trusted_proxies=("127.0.0.1",),
)


@pytest.fixture(scope="module")
def flood_settings(settings: Settings) -> Settings:
    return with_settings(settings, limits=FLOOD, cache_prefix=f"wgtest:{secrets.token_hex(4)}:")


@contextlib.contextmanager
def gateways(settings: Settings, count: int) -> Iterator[list[Gateway]]:
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(running_gateway(settings)) for _ in range(count)]


def forged_evm(payer: str, devnet: EvmDevnet, offer: dict[str, Any]) -> str:
    """An authorization naming `payer` as `from`, signed by a key that is not the payer's."""
    forger = "0x" + secrets.token_hex(32)
    payload = sign_authorization(forger, devnet, to=offer["payTo"], value=int(offer["amount"]), from_address=payer)
    return payment_header(offer, payload)


def forged_svm(payer: Keypair, state: dict[str, Any], offer: dict[str, Any]) -> str:
    """A transfer from `payer`'s account whose payer signature is not the payer's (a forger cannot make it)."""
    transaction = VersionedTransaction.from_bytes(
        base64.b64decode(unb64(svm.pay(payer, state, offer))["payload"]["transaction"])
    )
    raw = bytearray(bytes(transaction))
    raw[1 + 64 : 1 + 128] = secrets.token_bytes(64)  # slot 1, the payer's: 64 bytes nobody signed
    return svm.header(offer, base64.b64encode(bytes(raw)).decode())


async def rows_for(pool: asyncpg.Pool, payer: str) -> int:
    """Ledger rows naming `payer` (EVM addresses are stored lowercase, Solana's as they are)."""
    return int(await pool.fetchval("SELECT count(*) FROM payments WHERE payer IN ($1, lower($1))", payer))


async def flood(
    targets: list[Gateway], forge: Callable[[], str], *, client: str
) -> tuple[list[httpx.Response], list[httpx.Response]]:
    """FORGED forged payments from `client`, spread over `targets`; (402 answers, 429 answers)."""
    refused, limited = [], []
    for i in range(FORGED):
        answer = await targets[i % len(targets)].get(CAPITALS, headers={**xff(client), "PAYMENT-SIGNATURE": forge()})
        assert answer.status_code in (402, 429), answer.text  # never served, never a 5xx
        (refused if answer.status_code == 402 else limited).append(answer)
    return refused, limited


def assert_refused_as_forged(answers: list[httpx.Response], reason: str) -> None:
    for answer in answers:
        assert unb64(answer.headers["payment-required"])["error"].startswith(reason), answer.headers


@pytest.mark.parametrize("replicas", [1, 2], ids=["one-gateway", "two-gateways-sharing-redis"])
async def test_forged_evm_payments_never_lock_out_the_payer(
    flood_settings: Settings, devnet: EvmDevnet, pool: asyncpg.Pool, replicas: int
) -> None:
    await fresh_window(60)
    key = new_payer(devnet)
    payer = Account.from_key(key).address
    forger_address = f"203.0.113.{10 + replicas}"
    with gateways(flood_settings, replicas) as targets:
        offer = await targets[0].offer(CAPITALS)
        refused, limited = await flood(targets, lambda: forged_evm(payer, devnet, offer), client=forger_address)
        real = await targets[-1].get(
            CAPITALS, headers={**xff("198.51.100.20"), "PAYMENT-SIGNATURE": pay_for(key, devnet, offer)}
        )
    assert len(limited) >= FORGED - QUOTE_PER_MINUTE - 2 * replicas  # the shared count may admit a sync's worth more
    assert_refused_as_forged(refused, Reason.EVM_SIGNATURE)
    assert real.status_code == 200, real.text
    assert await rows_for(pool, payer) == 1  # the real payment alone: no forged attempt left a row


async def test_forged_solana_payments_never_lock_out_the_payer(
    flood_settings: Settings, solana: SolanaDevnetProcess, pool: asyncpg.Pool
) -> None:
    await fresh_window(60)
    state = solana.state
    payer = svm.new_payer(state)
    with gateways(flood_settings, 1) as targets:
        offer = await targets[0].offer(CAPITALS, family="solana")
        refused, limited = await flood(targets, lambda: forged_svm(payer, state, offer), client="203.0.113.30")
        real = await targets[0].get(
            CAPITALS, headers={**xff("198.51.100.30"), "PAYMENT-SIGNATURE": svm.pay(payer, state, offer)}
        )
    assert len(limited) >= FORGED - QUOTE_PER_MINUTE
    assert_refused_as_forged(refused, Reason.SVM_SIGNATURE_INVALID)
    assert real.status_code == 200, real.text
    assert await rows_for(pool, str(payer.pubkey())) == 1


async def test_forged_mcp_payments_never_lock_out_the_payer(
    flood_settings: Settings, devnet: EvmDevnet, pool: asyncpg.Pool
) -> None:
    """Over MCP the per-address limit is the free routes' (one POST per call); what matters here is that
    forged payments are refused as forged and never spend the payer's own limit."""
    await fresh_window(60)
    key = new_payer(devnet)
    payer = Account.from_key(key).address
    with running_gateway(flood_settings) as gateway:
        offer = evm_offer(await quote_of(gateway))
        async with connected(gateway) as client:
            forged = [
                await client.call_tool(
                    "get_stream",
                    {"id": "static.capitals"},
                    meta={PAYMENT_META_KEY: unb64(forged_evm(payer, devnet, offer))},
                )
                for _ in range(FORGED)
            ]
            real = await client.call_tool(
                "get_stream", {"id": "static.capitals"}, meta={PAYMENT_META_KEY: unb64(pay_for(key, devnet, offer))}
            )
    assert all(r.is_error for r in forged)
    assert {r.structured_content["error"] for r in forged} == {Reason.EVM_SIGNATURE}, forged[0]
    assert not real.is_error, real
    assert await rows_for(pool, payer) == 1
