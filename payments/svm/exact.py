"""`v2-solana-exact`: SPL TransferChecked payments in a partially signed v0 transaction, verified,
co-signed by our fee payer, sent and confirmed.

The fee payer's own SOL pays for every transaction it co-signs, so the layout is checked strictly,
following the spec and the stricter TS reference (x402-protocol.md §5.3): the fee payer is
`extra.feePayer` at account index 0 and in no instruction's accounts; instructions are compute-unit
limit, compute-unit price, TransferChecked (Token or Token-2022), then only Memo or Lighthouse;
mint, destination ATA and the exact amount match the offer; every client signature is valid. On
top of the spec's 5 lamports/CU price cap, the compute-unit limit, the number of signers and the
total priority fee are capped, so a payment cannot make the fee payer spend more than a bounded
amount. A memo is required (it makes identical payments distinct) and must equal `extra.memo`
when the offer sets one. Address lookup tables are refused: the fee payer could hide in one.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import math
import struct
import time
from dataclasses import dataclass
from typing import Any

from solders.keypair import Keypair
from solders.message import MessageV0, to_bytes_versioned
from solders.pubkey import Pubkey
from solders.transaction import SanitizeError, VersionedTransaction

from ..codec import PaymentPayload, PaymentRequirements, SupportedKind
from ..errors import Reason, Refusal
from ..outcomes import Inspection, OnBroadcast, Settlement, Verification
from . import programs
from .rpc import RpcError, RpcUnavailable, SvmRpc

SCHEME = "exact"
SCHEME_ID = "v2-solana-exact"
TRANSACTION_BYTES_MAX = 1232  # Solana's packet limit
INSTRUCTIONS_MIN, INSTRUCTIONS_MAX = 3, 6
SIGNERS_MAX = 3  # fee payer + token owner (+ one more, e.g. a wallet's co-signer); each costs 5000 lamports
COMPUTE_PRICE_MICROLAMPORTS_MAX = 5_000_000  # the spec's cap: 5 lamports per compute unit
COMPUTE_UNITS_MAX_DEFAULT = 200_000  # reference clients ask for 20,000
PRIORITY_FEE_LAMPORTS_MAX_DEFAULT = 50_000  # reference clients pay about 1
MEMO_BYTES_MAX = 256
CONFIRM_TIMEOUT_S_DEFAULT = 60.0  # about a blockhash's lifetime (150 blocks of 400-600 ms)
CONFIRM_POLL_S_MAX = 0.5
_UNKNOWN_OPTIONAL = (
    Reason.SVM_UNKNOWN_FOURTH_INSTRUCTION,
    Reason.SVM_UNKNOWN_FIFTH_INSTRUCTION,
    Reason.SVM_UNKNOWN_SIXTH_INSTRUCTION,
)


@dataclass(frozen=True, slots=True)
class Transfer:
    program: Pubkey
    source: Pubkey
    mint: Pubkey
    destination: Pubkey
    authority: Pubkey
    amount: int
    decimals: int


@dataclass(frozen=True, slots=True)
class _Checked:
    inspection: Inspection
    transaction: VersionedTransaction
    message: MessageV0
    transfer: Transfer


def _refuse(reason: str, message: str) -> Refusal:
    return Refusal(reason, message)


def decode_transaction(payload: dict[str, Any]) -> VersionedTransaction | Refusal:
    encoded = payload.get("transaction")
    if not isinstance(encoded, str) or len(encoded) > 4 * (TRANSACTION_BYTES_MAX // 3 + 1):
        return _refuse(Reason.SVM_COULD_NOT_DECODE, "payload.transaction must be the base64 of one transaction")
    try:
        transaction = VersionedTransaction.from_bytes(base64.b64decode(encoded, validate=True))
        transaction.sanitize()  # account and program indices in range, header consistent
        return transaction
    except (binascii.Error, ValueError, TypeError, SanitizeError) as exc:
        return _refuse(Reason.SVM_COULD_NOT_DECODE, f"the transaction could not be decoded: {str(exc)[:120]}")


def _u32(data: bytes) -> int:
    return int(struct.unpack_from("<I", data, 1)[0])


def _u64(data: bytes) -> int:
    return int(struct.unpack_from("<Q", data, 1)[0])


def _check(
    payload: PaymentPayload,
    requirements: PaymentRequirements,
    *,
    compute_units_max: int = COMPUTE_UNITS_MAX_DEFAULT,
    priority_fee_lamports_max: int = PRIORITY_FEE_LAMPORTS_MAX_DEFAULT,
) -> _Checked | Refusal:
    if payload.accepted.scheme != SCHEME or requirements.scheme != SCHEME:
        return _refuse(Reason.UNSUPPORTED_SCHEME, f"scheme {payload.accepted.scheme!r} is not {SCHEME!r}")
    if payload.accepted.network != requirements.network or not requirements.network.startswith("solana:"):
        return _refuse(
            Reason.NETWORK_MISMATCH, f"payment is for {payload.accepted.network}, not {requirements.network}"
        )
    fee_payer_text = requirements.extra.get("feePayer")
    if not isinstance(fee_payer_text, str):
        return _refuse(Reason.SVM_MISSING_FEE_PAYER, "the offer has no extra.feePayer")
    try:
        fee_payer = Pubkey.from_string(fee_payer_text)
    except ValueError:
        return _refuse(Reason.SVM_MISSING_FEE_PAYER, "the offer's extra.feePayer is not an address")
    transaction = decode_transaction(payload.payload)
    if isinstance(transaction, Refusal):
        return transaction
    message = transaction.message
    if not isinstance(message, MessageV0):
        return _refuse(Reason.SVM_NOT_V0, "only v0 transactions are accepted, not legacy ones")
    if message.address_table_lookups:
        return _refuse(Reason.SVM_ADDRESS_LOOKUP_TABLES, "address lookup tables are not accepted")
    keys = message.account_keys
    if not keys or keys[0] != fee_payer:
        return _refuse(Reason.SVM_FEE_PAYER_MISMATCH, "account 0 (the fee payer) must be the offer's extra.feePayer")
    signers = message.header.num_required_signatures
    if signers > SIGNERS_MAX:
        return _refuse(Reason.SVM_EXCESSIVE_SIGNERS, f"at most {SIGNERS_MAX} signers, the fee payer included")

    instructions = message.instructions
    if not INSTRUCTIONS_MIN <= len(instructions) <= INSTRUCTIONS_MAX:
        return _refuse(
            Reason.SVM_INSTRUCTIONS_LENGTH,
            f"{INSTRUCTIONS_MIN} to {INSTRUCTIONS_MAX} instructions, not {len(instructions)}",
        )

    def program(index: int) -> Pubkey:
        return keys[instructions[index].program_id_index]

    limit_data, price_data = bytes(instructions[0].data), bytes(instructions[1].data)
    if (
        program(0) != programs.COMPUTE_BUDGET_PROGRAM
        or len(limit_data) != 5
        or limit_data[0] != programs.SET_COMPUTE_UNIT_LIMIT
    ):
        return _refuse(Reason.SVM_COMPUTE_LIMIT_INSTRUCTION, "instruction 0 must set the compute-unit limit")
    if (
        program(1) != programs.COMPUTE_BUDGET_PROGRAM
        or len(price_data) != 9
        or price_data[0] != programs.SET_COMPUTE_UNIT_PRICE
    ):
        return _refuse(Reason.SVM_COMPUTE_PRICE_INSTRUCTION, "instruction 1 must set the compute-unit price")
    units, price = _u32(limit_data), _u64(price_data)
    if units > compute_units_max:
        return _refuse(Reason.SVM_COMPUTE_LIMIT_TOO_HIGH, f"compute-unit limit {units} is over {compute_units_max}")
    if price > COMPUTE_PRICE_MICROLAMPORTS_MAX:
        return _refuse(Reason.SVM_COMPUTE_PRICE_TOO_HIGH, f"compute-unit price {price} is over 5 lamports per unit")
    if math.ceil(units * price / 1_000_000) > priority_fee_lamports_max:
        return _refuse(
            Reason.SVM_PRIORITY_FEE_TOO_HIGH, f"the priority fee is over {priority_fee_lamports_max} lamports"
        )

    transfer_ix = instructions[2]
    transfer_data, transfer_accounts = bytes(transfer_ix.data), bytes(transfer_ix.accounts)
    if (
        program(2) not in programs.TOKEN_PROGRAMS
        or len(transfer_data) != 10
        or transfer_data[0] != programs.TRANSFER_CHECKED
        or len(transfer_accounts) != 4
    ):
        return _refuse(Reason.SVM_NO_TRANSFER_INSTRUCTION, "instruction 2 must be a TransferChecked")
    amount, decimals = struct.unpack_from("<QB", transfer_data, 1)
    source, mint, destination, authority = (keys[i] for i in transfer_accounts)
    transfer = Transfer(program(2), source, mint, destination, authority, int(amount), int(decimals))
    if fee_payer in (authority, source):
        return _refuse(
            Reason.SVM_FEE_PAYER_TRANSFERRING_FUNDS, "the fee payer may not be the transfer's source or authority"
        )
    for index, instruction in enumerate(instructions):
        if any(keys[account] == fee_payer for account in bytes(instruction.accounts)):
            return _refuse(
                Reason.SVM_FEE_PAYER_IN_INSTRUCTION_ACCOUNTS, f"the fee payer is an account of instruction {index}"
            )
    if str(mint) != requirements.asset:
        return _refuse(Reason.SVM_MINT_MISMATCH, "the transfer's mint is not the offer's asset")
    pay_to = Pubkey.from_string(requirements.pay_to)
    if destination != programs.associated_token_address(pay_to, mint, transfer.program):
        return _refuse(
            Reason.SVM_RECIPIENT_MISMATCH, "the transfer's destination is not payTo's associated token account"
        )
    if transfer.amount != int(requirements.amount):
        return _refuse(
            Reason.SVM_AMOUNT_MISMATCH, f"transfer amount {transfer.amount} is not the price {requirements.amount}"
        )

    memos = []
    for offset, instruction in enumerate(instructions[3:]):
        if program(3 + offset) == programs.MEMO_PROGRAM:
            memos.append(bytes(instruction.data))
        elif program(3 + offset) != programs.LIGHTHOUSE_PROGRAM:
            return _refuse(_UNKNOWN_OPTIONAL[offset], f"instruction {3 + offset} may only be a Memo or Lighthouse")
    if len(memos) != 1 or len(memos[0]) > MEMO_BYTES_MAX:
        return _refuse(Reason.SVM_MEMO_COUNT, f"exactly one memo of at most {MEMO_BYTES_MAX} bytes is required")
    expected_memo = requirements.extra.get("memo")
    if expected_memo is not None and memos[0] != str(expected_memo).encode():
        return _refuse(Reason.SVM_MEMO_MISMATCH, "the memo is not the offer's extra.memo")

    results = transaction.verify_with_results()
    if len(results) != signers or not all(results[1:]):
        return _refuse(Reason.SVM_SIGNATURE_INVALID, "a client signature does not verify")
    network = requirements.network
    inspection = Inspection(
        scheme_id=SCHEME_ID,
        network=network,
        asset=requirements.asset,
        payer=str(authority),
        pay_to=requirements.pay_to,
        amount_atomic=transfer.amount,
        valid_before_unix_s=None,  # a blockhash, not a timestamp, bounds its life
        payment_key=f"{network}:{message.hash()}",
        signer_verified=True,
    )
    return _Checked(inspection, transaction, message, transfer)


def inspect(payload: PaymentPayload, requirements: PaymentRequirements) -> Inspection | Refusal:
    """Every check that needs no chain (layout, amounts, addresses, client signatures)."""
    checked = _check(payload, requirements)
    return checked if isinstance(checked, Refusal) else checked.inspection


class ExactSvmScheme:
    """Verifier and settler of `exact` payments on one Solana network, with our fee payer."""

    scheme = SCHEME

    def __init__(
        self,
        network: str,
        rpc: SvmRpc,
        fee_payer: Keypair,
        *,
        confirm_timeout_s: float = CONFIRM_TIMEOUT_S_DEFAULT,
        compute_units_max: int = COMPUTE_UNITS_MAX_DEFAULT,
        priority_fee_lamports_max: int = PRIORITY_FEE_LAMPORTS_MAX_DEFAULT,
    ) -> None:
        self.network = network
        self._rpc = rpc
        self._fee_payer = fee_payer
        self._confirm_timeout_s = confirm_timeout_s
        self._limits = {"compute_units_max": compute_units_max, "priority_fee_lamports_max": priority_fee_lamports_max}

    def __repr__(self) -> str:  # never the key
        return f"ExactSvmScheme(network={self.network!r}, fee_payer={self.signer})"

    @property
    def signer(self) -> str:
        return str(self._fee_payer.pubkey())

    def supported_kind(self) -> SupportedKind:
        return SupportedKind(x402_version=2, scheme=SCHEME, network=self.network, extra={"feePayer": self.signer})

    def _checked(self, payload: PaymentPayload, requirements: PaymentRequirements) -> _Checked | Refusal:
        if requirements.extra.get("feePayer") != self.signer:
            return _refuse(Reason.SVM_FEE_PAYER_NOT_MANAGED, "the offer's feePayer is not this facilitator's")
        return _check(payload, requirements, **self._limits)

    def _cosigned(self, checked: _Checked) -> VersionedTransaction:
        signatures = list(checked.transaction.signatures)
        signatures[0] = self._fee_payer.sign_message(to_bytes_versioned(checked.message))
        return VersionedTransaction.populate(checked.message, signatures)

    async def verify(self, payload: PaymentPayload, requirements: PaymentRequirements) -> Verification:
        checked = self._checked(payload, requirements)
        if isinstance(checked, Refusal):
            return Verification(False, reason=checked.reason, message=checked.message)
        payer = checked.inspection.payer
        if not await self._rpc.is_blockhash_valid(str(checked.message.recent_blockhash)):
            return Verification(False, payer, Reason.SVM_BLOCKHASH_EXPIRED, "the transaction's blockhash has expired")
        signed = base64.b64encode(bytes(self._cosigned(checked))).decode()
        try:
            simulation = await self._rpc.simulate(signed, sig_verify=True)
        except RpcError as exc:
            return Verification(
                False, payer, Reason.SVM_SIMULATION_FAILED, f"simulation refused: {exc.rpc_message[:200]}"
            )
        if simulation.get("err") is not None:
            return Verification(
                False, payer, Reason.SVM_SIMULATION_FAILED, f"simulation failed: {str(simulation['err'])[:200]}"
            )
        return Verification(True, payer)

    async def settle(
        self, payload: PaymentPayload, requirements: PaymentRequirements, on_broadcast: OnBroadcast | None = None
    ) -> Settlement:
        checked = self._checked(payload, requirements)
        if isinstance(checked, Refusal):
            return Settlement(False, self.network, reason=checked.reason, message=checked.message)
        payer = checked.inspection.payer
        signed = self._cosigned(checked)
        signature = str(signed.signatures[0])  # known before sending: it is ours
        if on_broadcast is not None:
            await on_broadcast(signature)
        try:
            await self._rpc.send(base64.b64encode(bytes(signed)).decode())
        except RpcError as exc:  # refused at preflight: nothing was broadcast
            return Settlement(
                False,
                self.network,
                "",
                payer,
                Reason.TRANSACTION_FAILED,
                f"the node refused it: {exc.rpc_message[:200]}",
            )
        except RpcUnavailable:
            pass  # the answer was lost, not necessarily the transaction: ask the chain, as after any send
        return await self._confirm(signature, str(checked.message.recent_blockhash), checked, payer)

    def _failed(self, signature: str, payer: str, reason: str, message: str) -> Settlement:
        return Settlement(False, self.network, signature, payer, reason, message)

    async def _confirm(self, signature: str, blockhash: str, checked: _Checked, payer: str) -> Settlement:
        """Poll the signature until it is confirmed, fails, or can no longer land (its blockhash expired)."""
        deadline = time.monotonic() + self._confirm_timeout_s
        delay = 0.01
        while True:
            try:
                status = await self._rpc.signature_status(signature)
                if status is None and not await self._rpc.is_blockhash_valid(blockhash):
                    status = await self._rpc.signature_status(signature)  # it may have landed just before
                    if status is None:
                        return self._failed(
                            signature, payer, Reason.TRANSACTION_FAILED, "the blockhash expired before it landed"
                        )
            except RpcUnavailable:
                status = None  # a flaky node is not a failed payment: keep asking until the deadline
            if status is not None and status.get("confirmationStatus") in ("confirmed", "finalized"):
                if status.get("err") is not None:
                    return self._failed(
                        signature, payer, Reason.TRANSACTION_FAILED, f"failed on chain: {status['err']}"
                    )
                return await self._landed(signature, checked, payer)
            if time.monotonic() + delay > deadline:
                return self._failed(
                    signature, payer, Reason.SETTLEMENT_PENDING, f"not confirmed within {self._confirm_timeout_s:.0f} s"
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, CONFIRM_POLL_S_MAX)

    async def _landed(self, signature: str, checked: _Checked, payer: str) -> Settlement:
        """Confirmed without error: read the fee paid, and check the payee's token balance moved by the amount."""
        try:
            landed = await self._rpc.transaction(signature)
        except (RpcError, RpcUnavailable):
            landed = None
        mint, pay_to = checked.inspection.asset, checked.inspection.pay_to
        reading = read_landed(landed, mint=mint, payer=payer, pay_to=pay_to) if landed else None
        if reading is None:
            return Settlement(True, self.network, signature, payer, gas_payer=self.signer)  # confirmed; details unread
        if reading.received != checked.transfer.amount:
            return self._failed(
                signature, payer, Reason.SVM_TRANSFER_MISMATCH, f"payTo's balance moved by {reading.received}"
            )
        return Settlement(True, self.network, signature, payer, gas_cost_atomic=reading.fee, gas_payer=self.signer)


