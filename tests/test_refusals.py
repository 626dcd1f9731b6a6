"""Acceptance: bad payments are refused with a reason code (402, or 400 when unreadable), never a 5xx,
never settled, and no money moves."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from typing import Any

import asyncpg
import pytest
from eth_account import Account
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from payments.devnet.evm import EvmDevnet
from payments.evm.exact import parse_authorization, transfer_calldata

from .chain import b64, new_payer, pay_for, payment_header, rpc, sign_authorization, unb64, usdc_balance
from .conftest import Gateway

CAPITALS = "/v1/streams/static.capitals"  # basic tier, 1000 atomic
VOLCANOES = "/v1/streams/static.volcanoes"  # standard tier, 2000 atomic
OTHER_ADDRESS = "0x000000000000000000000000000000000000dEaD"

Case = Callable[[str, EvmDevnet, dict[str, Any]], str]
VALUE_MISMATCH = "invalid_exact_evm_payload_authorization_value_mismatch"


def _edited(offer: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**offer, **changes}


def _consumed_on_chain(key: str, devnet: EvmDevnet, offer: dict[str, Any]) -> str:
    """An authorization whose nonce someone already used directly on the chain."""
    payload = sign_authorization(key, devnet, to=offer["payTo"], value=int(offer["amount"]))
    authorization = parse_authorization(payload)
    assert not isinstance(authorization, type(None))
    stranger = Account.create().address
    rpc(devnet, "anvil_setBalance", stranger, hex(10**18))
    rpc(devnet, "anvil_impersonateAccount", stranger)
    rpc(
        devnet,
        "eth_sendTransaction",
        {"from": stranger, "to": devnet.asset, "data": "0x" + transfer_calldata(authorization).hex()},
    )  # type: ignore[arg-type]
    return payment_header(offer, payload)


def _high_s(key: str, devnet: EvmDevnet, offer: dict[str, Any]) -> str:
    """The same signature in its malleable twin form (s' = n - s, v flipped): must not verify."""
    payload = sign_authorization(key, devnet, to=offer["payTo"], value=int(offer["amount"]))
    raw = bytes.fromhex(payload["signature"][2:])
    n = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
    s = n - int.from_bytes(raw[32:64], "big")
    v = 55 - raw[64]  # 27 <-> 28
    payload["signature"] = "0x" + (raw[:32] + s.to_bytes(32, "big") + bytes([v])).hex()
    return payment_header(offer, payload)


CASES: dict[str, tuple[Case, int, str]] = {
    "amount one unit short": (
        lambda k, d, o: pay_for(k, d, o, value=int(o["amount"]) - 1), 402, VALUE_MISMATCH),
    "amount one unit over": (
        lambda k, d, o: pay_for(k, d, o, value=int(o["amount"]) + 1), 402, VALUE_MISMATCH),
    "accepted.amount edited": (
        lambda k, d, o: pay_for(k, d, _edited(o, amount="1"), value=1), 402, "offer_mismatch"),
    "authorization to another payTo": (
        lambda k, d, o: pay_for(k, d, o, to=OTHER_ADDRESS), 402, "invalid_exact_evm_payload_recipient_mismatch"),
    "accepted.payTo edited": (
        lambda k, d, o: pay_for(k, d, _edited(o, payTo=OTHER_ADDRESS), to=OTHER_ADDRESS), 402, "offer_mismatch"),
    "another asset": (
        lambda k, d, o: pay_for(k, d, _edited(o, asset=OTHER_ADDRESS), asset=OTHER_ADDRESS), 402, "offer_mismatch"),
    "another network": (
        lambda k, d, o: pay_for(k, d, _edited(o, network="eip155:8453"), chain_id=8453), 402, "offer_mismatch"),
    "EIP-712 domain name USD Coin": (
        lambda k, d, o: pay_for(k, d, o, name="USD Coin"), 402, "invalid_exact_evm_payload_signature"),
    "accepted.extra.name edited": (
        lambda k, d, o: pay_for(k, d, _edited(o, extra={"name": "USD Coin", "version": "2"}), name="USD Coin"),
        402, "offer_mismatch"),
    "expired validBefore": (
        lambda k, d, o: pay_for(k, d, o, valid_before=int(time.time()) - 10), 402,
        "invalid_exact_evm_payload_authorization_valid_before"),
    "validBefore inside the 6 s buffer": (
        lambda k, d, o: pay_for(k, d, o, valid_before=int(time.time()) + 3), 402,
        "invalid_exact_evm_payload_authorization_valid_before"),
    "future validAfter": (
        lambda k, d, o: pay_for(k, d, o, valid_after=int(time.time()) + 3600), 402,
        "invalid_exact_evm_payload_authorization_valid_after"),
    "signed by another key": (
        lambda k, d, o: pay_for(Account.create().key.hex(), d, o, from_address=Account.from_key(k).address), 402,
        "invalid_exact_evm_payload_signature"),
    "malleable high-s signature": (_high_s, 402, "invalid_exact_evm_payload_signature"),
    "insufficient balance": (
        lambda k, d, o: pay_for(new_payer(d, 0), d, o), 402, "invalid_exact_evm_insufficient_balance"),
    "nonce already used on chain": (_consumed_on_chain, 402, "invalid_exact_evm_nonce_already_used"),
    "unsupported scheme": (
        lambda k, d, o: pay_for(k, d, _edited(o, scheme="upto")), 402, "offer_mismatch"),
    "v1 payload in a v2 header": (
        lambda k, d, o: b64({"x402Version": 1, "accepted": o,
                             "payload": sign_authorization(k, d, to=o["payTo"], value=1)}),
        402, "invalid_x402_version"),
    "malformed base64": (lambda k, d, o: "not*base64!!", 400, "invalid_payload"),
    "malformed JSON": (
        lambda k, d, o: base64.b64encode(b'{"x402Version": 2, "accepted": ').decode(), 400, "invalid_payload"),
    "JSON of the wrong shape": (lambda k, d, o: b64({"x402Version": 2, "payload": {}}), 400, "invalid_payload"),
    "authorization value not a number": (
        lambda k, d, o: payment_header(o, {**sign_authorization(k, d, to=o["payTo"], value=1),
                                           "authorization": {"value": "-5"}}), 400, "invalid_payload"),
    "a 12 KB header": (lambda k, d, o: "A" * 12_000, 400, "payment_header_too_large"),  # heads over 16 KB: 431
}  # fmt: skip


@pytest.fixture(scope="module")
def payer_key(devnet: EvmDevnet) -> str:
    return new_payer(devnet, 50_000_000)


@pytest.mark.parametrize("name", list(CASES))
async def test_refused_with_a_reason(
    name: str, gateway: Gateway, devnet: EvmDevnet, pool: asyncpg.Pool, payer_key: str
) -> None:
    build, status, reason = CASES[name]
    offer = await gateway.offer(CAPITALS)
    header = build(payer_key, devnet, offer)
    pay_to_before = usdc_balance(devnet, devnet.pay_to)
    settled_before = await pool.fetchval("SELECT count(*) FROM payments WHERE state IN ('settled', 'settling')")

    answer = await gateway.get(CAPITALS, headers={"PAYMENT-SIGNATURE": header})

    assert answer.status_code == status, answer.text
    body = answer.json()
    assert body["error"] == reason, body
    assert unb64(answer.headers["payment-required"])["error"] == reason
    assert body.get("message")
    assert "records" not in body
    assert answer.headers["cache-control"] == "no-store"
    assert usdc_balance(devnet, devnet.pay_to) == pay_to_before
    assert await pool.fetchval("SELECT count(*) FROM payments WHERE state IN ('settled', 'settling')") == settled_before


async def test_payment_for_one_route_is_refused_on_another(gateway: Gateway, devnet: EvmDevnet, payer_key: str) -> None:
    capitals = await gateway.offer(CAPITALS)
    volcanoes = await gateway.offer(VOLCANOES)
    assert int(volcanoes["amount"]) != int(capitals["amount"])
    pay_to_before = usdc_balance(devnet, devnet.pay_to)

    as_signed = pay_for(payer_key, devnet, capitals)  # echoes route A's offer
    answer = await gateway.get(VOLCANOES, headers={"PAYMENT-SIGNATURE": as_signed})
    assert answer.status_code == 402 and answer.json()["error"] == "offer_mismatch"
    assert "amount" in answer.json()["message"]

    # The same authorization re-labelled with route B's offer: the signed value still gives it away.
    payload = unb64(as_signed)["payload"]
    relabelled = payment_header(volcanoes, payload)
    answer = await gateway.get(VOLCANOES, headers={"PAYMENT-SIGNATURE": relabelled})
    assert answer.status_code == 402
    assert answer.json()["error"] == "invalid_exact_evm_payload_authorization_value_mismatch"
    assert usdc_balance(devnet, devnet.pay_to) == pay_to_before

    # And it is still good on the route it was made for: refusals above claimed nothing.
    answer = await gateway.get(CAPITALS, headers={"PAYMENT-SIGNATURE": as_signed})
    assert answer.status_code == 200


async def test_released_payment_can_be_presented_again(gateway: Gateway, devnet: EvmDevnet, pool: asyncpg.Pool) -> None:
    """A payment refused at verification releases its claim, so the payer may fix the cause and retry."""
    key = new_payer(devnet, 0)
    offer = await gateway.offer(CAPITALS)
    header = pay_for(key, devnet, offer)
    first = await gateway.get(CAPITALS, headers={"PAYMENT-SIGNATURE": header})
    assert first.json()["error"] == "invalid_exact_evm_insufficient_balance"
    from payments.devnet.evm import mint

    mint(devnet.rpc_url, devnet.asset, Account.from_key(key).address, int(offer["amount"]))
    second = await gateway.get(CAPITALS, headers={"PAYMENT-SIGNATURE": header})
    assert second.status_code == 200
    row = await pool.fetchrow(
        "SELECT state, claims FROM payments WHERE payer = $1", Account.from_key(key).address.lower()
    )
    assert row["state"] == "settled" and row["claims"] == 2


def _mutations() -> st.SearchStrategy[tuple[list[str], Any]]:
    """A path into the payment document and a hostile value to put there."""
    paths = st.sampled_from(
        [
            ["x402Version"],
            ["accepted"],
            ["accepted", "amount"],
            ["accepted", "maxTimeoutSeconds"],
            ["accepted", "extra"],
            ["accepted", "payTo"],
            ["payload"],
            ["payload", "signature"],
            ["payload", "authorization"],
            ["payload", "authorization", "value"],
            ["payload", "authorization", "validBefore"],
            ["payload", "authorization", "nonce"],
            ["payload", "authorization", "from"],
        ]
    )
    values = (
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False)
        | st.text(max_size=80)
        | st.lists(st.integers(), max_size=3)
        | st.dictionaries(st.text(max_size=5), st.integers(), max_size=3)
    )
    return st.tuples(paths, values)


@pytest.fixture(scope="module")
async def expired_payment(gateway: Gateway, devnet: EvmDevnet, payer_key: str) -> str:
    return pay_for(payer_key, devnet, await gateway.offer(CAPITALS), valid_before=int(time.time()) - 100)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mutation=_mutations())
async def test_mutated_payments_never_cause_a_server_error(
    mutation: tuple[list[str], Any], gateway: Gateway, expired_payment: str
) -> None:
    path, value = mutation
    document = unb64(expired_payment)
    target = document
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    answer = await gateway.get(CAPITALS, headers={"PAYMENT-SIGNATURE": b64(document)})
    assert answer.status_code in (400, 402), answer.text  # expired to begin with: never a 200 either
    assert answer.json()["error"] and "records" not in answer.text
