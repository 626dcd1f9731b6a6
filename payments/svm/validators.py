"""The `exact` SVM layout rules, one validator per part of a payment transaction (see `exact` for the why).

Each validator checks one thing and answers a Refusal, or what it read (the fee payer, the compute budget,
the transfer). `exact._check` runs them in the order the reference checks, so a transaction with several
faults is refused for the first of them. No I/O anywhere.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from solders.instruction import CompiledInstruction
from solders.message import MessageV0
from solders.pubkey import Pubkey
from solders.transaction import VersionedTransaction

from ..codec import PaymentPayload, PaymentRequirements
from ..errors import Reason, Refusal
from . import programs

SCHEME = "exact"
INSTRUCTIONS_MIN, INSTRUCTIONS_MAX = 3, 6
SIGNERS_MAX = 3  # fee payer + token owner (+ one more, e.g. a wallet's co-signer); each costs 5000 lamports
COMPUTE_PRICE_MICROLAMPORTS_MAX = 5_000_000  # the spec's cap: 5 lamports per compute unit
COMPUTE_UNITS_MAX_DEFAULT = 200_000  # reference clients ask for 20,000
PRIORITY_FEE_LAMPORTS_MAX_DEFAULT = 50_000  # reference clients pay about 1
MEMO_BYTES_MAX = 256
_UNKNOWN_OPTIONAL = (
    Reason.SVM_UNKNOWN_FOURTH_INSTRUCTION,
    Reason.SVM_UNKNOWN_FIFTH_INSTRUCTION,
    Reason.SVM_UNKNOWN_SIXTH_INSTRUCTION,
)

Keys = Sequence[Pubkey]


@dataclass(frozen=True, slots=True)
class Transfer:
    program: Pubkey
    source: Pubkey
    mint: Pubkey
    destination: Pubkey
    authority: Pubkey
    amount: int
    decimals: int


def offer_fee_payer(payload: PaymentPayload, requirements: PaymentRequirements) -> Pubkey | Refusal:
    """The payment is for this offer's scheme and network, and the offer names a fee payer: which one."""
    if payload.accepted.scheme != SCHEME or requirements.scheme != SCHEME:
        return Refusal(Reason.UNSUPPORTED_SCHEME, f"scheme {payload.accepted.scheme!r} is not {SCHEME!r}")
    if payload.accepted.network != requirements.network or not requirements.network.startswith("solana:"):
        return Refusal(
            Reason.NETWORK_MISMATCH, f"payment is for {payload.accepted.network}, not {requirements.network}"
        )
    fee_payer = requirements.extra.get("feePayer")
    if not isinstance(fee_payer, str):
        return Refusal(Reason.SVM_MISSING_FEE_PAYER, "the offer has no extra.feePayer")
    try:
        return Pubkey.from_string(fee_payer)
    except ValueError:
        return Refusal(Reason.SVM_MISSING_FEE_PAYER, "the offer's extra.feePayer is not an address")


def check_layout(transaction: VersionedTransaction, fee_payer: Pubkey) -> MessageV0 | Refusal:
    """A v0 message without lookup tables, paid by `fee_payer`, with few signers and 3 to 6 instructions."""
    message = transaction.message
    if not isinstance(message, MessageV0):
        return Refusal(Reason.SVM_NOT_V0, "only v0 transactions are accepted, not legacy ones")
    if message.address_table_lookups:
        return Refusal(Reason.SVM_ADDRESS_LOOKUP_TABLES, "address lookup tables are not accepted")
    keys = message.account_keys
    if not keys or keys[0] != fee_payer:
        return Refusal(Reason.SVM_FEE_PAYER_MISMATCH, "account 0 (the fee payer) must be the offer's extra.feePayer")
    if message.header.num_required_signatures > SIGNERS_MAX:
        return Refusal(Reason.SVM_EXCESSIVE_SIGNERS, f"at most {SIGNERS_MAX} signers, the fee payer included")
    count = len(message.instructions)
    if not INSTRUCTIONS_MIN <= count <= INSTRUCTIONS_MAX:
        return Refusal(
            Reason.SVM_INSTRUCTIONS_LENGTH, f"{INSTRUCTIONS_MIN} to {INSTRUCTIONS_MAX} instructions, not {count}"
        )
    return message


