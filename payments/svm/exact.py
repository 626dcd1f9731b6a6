"""`v2-solana-exact`: SPL TransferChecked payments in a partially signed v0 transaction, verified,
co-signed by our fee payer, sent and confirmed.

The fee payer's own SOL pays for every transaction it co-signs, so the layout is checked strictly,
following the x402 exact-SVM spec and its stricter TypeScript reference: the fee payer is
`extra.feePayer` at account index 0 and in no instruction's accounts; instructions are compute-unit
limit, compute-unit price, TransferChecked (Token or Token-2022), then only Memo or Lighthouse;
mint, destination ATA and the exact amount match the offer; every client signature is valid. On
top of the spec's 5 lamports/CU price cap, the compute-unit limit, the number of signers and the
total priority fee are capped, so a payment cannot make the fee payer spend more than a bounded
amount. A memo is required (it makes identical payments distinct) and must equal `extra.memo`
when the offer sets one. Address lookup tables are refused: the fee payer could hide in one.
Each rule is a validator in `validators`; `_check` runs them in order.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
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
from . import programs, validators
from .rpc import RpcError, RpcUnavailable, SvmRpc
from .validators import Transfer

SCHEME = validators.SCHEME
SCHEME_ID = "v2-solana-exact"
TRANSACTION_BYTES_MAX = 1232  # Solana's packet limit
COMPUTE_UNITS_MAX_DEFAULT = validators.COMPUTE_UNITS_MAX_DEFAULT
PRIORITY_FEE_LAMPORTS_MAX_DEFAULT = validators.PRIORITY_FEE_LAMPORTS_MAX_DEFAULT
CONFIRM_TIMEOUT_S_DEFAULT = 60.0  # about a blockhash's lifetime (150 blocks of 400-600 ms)
CONFIRM_POLL_S_MAX = 0.5


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


def _check(
    payload: PaymentPayload,
    requirements: PaymentRequirements,
    *,
    compute_units_max: int = COMPUTE_UNITS_MAX_DEFAULT,
    priority_fee_lamports_max: int = PRIORITY_FEE_LAMPORTS_MAX_DEFAULT,
) -> _Checked | Refusal:
    """The validators in the reference order: offer, decoding, layout, instructions, then signatures."""
    fee_payer = validators.offer_fee_payer(payload, requirements)
    if isinstance(fee_payer, Refusal):
        return fee_payer
    transaction = decode_transaction(payload.payload)
    if isinstance(transaction, Refusal):
        return transaction
    message = validators.check_layout(transaction, fee_payer)
    if isinstance(message, Refusal):
        return message
    transfer = validators.check_instructions(
        message,
        fee_payer,
        requirements,
        compute_units_max=compute_units_max,
        priority_fee_lamports_max=priority_fee_lamports_max,
    )
    if isinstance(transfer, Refusal):
        return transfer
    refusal = validators.check_signatures(transaction, message)
    if refusal is not None:
        return refusal
    network = requirements.network
    inspection = Inspection(
        scheme_id=SCHEME_ID,
        network=network,
        asset=requirements.asset,
        payer=str(transfer.authority),
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

    @property
    def rpc(self) -> SvmRpc:
        """The cluster this scheme settles through: what the chain says of its settlements is read there too."""
        return self._rpc

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

    async def authenticate(
        self, payload: PaymentPayload, requirements: PaymentRequirements, inspection: Inspection
    ) -> Refusal | None:
        """No I/O: `inspect` already verified every client signature, so `signer_verified` is always set."""
        if inspection.signer_verified:
            return None
        return _refuse(Reason.SVM_SIGNATURE_INVALID, "a client signature does not verify")

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
