"""The paying side of `exact` on Solana: the partially signed v0 transaction x402 clients send.

Same layout as the reference TS and Python clients: compute-unit limit (20,000), compute-unit price
(1 microlamport), TransferChecked from the payer's ATA to payTo's ATA, and a memo (the offer's
`extra.memo`, else 16 random bytes as hex); the fee payer is the facilitator's `extra.feePayer`,
whose signature slot stays empty for it to fill.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Sequence

from solders.hash import Hash
from solders.instruction import Instruction
from solders.keypair import Keypair
from solders.message import MessageV0
from solders.null_signer import NullSigner
from solders.pubkey import Pubkey
from solders.transaction import VersionedTransaction

from ..codec import PaymentPayload, PaymentRequirements, encode_header
from . import programs

COMPUTE_UNIT_LIMIT_DEFAULT = 20_000
COMPUTE_UNIT_PRICE_DEFAULT = 1  # microlamports per compute unit


def payment_instructions(
    payer: Pubkey,
    offer: PaymentRequirements,
    *,
    decimals: int,
    token_program: Pubkey = programs.TOKEN_PROGRAM,
    memo: bytes | None = None,
) -> list[Instruction]:
    mint, pay_to = Pubkey.from_string(offer.asset), Pubkey.from_string(offer.pay_to)
    seller_memo = offer.extra.get("memo")
    text = memo if memo is not None else (seller_memo.encode() if seller_memo else os.urandom(16).hex().encode())
    return [
        programs.compute_unit_limit(COMPUTE_UNIT_LIMIT_DEFAULT),
        programs.compute_unit_price(COMPUTE_UNIT_PRICE_DEFAULT),
        programs.transfer_checked(
            programs.associated_token_address(payer, mint, token_program),
            mint,
            programs.associated_token_address(pay_to, mint, token_program),
            payer,
            int(offer.amount),
            decimals,
            token_program,
        ),
        programs.memo(text),
    ]


def sign_partially(
    fee_payer: Pubkey, signers: Sequence[Keypair], instructions: Sequence[Instruction], blockhash: Hash
) -> VersionedTransaction:
    """A v0 transaction with `fee_payer` at index 0, signed by everyone but the fee payer."""
    message = MessageV0.try_compile(fee_payer, list(instructions), [], blockhash)
    return VersionedTransaction(message, [NullSigner(fee_payer), *signers])


def encode_transaction(transaction: VersionedTransaction) -> str:
    return base64.b64encode(bytes(transaction)).decode("ascii")


def pay(payer: Keypair, offer: PaymentRequirements, *, blockhash: Hash, decimals: int = 6) -> str:
    """A PAYMENT-SIGNATURE header value paying `offer` exactly, as the reference clients build it."""
    fee_payer = Pubkey.from_string(str(offer.extra["feePayer"]))
    transaction = sign_partially(
        fee_payer, [payer], payment_instructions(payer.pubkey(), offer, decimals=decimals), blockhash
    )
    payload = {"transaction": encode_transaction(transaction)}
    return encode_header(PaymentPayload(x402_version=2, accepted=offer, payload=payload))