def compute_unit_limit(instruction: CompiledInstruction, keys: Keys) -> int | Refusal:
    """Instruction 0: SetComputeUnitLimit; the units it asks for."""
    data = bytes(instruction.data)
    if (
        keys[instruction.program_id_index] != programs.COMPUTE_BUDGET_PROGRAM
        or len(data) != 5
        or data[0] != programs.SET_COMPUTE_UNIT_LIMIT
    ):
        return Refusal(Reason.SVM_COMPUTE_LIMIT_INSTRUCTION, "instruction 0 must set the compute-unit limit")
    return int(struct.unpack_from("<I", data, 1)[0])


def compute_unit_price(instruction: CompiledInstruction, keys: Keys) -> int | Refusal:
    """Instruction 1: SetComputeUnitPrice; the price in micro-lamports per unit."""
    data = bytes(instruction.data)
    if (
        keys[instruction.program_id_index] != programs.COMPUTE_BUDGET_PROGRAM
        or len(data) != 9
        or data[0] != programs.SET_COMPUTE_UNIT_PRICE
    ):
        return Refusal(Reason.SVM_COMPUTE_PRICE_INSTRUCTION, "instruction 1 must set the compute-unit price")
    return int(struct.unpack_from("<Q", data, 1)[0])


def check_compute_budget(
    units: int, price: int, *, compute_units_max: int, priority_fee_lamports_max: int
) -> Refusal | None:
    """The fee payer pays units * price: each is capped, and so is their product."""
    if units > compute_units_max:
        return Refusal(Reason.SVM_COMPUTE_LIMIT_TOO_HIGH, f"compute-unit limit {units} is over {compute_units_max}")
    if price > COMPUTE_PRICE_MICROLAMPORTS_MAX:
        return Refusal(Reason.SVM_COMPUTE_PRICE_TOO_HIGH, f"compute-unit price {price} is over 5 lamports per unit")
    if math.ceil(units * price / 1_000_000) > priority_fee_lamports_max:
        return Refusal(
            Reason.SVM_PRIORITY_FEE_TOO_HIGH, f"the priority fee is over {priority_fee_lamports_max} lamports"
        )
    return None


def transfer_checked(instruction: CompiledInstruction, keys: Keys, fee_payer: Pubkey) -> Transfer | Refusal:
    """Instruction 2: a TransferChecked (Token or Token-2022) that moves none of the fee payer's funds."""
    data, accounts = bytes(instruction.data), bytes(instruction.accounts)
    program = keys[instruction.program_id_index]
    if (
        program not in programs.TOKEN_PROGRAMS
        or len(data) != 10
        or data[0] != programs.TRANSFER_CHECKED
        or len(accounts) != 4
    ):
        return Refusal(Reason.SVM_NO_TRANSFER_INSTRUCTION, "instruction 2 must be a TransferChecked")
    amount, decimals = struct.unpack_from("<QB", data, 1)
    source, mint, destination, authority = (keys[i] for i in accounts)
    if fee_payer in (authority, source):
        return Refusal(
            Reason.SVM_FEE_PAYER_TRANSFERRING_FUNDS, "the fee payer may not be the transfer's source or authority"
        )
    return Transfer(program, source, mint, destination, authority, int(amount), int(decimals))


def check_fee_payer_not_in_accounts(
    instructions: Sequence[CompiledInstruction], keys: Keys, fee_payer: Pubkey
) -> Refusal | None:
    """No instruction may name the fee payer: a program could otherwise spend from it."""
    for index, instruction in enumerate(instructions):
        if any(keys[account] == fee_payer for account in bytes(instruction.accounts)):
            return Refusal(
                Reason.SVM_FEE_PAYER_IN_INSTRUCTION_ACCOUNTS, f"the fee payer is an account of instruction {index}"
            )
    return None


