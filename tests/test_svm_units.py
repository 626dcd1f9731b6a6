"""The SVM checks that need no chain, including arbitrary and mutated transactions."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from solders.hash import Hash
from solders.keypair import Keypair

from payments import NetworkTerms, PaymentPayload, Refusal, build_offer
from payments.errors import Reason
from payments.outcomes import Inspection
from payments.svm.client import encode_transaction, payment_instructions, sign_partially
from payments.svm.exact import ExactSvmScheme, decode_transaction, inspect
from payments.svm.rpc import SvmRpc

NETWORK = "solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1"
MINT = "4zMMC9srt5Ri5X14GAgXhaHii3GnPAEERYPJgZJDncDU"
FEE_PAYER = Keypair.from_seed(bytes(32))
PAY_TO = Keypair.from_seed(bytes([1] * 32)).pubkey()
PAYER = Keypair.from_seed(bytes([2] * 32))


def _offer(**extra: Any) -> Any:
    terms = NetworkTerms(NETWORK, MINT, str(PAY_TO), extra={"feePayer": str(FEE_PAYER.pubkey()), **extra})
    return build_offer(terms, 1000)


def _payload(offer: Any, memo: bytes | None = None) -> PaymentPayload:
    instructions = payment_instructions(PAYER.pubkey(), offer, decimals=6, memo=memo)
    transaction = sign_partially(FEE_PAYER.pubkey(), [PAYER], instructions, Hash.default())
    return PaymentPayload(x402_version=2, accepted=offer, payload={"transaction": encode_transaction(transaction)})


def test_the_reference_layout_passes_and_keys_on_the_message() -> None:
    offer = _offer()
    first, second = inspect(_payload(offer), offer), inspect(_payload(offer), offer)
    assert isinstance(first, Inspection) and isinstance(second, Inspection)
    assert first.payer == str(PAYER.pubkey()) and first.amount_atomic == 1000
    assert first.payment_key != second.payment_key  # the random memo makes identical payments distinct


def test_a_seller_memo_must_be_matched_exactly() -> None:
    offer = _offer(memo="invoice-42")
    assert isinstance(inspect(_payload(offer), offer), Inspection)  # the client copies extra.memo
    refused = inspect(_payload(offer, memo=b"invoice-43"), offer)
    assert isinstance(refused, Refusal) and refused.reason == Reason.SVM_MEMO_MISMATCH


async def test_an_offer_naming_another_fee_payer_is_not_ours_to_sign() -> None:
    scheme = ExactSvmScheme(NETWORK, SvmRpc("http://127.0.0.1:9"), Keypair())  # refused before any I/O
    offer = _offer()
    verification = await scheme.verify(_payload(offer), offer)
    assert not verification.valid and verification.reason == Reason.SVM_FEE_PAYER_NOT_MANAGED
    settlement = await scheme.settle(_payload(offer), offer)
    assert not settlement.success and settlement.reason == Reason.SVM_FEE_PAYER_NOT_MANAGED


@settings(max_examples=300)
@given(st.binary(max_size=1300))
def test_arbitrary_bytes_decode_to_a_refusal_or_a_transaction(raw: bytes) -> None:
    result = decode_transaction({"transaction": base64.b64encode(raw).decode()})
    assert not isinstance(result, Refusal) or result.reason == Reason.SVM_COULD_NOT_DECODE


@settings(max_examples=300)
@given(st.data())
def test_mutated_transactions_are_refused_never_raised(data: st.DataObject) -> None:
    offer = _offer()
    raw = bytearray(base64.b64decode(_payload(offer).payload["transaction"]))
    for _ in range(data.draw(st.integers(1, 4))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    payload = PaymentPayload(x402_version=2, accepted=offer, payload={"transaction": base64.b64encode(raw).decode()})
    result = inspect(payload, offer)
    assert isinstance(result, Refusal | Inspection)


@pytest.mark.parametrize("transaction", [None, 7, "", "A" * 5000, ["x"]])
def test_a_transaction_field_of_the_wrong_kind_is_refused(transaction: Any) -> None:
    offer = _offer()
    result = inspect(PaymentPayload(x402_version=2, accepted=offer, payload={"transaction": transaction}), offer)
    assert isinstance(result, Refusal) and result.reason == Reason.SVM_COULD_NOT_DECODE
