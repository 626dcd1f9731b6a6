"""Pure payment code, property-tested: EIP-712 against eth_account, decoders against arbitrary input,
money parsing, offer matching."""

from __future__ import annotations

import base64
import json
from decimal import Decimal
from typing import Any

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from payments import NetworkTerms, PaymentRequirements, Refusal, build_offer, match_offer, to_atomic, to_display
from payments.codec import PaymentPayload, decode_payment_header
from payments.errors import Reason
from payments.evm.client import EIP712_TYPES
from payments.evm.eip712 import domain_separator, recover_address, transfer_authorization_digest
from payments.evm.exact import Authorization, parse_authorization
from payments.money import PriceError

addresses = st.binary(min_size=20, max_size=20).map(lambda b: "0x" + b.hex())
uint256 = st.integers(min_value=0, max_value=2**256 - 1)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    key=st.binary(min_size=32, max_size=32).filter(lambda b: 0 < int.from_bytes(b, "big") < 2**256 - 2**128),
    to=addresses,
    value=uint256,
    valid_after=uint256,
    valid_before=uint256,
    nonce=st.binary(min_size=32, max_size=32),
    name=st.text(min_size=1, max_size=12),
    chain_id=st.integers(min_value=1, max_value=2**63),
    contract=addresses,
)
def test_digest_and_recovery_agree_with_eth_account(
    key: bytes,
    to: str,
    value: int,
    valid_after: int,
    valid_before: int,
    nonce: bytes,
    name: str,
    chain_id: int,
    contract: str,
) -> None:
    account = Account.from_key(key)
    message = {
        "from": account.address,
        "to": to,
        "value": value,
        "validAfter": valid_after,
        "validBefore": valid_before,
        "nonce": nonce,
    }
    domain = {"name": name, "version": "2", "chainId": chain_id, "verifyingContract": contract}
    typed = {"types": EIP712_TYPES, "primaryType": "TransferWithAuthorization", "domain": domain, "message": message}
    signable = encode_typed_data(full_message=typed)
    from eth_utils import keccak

    reference = keccak(b"\x19" + signable.version + signable.header + signable.body)
    ours = transfer_authorization_digest(
        domain_separator(name, "2", chain_id, contract),
        account.address.lower(),
        to,
        value,
        valid_after,
        valid_before,
        nonce,
    )
    assert ours == reference
    signature = bytes(Account.sign_typed_data(key, full_message=typed).signature)
    assert recover_address(ours, signature) == account.address.lower()
    assert recover_address(ours, signature[:64] + bytes([signature[64] - 27])) == account.address.lower()  # v in {0,1}
    n = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
    high_s = (
        signature[:32] + (n - int.from_bytes(signature[32:64], "big")).to_bytes(32, "big") + bytes([55 - signature[64]])
    )
    assert recover_address(ours, high_s) is None  # the malleable twin is refused


@given(st.binary(max_size=80), st.binary(min_size=32, max_size=32))
def test_recovery_of_garbage_is_none_or_an_address(signature: bytes, digest: bytes) -> None:
    recovered = recover_address(digest, signature)
    assert recovered is None or (len(recovered) == 42 and recovered.startswith("0x"))


@settings(max_examples=300)
@given(st.text(max_size=300) | st.binary(max_size=300).map(lambda b: base64.b64encode(b).decode()))
def test_header_decoder_never_raises(value: str) -> None:
    for version in (1, 2):
        result = decode_payment_header(value, version=version)
        assert isinstance(result, Refusal) or result.x402_version == version
        if isinstance(result, Refusal):
            assert result.status in (400, 402) and result.message


@settings(max_examples=300)
@given(json_values)
def test_header_decoder_on_arbitrary_json(document: Any) -> None:
    encoded = base64.b64encode(json.dumps(document).encode()).decode()
    result = decode_payment_header(encoded, version=2)
    assert isinstance(result, Refusal | PaymentPayload)