@dataclass(frozen=True, slots=True)
class LandedTransfer:
    """What a landed transaction's metadata shows for one mint between a payer and a payee."""

    err: Any  # meta.err: None if it succeeded
    fee: int | None  # lamports, meta.fee
    fee_payer: str | None  # account 0, who paid the fee
    received: int  # the change of pay_to's token balance in the mint
    paid: int  # how much the payer's token balance in the mint went down

    @property
    def moved(self) -> int:
        """What demonstrably went from the payer to pay_to: no more than either side shows."""
        return max(0, min(self.received, self.paid))


def read_landed(landed: dict[str, Any], *, mint: str, payer: str, pay_to: str) -> LandedTransfer | None:
    """Read a getTransaction answer as settlement and the auditor both judge it; None if it has no meta.

    Balances are matched by their `owner` and `mint` (the RPC's documented token-balance fields), so
    a closed or newly created token account counts as a zero on the side where it is missing.
    """
    meta = landed.get("meta")
    if not isinstance(meta, dict):
        return None
    keys = _account_keys(landed, meta)
    pre, post = meta.get("preTokenBalances"), meta.get("postTokenBalances")

    def change(owner: str) -> int:
        return _token_total(post, keys, mint, owner) - _token_total(pre, keys, mint, owner)

    fee = meta.get("fee")
    return LandedTransfer(
        err=meta.get("err"),
        fee=fee if isinstance(fee, int) and not isinstance(fee, bool) else None,
        fee_payer=keys[0] if keys else None,
        received=change(pay_to),
        paid=-change(payer),
    )


