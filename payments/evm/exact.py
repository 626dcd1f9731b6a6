"""`v2-eip155-exact`: EIP-3009 `transferWithAuthorization` payments, verified and settled.

Checks run in the x402 reference implementation's order: scheme and network, EIP-712 domain,
recipient, exact amount, time window with a 6 s buffer, signature (EOA by ecrecover, else EIP-1271
on the chain), asset has code, then an `eth_call` simulation whose revert is diagnosed into the
reference's reason codes. `inspect` is the part that needs no chain, so the gate can run it, and
claim the payment key, before any RPC round trip.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode

from ..codec import PaymentPayload, PaymentRequirements, SupportedKind
from ..errors import Reason, Refusal
from ..networks import evm_chain_id
from ..outcomes import Inspection, OnBroadcast, Settlement, Verification
from .codes import CodeCache
from .eip712 import (
    domain_separator,
    keccak256,
    recover_address,
    split_signature,
    transfer_authorization_digest,
)
from .relayer import Relayer
from .rpc import EvmRpc, RpcError, RpcUnavailable, revert_reason

SCHEME = "exact"
SCHEME_ID = "v2-eip155-exact"
VALID_BEFORE_BUFFER_S = 6
SIGNATURE_BYTES_MAX = 2048  # EIP-1271 wallets may sign with more than 65 bytes; nothing needs kilobytes
RECEIPT_TIMEOUT_S_DEFAULT = 30.0
ERC1271_MAGIC = bytes.fromhex("1626ba7e")
ERC6492_SUFFIX = bytes.fromhex("6492" * 16)
TRANSFER_TOPIC = "0x" + keccak256(b"Transfer(address,address,uint256)").hex()


def _selector(signature: str) -> bytes:
    return keccak256(signature.encode())[:4]


TRANSFER_VRS = _selector(
    "transferWithAuthorization(address,address,uint256,uint256,uint256,bytes32,uint8,bytes32,bytes32)"
)
TRANSFER_BYTES = _selector("transferWithAuthorization(address,address,uint256,uint256,uint256,bytes32,bytes)")
IS_VALID_SIGNATURE = _selector("isValidSignature(bytes32,bytes)")
BALANCE_OF = _selector("balanceOf(address)")
AUTHORIZATION_STATE = _selector("authorizationState(address,bytes32)")
NAME = _selector("name()")
VERSION = _selector("version()")

_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
_BYTES32 = re.compile(r"^0x[0-9a-fA-F]{64}$")
_HEX = re.compile(r"^0x(?:[0-9a-fA-F]{2})+$")
_UINT = re.compile(r"^[0-9]{1,78}$")
_UINT256_MAX = 2**256 - 1


@dataclass(frozen=True, slots=True)
class Authorization:
    """An EIP-3009 authorization as the payer signed it; addresses lowercase 0x hex."""

    from_address: str
    to_address: str
    value: int
    valid_after: int
    valid_before: int
    nonce: bytes
    signature: bytes

    def signed_fields(self) -> tuple[str, str, int, int, int, bytes]:
        """(from, to, value, validAfter, validBefore, nonce): the struct the signature covers, in order."""
        return (self.from_address, self.to_address, self.value, self.valid_after, self.valid_before, self.nonce)


def _uint(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and _UINT.match(value):
        number = int(value)
    else:
        return None
    return number if 0 <= number <= _UINT256_MAX else None


def parse_authorization(payload: dict[str, Any]) -> Authorization | Refusal:
    """The scheme payload `{signature, authorization: {from, to, value, validAfter, validBefore, nonce}}`."""
    authorization = payload.get("authorization")
    signature = payload.get("signature")
    if not isinstance(authorization, dict) or not isinstance(signature, str):
        return Refusal(Reason.INVALID_PAYLOAD, "exact EVM payload needs `signature` and `authorization`")
    sender, receiver, nonce = authorization.get("from"), authorization.get("to"), authorization.get("nonce")
    if not (
        isinstance(sender, str) and _ADDRESS.match(sender) and isinstance(receiver, str) and _ADDRESS.match(receiver)
    ):
        return Refusal(Reason.INVALID_PAYLOAD, "authorization `from` and `to` must be 0x addresses")
    if not (isinstance(nonce, str) and _BYTES32.match(nonce)):
        return Refusal(Reason.INVALID_PAYLOAD, "authorization `nonce` must be 32 bytes of 0x hex")
    value = _uint(authorization.get("value"))
    valid_after = _uint(authorization.get("validAfter"))
    valid_before = _uint(authorization.get("validBefore"))
    if value is None or valid_after is None or valid_before is None:
        return Refusal(
            Reason.INVALID_PAYLOAD,
            "authorization value/validAfter/validBefore must be uint256 decimal strings",
        )
    if not _HEX.match(signature) or len(signature) > 2 + 2 * SIGNATURE_BYTES_MAX:
        return Refusal(Reason.INVALID_PAYLOAD, f"signature must be 0x hex of at most {SIGNATURE_BYTES_MAX} bytes")
    return Authorization(
        from_address=sender.lower(),
        to_address=receiver.lower(),
        value=value,
        valid_after=valid_after,
        valid_before=valid_before,
        nonce=bytes.fromhex(nonce[2:]),
        signature=bytes.fromhex(signature[2:]),
    )


@dataclass(frozen=True, slots=True)
class _Checked:
    inspection: Inspection
    authorization: Authorization
    digest: bytes
    eip712_name: str
    eip712_version: str


def _check(payload: PaymentPayload, requirements: PaymentRequirements, now_unix_s: int) -> _Checked | Refusal:
    if payload.accepted.scheme != SCHEME or requirements.scheme != SCHEME:
        return Refusal(Reason.UNSUPPORTED_SCHEME, f"scheme {payload.accepted.scheme!r} is not {SCHEME!r}")
    if payload.accepted.network != requirements.network:
        return Refusal(
            Reason.NETWORK_MISMATCH, f"payment is for {payload.accepted.network}, not {requirements.network}"
        )
    chain_id = evm_chain_id(requirements.network)
    if chain_id is None:
        return Refusal(Reason.INVALID_NETWORK, f"{requirements.network} is not an eip155 network")
    name, version = requirements.extra.get("name"), requirements.extra.get("version")
    if not isinstance(name, str) or not isinstance(version, str):
        return Refusal(Reason.MISSING_EIP712_DOMAIN, "the offer lacks extra.name / extra.version")
    authorization = parse_authorization(payload.payload)
    if isinstance(authorization, Refusal):
        return authorization
    if authorization.to_address != requirements.pay_to.lower():
        return Refusal(Reason.EVM_RECIPIENT_MISMATCH, "authorization `to` is not the offer's payTo")
    if authorization.value != int(requirements.amount):
        return Refusal(
            Reason.EVM_VALUE_MISMATCH,
            f"authorization value {authorization.value} is not the price {requirements.amount}",
        )
    if authorization.valid_before < now_unix_s + VALID_BEFORE_BUFFER_S:
        return Refusal(Reason.EVM_VALID_BEFORE, "authorization expires too soon (validBefore)")
    if authorization.valid_after > now_unix_s:
        return Refusal(Reason.EVM_VALID_AFTER, "authorization is not valid yet (validAfter)")
    if authorization.signature.endswith(ERC6492_SUFFIX):
        return Refusal(
            Reason.EVM_UNDEPLOYED_SMART_WALLET, "ERC-6492 (counterfactual wallet) signatures are not accepted"
        )
    asset = requirements.asset.lower()
    digest = transfer_authorization_digest(
        domain_separator(name, version, chain_id, asset), *authorization.signed_fields()
    )
    inspection = Inspection(
        scheme_id=SCHEME_ID,
        network=requirements.network,
        asset=asset,
        payer=authorization.from_address,
        pay_to=authorization.to_address,
        amount_atomic=authorization.value,
        valid_before_unix_s=authorization.valid_before,
        payment_key=f"{requirements.network}:{asset}:{authorization.from_address}:0x{authorization.nonce.hex()}",
        signer_verified=recover_address(digest, authorization.signature) == authorization.from_address,
    )
    return _Checked(inspection, authorization, digest, name, version)


def inspect(payload: PaymentPayload, requirements: PaymentRequirements, now_unix_s: int) -> Inspection | Refusal:
    """Every check that needs no chain. An EOA signature that does not recover to `from` is not refused
    here, since `from` may be an EIP-1271 wallet; `signer_verified` says which case this is."""
    checked = _check(payload, requirements, now_unix_s)
    return checked if isinstance(checked, Refusal) else checked.inspection


def transfer_calldata(authorization: Authorization) -> bytes:
    """Calldata of transferWithAuthorization: the (v, r, s) overload for 65-byte signatures, else (bytes)."""
    head_types = ["address", "address", "uint256", "uint256", "uint256", "bytes32"]
    head = list(authorization.signed_fields())
    parts = split_signature(authorization.signature)
    if parts is not None:
        v, r, s = parts
        return TRANSFER_VRS + abi_encode([*head_types, "uint8", "bytes32", "bytes32"], [*head, v, r, s])
    return TRANSFER_BYTES + abi_encode([*head_types, "bytes"], [*head, authorization.signature])


class ExactEvmScheme:
    """Verifier and settler of `exact` payments on one EVM network."""

    scheme = SCHEME

    def __init__(
        self,
        network: str,
        rpc: EvmRpc,
        relayer: Relayer | None,
        *,
        receipt_timeout_s: float = RECEIPT_TIMEOUT_S_DEFAULT,
        clock: Callable[[], float] = time.time,
        codes: CodeCache | None = None,
    ) -> None:
        self.network = network
        self._rpc = rpc
        self._relayer = relayer
        self._receipt_timeout_s = receipt_timeout_s
        self._clock = clock
        self._assets_with_code: set[str] = set()
        self._codes = CodeCache(rpc) if codes is None else codes  # which payers are contracts: see `authenticate`

    def supported_kind(self) -> SupportedKind:
        return SupportedKind(x402_version=2, scheme=SCHEME, network=self.network)

    @property
    def signer(self) -> str | None:
        return self._relayer.address if self._relayer else None

    @property
    def rpc(self) -> EvmRpc:
        """The node this scheme settles through: what the chain says of its settlements is read there too."""
        return self._rpc

    # ---- authenticate ----

    async def authenticate(
        self, payload: PaymentPayload, requirements: PaymentRequirements, inspection: Inspection
    ) -> Refusal | None:
        """Whether the signature speaks for `from`: run after `inspect`, before anything is recorded for the payer.

        None with no I/O if `inspection.signer_verified` (ECDSA recovered to `from`). Else one `eth_getCode(from)`,
        remembered per address (`CodeCache`): no code is a forgery; code is an EIP-1271 wallet, whose simulated
        `isValidSignature` must answer the magic value. Refusals are `Reason.EVM_SIGNATURE`. A node that cannot
        answer raises PaymentError (as `verify` does): nothing is known, nothing is charged.
        """
        if inspection.signer_verified:
            return None
        checked = _check(payload, requirements, int(self._clock()))
        return checked if isinstance(checked, Refusal) else await self._signature_refusal(checked)

    # ---- verify ----

    async def verify(self, payload: PaymentPayload, requirements: PaymentRequirements) -> Verification:
        checked = _check(payload, requirements, int(self._clock()))
        if isinstance(checked, Refusal):
            return Verification(False, reason=checked.reason, message=checked.message)
        payer = checked.inspection.payer
        refused = await self._signature_refusal(checked)
        if refused is not None:
            return Verification(False, payer, refused.reason, refused.message)
        if not await self._has_code(checked.inspection.asset):
            return Verification(False, payer, Reason.ASSET_NOT_DEPLOYED, "the asset has no contract code")
        try:
            await self._rpc.call(
                checked.inspection.asset,
                transfer_calldata(checked.authorization),
                sender=self._relayer.address if self._relayer else None,
            )
        except RpcError as exc:
            reason, message = await self._diagnose(checked, exc)
            return Verification(False, payer, reason, message)
        return Verification(True, payer)

    async def _signature_refusal(self, checked: _Checked) -> Refusal | None:
        if checked.inspection.signer_verified:
            return None
        payer = checked.inspection.payer
        if not await self._codes.has_code(payer):
            return Refusal(Reason.EVM_SIGNATURE, "the signature is not by `from`, which has no contract code")
        call = IS_VALID_SIGNATURE + abi_encode(["bytes32", "bytes"], [checked.digest, checked.authorization.signature])
        try:
            answer = await self._rpc.call(payer, call)
        except RpcError:  # a revert is a refusal; an unreachable node (RpcUnavailable) raises
            answer = b""
        if answer[:4] != ERC1271_MAGIC:
            return Refusal(Reason.EVM_SIGNATURE, "the contract wallet at `from` refuses the signature (EIP-1271)")
        return None

    async def _has_code(self, asset: str) -> bool:
        if asset in self._assets_with_code:
            return True
        if await self._rpc.get_code(asset):
            self._assets_with_code.add(asset)  # code, once deployed, stays: cache only the positive answer
            return True
        return False

    async def _diagnose(self, checked: _Checked, failure: RpcError) -> tuple[str, str]:
        """Map a failed simulation to the reference's reason codes by reading the token's state."""
        auth, asset = checked.authorization, checked.inspection.asset

        async def read(data: bytes) -> bytes | None:
            try:
                return await self._rpc.call(asset, data)
            except (RpcError, RpcUnavailable):
                return None

        used, balance, name, version = await asyncio.gather(
            read(AUTHORIZATION_STATE + abi_encode(["address", "bytes32"], [auth.from_address, auth.nonce])),
            read(BALANCE_OF + abi_encode(["address"], [auth.from_address])),
            read(NAME),
            read(VERSION),
        )
        revert = revert_reason(failure) or failure.rpc_message
        if used is None:
            return Reason.EVM_EIP3009_NOT_SUPPORTED, "the asset has no authorizationState (not EIP-3009)"
        if int.from_bytes(used[:32], "big"):
            return (
                Reason.EVM_NONCE_ALREADY_USED,
                "this authorization nonce is already used or canceled on chain",
            )
        if balance is not None and int.from_bytes(balance[:32], "big") < auth.value:
            return Reason.EVM_INSUFFICIENT_BALANCE, "the payer's balance is below the price"
        if name is not None and _abi_string(name) != checked.eip712_name:
            return (
                Reason.EVM_TOKEN_NAME_MISMATCH,
                "the token's name differs from the offer's EIP-712 domain name",
            )
        if version is not None and _abi_string(version) != checked.eip712_version:
            return (
                Reason.EVM_TOKEN_VERSION_MISMATCH,
                "the token's version differs from the offer's EIP-712 version",
            )
        if "invalid signature" in revert:
            return Reason.EVM_SIGNATURE, "the token refused the signature"
        return Reason.EVM_SIMULATION_FAILED, f"simulation reverted: {revert[:200]}"

    # ---- settle ----

    async def settle(
        self,
        payload: PaymentPayload,
        requirements: PaymentRequirements,
        on_broadcast: OnBroadcast | None = None,
    ) -> Settlement:
        checked = _check(payload, requirements, int(self._clock()))
        if isinstance(checked, Refusal):
            return Settlement(False, self.network, reason=checked.reason, message=checked.message)
        if self._relayer is None:
            return Settlement(False, self.network, reason=Reason.UNEXPECTED_SETTLE_ERROR, message="no relayer key")
        auth = checked.authorization
        broadcast: list[str] = []

        async def remember(tx_hash: str) -> None:
            if on_broadcast is not None:
                await on_broadcast(tx_hash)
            broadcast.append(tx_hash)

        try:
            tx_hash = await self._relayer.submit(checked.inspection.asset, transfer_calldata(auth), remember)
        except RpcError as exc:
            return Settlement(
                False,
                self.network,
                transaction="",
                payer=auth.from_address,
                reason=Reason.TRANSACTION_FAILED,
                message=f"the node refused the settlement: {(revert_reason(exc) or exc.rpc_message)[:200]}",
            )
        except RpcUnavailable as exc:
            if not broadcast:
                return Settlement(
                    False, self.network, "", auth.from_address, Reason.UNEXPECTED_SETTLE_ERROR, exc.message
                )
            # Signed and maybe sent: the answer was lost, not necessarily the transaction. Ask the chain
            # for its receipt as after any send, so a landed payment is still delivered.
            tx_hash, lost = broadcast[-1], f"{exc.message}; "
        else:
            lost = ""
        receipt = await self._rpc.await_receipt(tx_hash, self._receipt_timeout_s)
        if receipt is None:
            return Settlement(
                False,
                self.network,
                tx_hash,
                auth.from_address,
                Reason.SETTLEMENT_PENDING,
                f"{lost}no receipt within {self._receipt_timeout_s:.0f} s",
            )
        reading = read_receipt(receipt, checked.inspection.asset)
        gas_cost = reading.gas_cost_atomic
        relayer = self._relayer.address
        if not reading.succeeded:
            return Settlement(
                False,
                self.network,
                tx_hash,
                auth.from_address,
                Reason.TRANSACTION_FAILED,
                "settlement reverted",
                gas_cost,
                relayer,
            )
        if reading.moved(auth.from_address, auth.to_address) != auth.value:
            return Settlement(
                False,
                self.network,
                tx_hash,
                auth.from_address,
                Reason.EVM_TRANSFER_EVENT_MISMATCH,
                "the receipt has no matching Transfer log",
                gas_cost,
                relayer,
            )
        return Settlement(True, self.network, tx_hash, auth.from_address, gas_cost_atomic=gas_cost, gas_payer=relayer)


def _quantity(value: Any) -> int:
    try:
        return int(value, 16) if isinstance(value, str) else 0
    except ValueError:
        return 0


def _abi_string(raw: bytes) -> str | None:
    try:
        return str(abi_decode(["string"], raw)[0])
    except Exception:  # eth_abi raises several unrelated types for bad input
        return None


@dataclass(frozen=True, slots=True)
class TokenTransfer:
    """One `Transfer(address,address,uint256)` log; addresses lowercase 0x hex."""

    sender: str
    recipient: str
    value: int


@dataclass(frozen=True, slots=True)
class ReceiptReading:
    """What a mined receipt shows about one token: success, the gas and who paid it, the token's Transfer logs."""

    succeeded: bool
    gas_cost_atomic: int  # wei: gasUsed * effectiveGasPrice
    gas_payer: str  # the receipt's `from`, lowercase
    block_number: int
    transfers: tuple[TokenTransfer, ...]  # emitted by the asset itself: another contract's log proves nothing

    def moved(self, sender: str, recipient: str) -> int:
        """The total the asset's logs moved from `sender` to `recipient`."""
        sender, recipient = sender.lower(), recipient.lower()
        return sum(t.value for t in self.transfers if t.sender == sender and t.recipient == recipient)


def _topic_address(topic: Any) -> str:
    return "0x" + str(topic).lower()[-40:]


def read_receipt(receipt: dict[str, Any], asset: str) -> ReceiptReading:
    """Read a receipt as settlement and the auditor both judge it (one reading, so they cannot disagree)."""
    asset = asset.lower()
    transfers = []
    for log in receipt.get("logs") or []:
        topics = log.get("topics") or []
        if (
            str(log.get("address", "")).lower() == asset
            and len(topics) == 3
            and str(topics[0]).lower() == TRANSFER_TOPIC
        ):
            transfers.append(
                TokenTransfer(_topic_address(topics[1]), _topic_address(topics[2]), _quantity(log.get("data")))
            )
    return ReceiptReading(
        succeeded=_quantity(receipt.get("status")) == 1,
        gas_cost_atomic=_quantity(receipt.get("gasUsed")) * _quantity(receipt.get("effectiveGasPrice")),
        gas_payer=str(receipt.get("from", "")).lower(),
        block_number=_quantity(receipt.get("blockNumber")),
        transfers=tuple(transfers),
    )
