"""Solana-side helpers for tests: read the devnet, fund payers, and build (or break) payment transactions."""

from __future__ import annotations

from typing import Any

import httpx
from solders.address_lookup_table_account import AddressLookupTableAccount
from solders.hash import Hash
from solders.instruction import Instruction
from solders.keypair import Keypair
from solders.message import Message, MessageV0
from solders.null_signer import NullSigner
from solders.pubkey import Pubkey
from solders.transaction import Transaction, VersionedTransaction

from payments.codec import PaymentRequirements, convert
from payments.svm import programs
from payments.svm.client import encode_transaction, payment_instructions, sign_partially

from .chain import b64


def rpc(state: dict[str, Any], method: str, *params: Any) -> Any:
    body = httpx.post(
        state["rpc_url"], json={"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}
    ).json()
    if "error" in body:
        raise RuntimeError(body["error"])
    return body["result"]


def new_payer(state: dict[str, Any], usdc_atomic: int = 10_000_000) -> Keypair:
    payer = Keypair()
    rpc(state, "litesvm_mintTo", str(payer.pubkey()), usdc_atomic)
    return payer


def usdc_balance(state: dict[str, Any], owner: Pubkey | str) -> int:
    ata = programs.associated_token_address(Pubkey.from_string(str(owner)), Pubkey.from_string(state["asset"]))
    account = rpc(state, "getAccountInfo", str(ata), {"encoding": "base64"})["value"]
    if account is None:
        return 0
    return int(rpc(state, "getTokenAccountBalance", str(ata))["value"]["amount"])


def sol_balance(state: dict[str, Any], address: str) -> int:
    return int(rpc(state, "getBalance", address)["value"])


def landed(state: dict[str, Any]) -> int:
    """How many transactions the devnet has processed: nothing was sent if this does not move."""
    return int(rpc(state, "getEpochInfo")["transactionCount"])


def blockhash(state: dict[str, Any]) -> Hash:
    return Hash.from_string(rpc(state, "getLatestBlockhash")["value"]["blockhash"])


def header(offer: dict[str, Any], transaction_b64: str) -> str:
    return b64({"x402Version": 2, "accepted": offer, "payload": {"transaction": transaction_b64}})


def pay(
    payer: Keypair,
    state: dict[str, Any],
    offer: dict[str, Any],
    *,
    instructions: list[Instruction] | None = None,
    fee_payer: Pubkey | None = None,
    signers: list[Keypair] | None = None,
    recent: Hash | None = None,
) -> str:
    """A PAYMENT-SIGNATURE for `offer`, built as the reference clients do unless told otherwise."""
    requirements: PaymentRequirements = convert(offer, PaymentRequirements)
    fee_payer = fee_payer or Pubkey.from_string(offer["extra"]["feePayer"])
    instructions = (
        instructions if instructions is not None else payment_instructions(payer.pubkey(), requirements, decimals=6)
    )
    signers = [payer] if signers is None else signers  # [] when the payer is not a required signer
    transaction = sign_partially(fee_payer, signers, instructions, recent or blockhash(state))
    return header(offer, encode_transaction(transaction))


# ---- building blocks for hostile transactions (tests/test_solana.py, tests/faults/test_hostile_inputs.py) ----

BASIC_PRICE = 1000  # atomic USDC of the basic tier, the price of the routes these tests pay


def instructions_with(payer: Keypair, offer: dict[str, Any], **changes: Any) -> list[Instruction]:
    """The reference layout with one part swapped: limit, price, transfer or memo (None drops it)."""
    requirements = convert(offer, PaymentRequirements)
    limit, price, transfer_ix, memo = payment_instructions(payer.pubkey(), requirements, decimals=6)
    parts = {"limit": limit, "price": price, "transfer": transfer_ix, "memo": memo, **changes}
    return [parts[k] for k in ("limit", "price", "transfer", "memo") if parts[k] is not None] + changes.get("extra", [])


def transfer_ix(offer: dict[str, Any], *, source: Pubkey, authority: Pubkey, destination: Pubkey | None = None,
              amount: int = BASIC_PRICE, mint: Pubkey | None = None) -> Instruction:  # fmt: skip
    mint = mint or Pubkey.from_string(offer["asset"])
    pay_to_ata = programs.associated_token_address(Pubkey.from_string(offer["payTo"]), mint)
    return programs.transfer_checked(source, mint, destination or pay_to_ata, authority, amount, 6)


def ata(owner: Pubkey, offer: dict[str, Any]) -> Pubkey:
    return programs.associated_token_address(owner, Pubkey.from_string(offer["asset"]))


def legacy_header(payer: Keypair, state: dict[str, Any], offer: dict[str, Any]) -> str:
    fee_payer = Pubkey.from_string(offer["extra"]["feePayer"])
    message = Message.new_with_blockhash(instructions_with(payer, offer), fee_payer, blockhash(state))
    legacy = Transaction.new_unsigned(message)
    legacy.partial_sign([payer], blockhash(state))
    return header(offer, encode_transaction(VersionedTransaction.from_legacy(legacy)))


def lookup_table_header(payer: Keypair, state: dict[str, Any], offer: dict[str, Any]) -> str:
    fee_payer = Pubkey.from_string(offer["extra"]["feePayer"])
    table = AddressLookupTableAccount(Pubkey.new_unique(), [Pubkey.from_string(offer["asset"])])
    message = MessageV0.try_compile(fee_payer, instructions_with(payer, offer), [table], blockhash(state))
    return header(offer, encode_transaction(VersionedTransaction(message, [NullSigner(fee_payer), payer])))


def fee_payer_key(offer: dict[str, Any]) -> Pubkey:
    return Pubkey.from_string(offer["extra"]["feePayer"])
