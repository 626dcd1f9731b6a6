"""Solana programs the `exact` scheme touches, and the few instruction encodings it reads and writes."""

from __future__ import annotations

import struct

from solders.instruction import AccountMeta, Instruction
from solders.pubkey import Pubkey
from solders.token.associated import get_associated_token_address

TOKEN_PROGRAM = Pubkey.from_string("TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA")
TOKEN_2022_PROGRAM = Pubkey.from_string("TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb")
TOKEN_PROGRAMS = frozenset({TOKEN_PROGRAM, TOKEN_2022_PROGRAM})
COMPUTE_BUDGET_PROGRAM = Pubkey.from_string("ComputeBudget111111111111111111111111111111")
MEMO_PROGRAM = Pubkey.from_string("MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr")
LIGHTHOUSE_PROGRAM = Pubkey.from_string("L2TExMFKdjpN9kozasaurPirfHy9P8sbXoAN1qA3S95")

SET_COMPUTE_UNIT_LIMIT = 2  # ComputeBudget discriminators
SET_COMPUTE_UNIT_PRICE = 3
TRANSFER_CHECKED = 12  # SPL Token (and Token-2022) instruction index


def associated_token_address(owner: Pubkey, mint: Pubkey, token_program: Pubkey = TOKEN_PROGRAM) -> Pubkey:
    return get_associated_token_address(owner, mint, token_program)


def compute_unit_limit(units: int) -> Instruction:
    return Instruction(COMPUTE_BUDGET_PROGRAM, bytes([SET_COMPUTE_UNIT_LIMIT]) + struct.pack("<I", units), [])


def compute_unit_price(micro_lamports: int) -> Instruction:
    return Instruction(COMPUTE_BUDGET_PROGRAM, bytes([SET_COMPUTE_UNIT_PRICE]) + struct.pack("<Q", micro_lamports), [])


def transfer_checked(
    source: Pubkey,
    mint: Pubkey,
    destination: Pubkey,
    authority: Pubkey,
    amount: int,
    decimals: int,
    token_program: Pubkey = TOKEN_PROGRAM,
) -> Instruction:
    data = bytes([TRANSFER_CHECKED]) + struct.pack("<QB", amount, decimals)
    accounts = [
        AccountMeta(source, is_signer=False, is_writable=True),
        AccountMeta(mint, is_signer=False, is_writable=False),
        AccountMeta(destination, is_signer=False, is_writable=True),
        AccountMeta(authority, is_signer=True, is_writable=False),
    ]
    return Instruction(token_program, data, accounts)


def memo(text: bytes) -> Instruction:
    return Instruction(MEMO_PROGRAM, text, [])
