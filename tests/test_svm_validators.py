"""The SVM `exact` validators one at a time: each refuses its own bad case and passes the reference layout.

No chain: transactions are built with the client's own builders (tests/svm.py) on a zero blockhash. The whole
`_check` order is covered end to end by tests/test_solana.py and tests/faults/.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import msgspec
import pytest
from solders.address_lookup_table_account import AddressLookupTableAccount
from solders.hash import Hash
from solders.instruction import AccountMeta, Instruction
from solders.keypair import Keypair
from solders.message import Message, MessageV0
from solders.null_signer import NullSigner
from solders.pubkey import Pubkey
from solders.transaction import Transaction, VersionedTransaction

from payments import NetworkTerms, PaymentPayload, PaymentRequirements, build_offer, to_builtins
from payments.errors import Reason, Refusal
from payments.svm import programs, validators
from payments.svm.client import payment_instructions, sign_partially

from .svm import ata, instructions_with, transfer_ix

NETWORK = "solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1"
MINT = Pubkey.from_string("4zMMC9srt5Ri5X14GAgXhaHii3GnPAEERYPJgZJDncDU")
FEE_PAYER = Keypair.from_seed(bytes([7] * 32))
PAYER = Keypair.from_seed(bytes([8] * 32))
PAY_TO = Keypair.from_seed(bytes([9] * 32)).pubkey()
OFFER: PaymentRequirements = build_offer(
    NetworkTerms(NETWORK, str(MINT), str(PAY_TO), extra={"feePayer": str(FEE_PAYER.pubkey())}), 1000
)
OFFER_DICT: dict[str, Any] = to_builtins(OFFER)


def signed(instructions: list[Instruction], *, signers: list[Any] | None = None) -> VersionedTransaction:
    return sign_partially(FEE_PAYER.pubkey(), [PAYER] if signers is None else signers, instructions, Hash.default())


def message_of(instructions: list[Instruction]) -> MessageV0:
    return MessageV0.try_compile(FEE_PAYER.pubkey(), instructions, [], Hash.default())


def offer_with(**changes: Any) -> PaymentRequirements:
    return msgspec.structs.replace(OFFER, **changes)


def refused(result: object, reason: str) -> Refusal:
    assert isinstance(result, Refusal), result
    assert result.reason == reason, result
    return result


def layout(**changes: Any) -> list[Instruction]:
    """The reference instructions (with a fixed memo, so two builds compile alike), one part swapped."""
    return instructions_with(PAYER, OFFER_DICT, **{"memo": programs.memo(b"fixed memo"), **changes})


REFERENCE = message_of(layout())


# ---- the offer and the transaction's layout ----


def test_offer_fee_payer() -> None:
    payload = PaymentPayload(x402_version=2, accepted=OFFER, payload={})
    assert validators.offer_fee_payer(payload, OFFER) == FEE_PAYER.pubkey()
    refused(validators.offer_fee_payer(payload, offer_with(scheme="upto")), Reason.UNSUPPORTED_SCHEME)
    refused(validators.offer_fee_payer(payload, offer_with(network="solana:other")), Reason.NETWORK_MISMATCH)
    refused(validators.offer_fee_payer(payload, offer_with(extra={})), Reason.SVM_MISSING_FEE_PAYER)
    garbled = offer_with(extra={"feePayer": "not an address"})
    garbled_payload = PaymentPayload(x402_version=2, accepted=garbled, payload={})
    refused(validators.offer_fee_payer(garbled_payload, garbled), Reason.SVM_MISSING_FEE_PAYER)


def test_check_layout() -> None:
    fee_payer = FEE_PAYER.pubkey()
    reference = layout()
    assert validators.check_layout(signed(reference), fee_payer) == REFERENCE
    lookup = AddressLookupTableAccount(Pubkey.new_unique(), [MINT])
    with_table = MessageV0.try_compile(fee_payer, reference, [lookup], Hash.default())
    refused(
        validators.check_layout(VersionedTransaction(with_table, [NullSigner(fee_payer), PAYER]), fee_payer),
        Reason.SVM_ADDRESS_LOOKUP_TABLES,
    )

    legacy = Transaction.new_unsigned(Message.new_with_blockhash(reference, fee_payer, Hash.default()))
    refused(validators.check_layout(VersionedTransaction.from_legacy(legacy), fee_payer), Reason.SVM_NOT_V0)
    refused(validators.check_layout(signed(reference), PAYER.pubkey()), Reason.SVM_FEE_PAYER_MISMATCH)
    refused(validators.check_layout(signed(reference[:2], signers=[]), fee_payer), Reason.SVM_INSTRUCTIONS_LENGTH)
    lighthouse = Instruction(programs.LIGHTHOUSE_PROGRAM, b"", [])
    refused(validators.check_layout(signed(reference + [lighthouse] * 3), fee_payer), Reason.SVM_INSTRUCTIONS_LENGTH)
    extra = [Keypair.from_seed(bytes([i] * 32)) for i in (20, 21, 22)]
    cosigned = Instruction(programs.MEMO_PROGRAM, b"co", [AccountMeta(k.pubkey(), True, False) for k in extra])
    too_many = signed([*reference[:3], cosigned], signers=[PAYER, *extra])  # 5 signers with the fee payer
    refused(validators.check_layout(too_many, fee_payer), Reason.SVM_EXCESSIVE_SIGNERS)


# ---- one validator per instruction ----


def test_compute_unit_limit() -> None:
    limit, price = REFERENCE.instructions[:2]
    assert validators.compute_unit_limit(limit, REFERENCE.account_keys) == 20_000
    refused(validators.compute_unit_limit(price, REFERENCE.account_keys), Reason.SVM_COMPUTE_LIMIT_INSTRUCTION)
    wrong_program = message_of(layout(limit=programs.memo(b"\x02\x00\x00\x00\x00")))
    refused(
        validators.compute_unit_limit(wrong_program.instructions[0], wrong_program.account_keys),
        Reason.SVM_COMPUTE_LIMIT_INSTRUCTION,
    )


def test_compute_unit_price() -> None:
    limit, price = REFERENCE.instructions[:2]
    assert validators.compute_unit_price(price, REFERENCE.account_keys) == 1
    refused(validators.compute_unit_price(limit, REFERENCE.account_keys), Reason.SVM_COMPUTE_PRICE_INSTRUCTION)


@pytest.mark.parametrize(
    ("units", "price", "reason"),
    [
        (200_001, 1, Reason.SVM_COMPUTE_LIMIT_TOO_HIGH),
        (1, 5_000_001, Reason.SVM_COMPUTE_PRICE_TOO_HIGH),
        (200_000, 5_000_000, Reason.SVM_PRIORITY_FEE_TOO_HIGH),  # 1,000,000 lamports
    ],
)
def test_check_compute_budget(units: int, price: int, reason: str) -> None:
    limits = {"compute_units_max": 200_000, "priority_fee_lamports_max": 50_000}
    assert validators.check_compute_budget(20_000, 1, **limits) is None
    refused(validators.check_compute_budget(units, price, **limits), reason)


def test_transfer_checked() -> None:
    keys, fee_payer = REFERENCE.account_keys, FEE_PAYER.pubkey()
    transfer = validators.transfer_checked(REFERENCE.instructions[2], keys, fee_payer)
    assert isinstance(transfer, validators.Transfer)
    assert (transfer.authority, transfer.amount, transfer.decimals) == (PAYER.pubkey(), 1000, 6)
    refused(validators.transfer_checked(REFERENCE.instructions[3], keys, fee_payer), Reason.SVM_NO_TRANSFER_INSTRUCTION)
    # the fee payer as the authority (already signer 0, so the message compiles)
    by_fee_payer = transfer_ix(OFFER_DICT, source=ata(fee_payer, OFFER_DICT), authority=fee_payer)
    message = message_of(layout(transfer=by_fee_payer))
    refused(
        validators.transfer_checked(message.instructions[2], message.account_keys, fee_payer),
        Reason.SVM_FEE_PAYER_TRANSFERRING_FUNDS,
    )


def test_check_fee_payer_not_in_accounts() -> None:
    keys, fee_payer = REFERENCE.account_keys, FEE_PAYER.pubkey()
    assert validators.check_fee_payer_not_in_accounts(REFERENCE.instructions, keys, fee_payer) is None
    naming = Instruction(programs.LIGHTHOUSE_PROGRAM, b"", [AccountMeta(fee_payer, False, True)])
    message = message_of([*layout(), naming])
    refusal = refused(
        validators.check_fee_payer_not_in_accounts(message.instructions, message.account_keys, fee_payer),
        Reason.SVM_FEE_PAYER_IN_INSTRUCTION_ACCOUNTS,
    )
    assert refusal.message == "the fee payer is an account of instruction 4"


def test_check_transfer_terms() -> None:
    transfer = validators.transfer_checked(REFERENCE.instructions[2], REFERENCE.account_keys, FEE_PAYER.pubkey())
    assert isinstance(transfer, validators.Transfer)
    assert validators.check_transfer_terms(transfer, OFFER) is None
    refused(
        validators.check_transfer_terms(replace(transfer, mint=Pubkey.new_unique()), OFFER), Reason.SVM_MINT_MISMATCH
    )
    refused(
        validators.check_transfer_terms(replace(transfer, destination=ata(PAYER.pubkey(), OFFER_DICT)), OFFER),
        Reason.SVM_RECIPIENT_MISMATCH,
    )
    refused(validators.check_transfer_terms(replace(transfer, amount=999), OFFER), Reason.SVM_AMOUNT_MISMATCH)


def test_check_optional_instructions() -> None:
    keys = REFERENCE.account_keys
    assert validators.check_optional_instructions(REFERENCE.instructions[3:], keys, OFFER) is None
    unknown = Instruction(Pubkey.new_unique(), b"", [])
    lighthouse = Instruction(programs.LIGHTHOUSE_PROGRAM, b"", [])
    for tail, reason in [
        ([unknown], Reason.SVM_UNKNOWN_FOURTH_INSTRUCTION),
        ([programs.memo(b"a"), lighthouse, unknown], Reason.SVM_UNKNOWN_SIXTH_INSTRUCTION),
        ([lighthouse], Reason.SVM_MEMO_COUNT),
        ([programs.memo(b"a"), programs.memo(b"b")], Reason.SVM_MEMO_COUNT),
        ([programs.memo(b"x" * (validators.MEMO_BYTES_MAX + 1))], Reason.SVM_MEMO_COUNT),
    ]:
        message = message_of([*layout(memo=None), *tail])
        refused(validators.check_optional_instructions(message.instructions[3:], message.account_keys, OFFER), reason)
    with_memo = offer_with(extra={**OFFER.extra, "memo": "order-42"})
    refused(
        validators.check_optional_instructions(REFERENCE.instructions[3:], keys, with_memo), Reason.SVM_MEMO_MISMATCH
    )


def test_check_signatures() -> None:
    reference = layout()
    transaction = signed(reference)
    assert validators.check_signatures(transaction, REFERENCE) is None
    unsigned = signed(reference, signers=[NullSigner(PAYER.pubkey())])
    message = unsigned.message
    assert isinstance(message, MessageV0)
    refused(validators.check_signatures(unsigned, message), Reason.SVM_SIGNATURE_INVALID)


def test_check_instructions_keeps_the_reference_order() -> None:
    fee_payer = FEE_PAYER.pubkey()
    transfer = validators.check_instructions(REFERENCE, fee_payer, OFFER)
    assert isinstance(transfer, validators.Transfer) and transfer.amount == 1000
    # an over-cap limit and a malformed price instruction: the price's shape is checked before any cap
    broken = layout(limit=programs.compute_unit_limit(10**6), price=programs.memo(b"\x03" * 9))
    refused(validators.check_instructions(message_of(broken), fee_payer, OFFER), Reason.SVM_COMPUTE_PRICE_INSTRUCTION)
    # a wrong amount and an unknown fourth instruction: the transfer's terms come first
    wrong = layout(
        transfer=transfer_ix(OFFER_DICT, source=ata(PAYER.pubkey(), OFFER_DICT), authority=PAYER.pubkey(), amount=1),
        memo=Instruction(Pubkey.new_unique(), b"", []),
    )
    refused(validators.check_instructions(message_of(wrong), fee_payer, OFFER), Reason.SVM_AMOUNT_MISMATCH)
    limits = {"compute_units_max": 10_000, "priority_fee_lamports_max": 50_000}
    refused(validators.check_instructions(REFERENCE, fee_payer, OFFER, **limits), Reason.SVM_COMPUTE_LIMIT_TOO_HIGH)


def test_reference_layout_from_the_client_passes_every_validator() -> None:
    transaction = signed(payment_instructions(PAYER.pubkey(), OFFER, decimals=6))
    message = validators.check_layout(transaction, FEE_PAYER.pubkey())
    assert isinstance(message, MessageV0)
    assert isinstance(validators.check_instructions(message, FEE_PAYER.pubkey(), OFFER), validators.Transfer)
    assert validators.check_signatures(transaction, message) is None