def _account_keys(landed: dict[str, Any], meta: dict[str, Any]) -> list[str]:
    """Static keys, then the loaded ones (writable, readonly): the order `accountIndex` counts in."""
    transaction = landed.get("transaction")
    keys: list[str] = []
    if isinstance(transaction, list) and len(transaction) == 2 and transaction[1] == "base64":
        try:
            decoded = VersionedTransaction.from_bytes(base64.b64decode(str(transaction[0]), validate=True))
        except (binascii.Error, ValueError, TypeError):
            return []
        keys = [str(key) for key in decoded.message.account_keys]
    elif isinstance(transaction, dict) and isinstance(transaction.get("message"), dict):  # json / jsonParsed
        for key in transaction["message"].get("accountKeys") or []:
            keys.append(str(key.get("pubkey")) if isinstance(key, dict) else str(key))
    loaded = meta.get("loadedAddresses")
    if isinstance(loaded, dict):
        keys += [str(k) for k in (loaded.get("writable") or []) + (loaded.get("readonly") or [])]
    return keys


def _owned_by(balance: dict[str, Any], keys: list[str], mint: str, owner: str) -> bool:
    if "owner" in balance:
        return balance["owner"] == owner
    # a node that omits `owner`: the account counts if it is owner's associated token account
    index = balance.get("accountIndex")
    if not isinstance(index, int) or not 0 <= index < len(keys):
        return False
    try:
        owner_key, mint_key = Pubkey.from_string(owner), Pubkey.from_string(mint)
    except ValueError:
        return False
    token_programs = [p for p in programs.TOKEN_PROGRAMS if str(p) == balance.get("programId")]
    return keys[index] in {
        str(programs.associated_token_address(owner_key, mint_key, p))
        for p in token_programs or programs.TOKEN_PROGRAMS
    }


def _token_total(balances: Any, keys: list[str], mint: str, owner: str) -> int:
    total = 0
    for balance in balances or []:
        if isinstance(balance, dict) and balance.get("mint") == mint and _owned_by(balance, keys, mint, owner):
            try:
                total += int(balance["uiTokenAmount"]["amount"])
            except (KeyError, TypeError, ValueError):
                continue
    return total