@settings(max_examples=300)
@given(
    st.dictionaries(
        st.sampled_from(["signature", "authorization", "x"]),
        json_values
        | st.dictionaries(
            st.sampled_from(["from", "to", "value", "validAfter", "validBefore", "nonce"]),
            json_values | st.text(max_size=70),
        ),
    )
)
def test_authorization_parser_never_raises(payload: dict[str, Any]) -> None:
    result = parse_authorization(payload)
    assert isinstance(result, Refusal | Authorization)
    if isinstance(result, Refusal):
        assert result.reason == Reason.INVALID_PAYLOAD


def test_header_size_cap_comes_before_decoding() -> None:
    huge = base64.b64encode(b"{" * 9000).decode()
    result = decode_payment_header(huge, version=2, bytes_max=8192)
    assert isinstance(result, Refusal) and result.reason == Reason.PAYMENT_HEADER_TOO_LARGE and result.status == 400


@pytest.mark.parametrize(
    ("price", "atomic"),
    [("$0.001", 1000), ("$2.01", 2_010_000), ("0.5", 500_000), ("1000", 1000), (1000, 1000), ("$1", 1_000_000),
     ("$0.000001", 1), ("$0.0010000", 1000), ("1_000", 1000)],
)  # fmt: skip
def test_prices_parse_exactly(price: str | int, atomic: int) -> None:
    assert to_atomic(price, 6) == atomic


@pytest.mark.parametrize("price", ["$0.0000001", "$0", "0", "-1", "$-1", "abc", "$1e3", "", True, "$1.2.3", 2**256])
def test_inexact_or_invalid_prices_are_refused(price: Any) -> None:
    with pytest.raises(PriceError):
        to_atomic(price, 6)


@given(st.decimals(min_value=Decimal("0.000001"), max_value=Decimal(10**9), places=6))
def test_dollar_prices_round_trip(amount: Decimal) -> None:
    atomic = to_atomic(f"${amount}", 6)
    assert atomic == int(amount * 10**6)
    assert Decimal(to_display(atomic, 6)) == amount


TERMS = NetworkTerms(
    "eip155:84532", "0x036CbD53842c5426634e7929541eC2318f3dCF7e", "0xAbC0000000000000000000000000000000000001",
    extra={"name": "USDC", "version": "2"},
)  # fmt: skip


def _accepted(**changes: Any) -> PaymentRequirements:
    offer = build_offer(TERMS, 1000)
    fields = {
        "scheme": offer.scheme,
        "network": offer.network,
        "amount": offer.amount,
        "asset": offer.asset,
        "pay_to": offer.pay_to,
        "max_timeout_seconds": offer.max_timeout_seconds,
        "extra": dict(offer.extra),
    }
    fields.update(changes)
    return PaymentRequirements(**fields)


def test_offer_matching() -> None:
    offers = [build_offer(TERMS, 1000)]
    assert match_offer(_accepted(), offers) == offers[0]
    assert (
        match_offer(_accepted(asset=TERMS.asset.lower(), pay_to=TERMS.pay_to.upper().replace("0X", "0x")), offers)
        == offers[0]
    )
    assert match_offer(_accepted(extra={"name": "USDC", "version": "2", "client": "added"}), offers) == offers[0]
    for changes, field in (
        ({"amount": "999"}, "amount"),
        ({"amount": "01000"}, "amount"),
        ({"asset": "0x" + "1" * 40}, "asset"),
        ({"pay_to": "0x" + "2" * 40}, "payTo"),
        ({"max_timeout_seconds": 3600}, "maxTimeoutSeconds"),
        ({"extra": {"name": "USD Coin", "version": "2"}}, "extra"),
        ({"extra": {}}, "extra"),
    ):
        refusal = match_offer(_accepted(**changes), offers)
        assert isinstance(refusal, Refusal) and refusal.reason == Reason.OFFER_MISMATCH
        assert field in refusal.message
    other_network = match_offer(_accepted(network="eip155:8453"), offers)
    assert isinstance(other_network, Refusal) and "eip155:84532" in other_network.message