def check_transfer_terms(transfer: Transfer, requirements: PaymentRequirements) -> Refusal | None:
    """The offer's mint, to payTo's associated token account, for exactly the price."""
    if str(transfer.mint) != requirements.asset:
        return Refusal(Reason.SVM_MINT_MISMATCH, "the transfer's mint is not the offer's asset")
    pay_to = Pubkey.from_string(requirements.pay_to)
    if transfer.destination != programs.associated_token_address(pay_to, transfer.mint, transfer.program):
        return Refusal(
            Reason.SVM_RECIPIENT_MISMATCH, "the transfer's destination is not payTo's associated token account"
        )
    if transfer.amount != int(requirements.amount):
        return Refusal(
            Reason.SVM_AMOUNT_MISMATCH, f"transfer amount {transfer.amount} is not the price {requirements.amount}"
        )
    return None


def check_optional_instructions(
    optional: Sequence[CompiledInstruction], keys: Keys, requirements: PaymentRequirements
) -> Refusal | None:
    """Instructions 3 to 5: only Memo or Lighthouse, with exactly one memo, equal to `extra.memo` if set."""
    memos = []
    for offset, instruction in enumerate(optional):
        program = keys[instruction.program_id_index]
        if program == programs.MEMO_PROGRAM:
            memos.append(bytes(instruction.data))
        elif program != programs.LIGHTHOUSE_PROGRAM:
            return Refusal(_UNKNOWN_OPTIONAL[offset], f"instruction {3 + offset} may only be a Memo or Lighthouse")
    if len(memos) != 1 or len(memos[0]) > MEMO_BYTES_MAX:
        return Refusal(Reason.SVM_MEMO_COUNT, f"exactly one memo of at most {MEMO_BYTES_MAX} bytes is required")
    expected = requirements.extra.get("memo")
    if expected is not None and memos[0] != str(expected).encode():
        return Refusal(Reason.SVM_MEMO_MISMATCH, "the memo is not the offer's extra.memo")
    return None


def check_instructions(
    message: MessageV0,
    fee_payer: Pubkey,
    requirements: PaymentRequirements,
    *,
    compute_units_max: int = COMPUTE_UNITS_MAX_DEFAULT,
    priority_fee_lamports_max: int = PRIORITY_FEE_LAMPORTS_MAX_DEFAULT,
) -> Transfer | Refusal:
    """Every instruction of a message `check_layout` passed, in order; the transfer if all pass."""
    instructions, keys = message.instructions, message.account_keys
    units = compute_unit_limit(instructions[0], keys)
    if isinstance(units, Refusal):
        return units
    price = compute_unit_price(instructions[1], keys)
    if isinstance(price, Refusal):
        return price
    budget = check_compute_budget(
        units, price, compute_units_max=compute_units_max, priority_fee_lamports_max=priority_fee_lamports_max
    )
    if budget is not None:
        return budget
    transfer = transfer_checked(instructions[2], keys, fee_payer)
    if isinstance(transfer, Refusal):
        return transfer
    refusal = (
        check_fee_payer_not_in_accounts(instructions, keys, fee_payer)
        or check_transfer_terms(transfer, requirements)
        or check_optional_instructions(instructions[3:], keys, requirements)
    )
    return refusal or transfer


def check_signatures(transaction: VersionedTransaction, message: MessageV0) -> Refusal | None:
    """Every client signature verifies; slot 0 is the fee payer's, still empty until we co-sign."""
    results = transaction.verify_with_results()
    if len(results) != message.header.num_required_signatures or not all(results[1:]):
        return Refusal(Reason.SVM_SIGNATURE_INVALID, "a client signature does not verify")
    return None
