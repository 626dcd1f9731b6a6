"""ABI of the settlement contract: calldata of its calls, its reads, its events and its custom errors.

Addresses go in as lowercase 0x hex (eth_abi refuses a mis-checksummed mixed case). One `multicall`
eth_call of the contract's own view functions reads any number of channels at one block: no
Multicall3 deployment to rely on, and one round trip.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode

from ..eip712 import keccak256
from .wire import ChannelConfig

CONFIG_ABI = "(address,address,address,address,address,uint40,bytes32)"
VOUCHER_CLAIM_ABI = f"(({CONFIG_ABI},uint128),bytes,uint128)"


def _call(signature: str, types: Sequence[str], args: Sequence[Any]) -> bytes:
    return keccak256(signature.encode())[:4] + abi_encode(list(types), list(args))


def config_tuple(config: ChannelConfig) -> tuple[Any, ...]:
    return (
        config.payer.lower(),
        config.payer_authorizer.lower(),
        config.receiver.lower(),
        config.receiver_authorizer.lower(),
        config.token.lower(),
        config.withdraw_delay,
        bytes.fromhex(config.salt[2:]),
    )


@dataclass(frozen=True, slots=True)
class ClaimRow:
    """One VoucherClaim: the payer's voucher (its signed ceiling) and the cumulative total to claim with it."""

    config: ChannelConfig
    max_claimable: int  # the voucher's signed maxClaimableAmount
    signature: bytes  # the payer(-authorizer)'s voucher signature
    total_claimed: int  # what we charged; ≤ max_claimable

    def as_tuple(self) -> tuple[Any, ...]:
        return ((config_tuple(self.config), self.max_claimable), self.signature, self.total_claimed)


# ---- mutating calls ----


def deposit_call(config: ChannelConfig, amount: int, collector: str, collector_data: bytes) -> bytes:
    types = [CONFIG_ABI, "uint128", "address", "bytes"]
    return _call(
        f"deposit({','.join(types)})", types, [config_tuple(config), amount, collector.lower(), collector_data]
    )


def erc3009_collector_data(valid_after: int, valid_before: int, salt: int, signature: bytes) -> bytes:
    return abi_encode(["uint256", "uint256", "uint256", "bytes"], [valid_after, valid_before, salt, signature])


def claim_with_signature_call(rows: Sequence[ClaimRow], authorizer_signature: bytes) -> bytes:
    types = [f"{VOUCHER_CLAIM_ABI}[]", "bytes"]
    args = [[row.as_tuple() for row in rows], authorizer_signature]
    return _call(f"claimWithSignature({','.join(types)})", types, args)


def settle_call(receiver: str, token: str) -> bytes:
    return _call("settle(address,address)", ["address", "address"], [receiver.lower(), token.lower()])


def refund_with_signature_call(config: ChannelConfig, amount: int, nonce: int, signature: bytes) -> bytes:
    types = [CONFIG_ABI, "uint128", "uint256", "bytes"]
    return _call(f"refundWithSignature({','.join(types)})", types, [config_tuple(config), amount, nonce, signature])


def multicall_call(calls: Sequence[bytes]) -> bytes:
    return _call("multicall(bytes[])", ["bytes[]"], [list(calls)])


# ---- reads ----


def channel_reads(channel_id: bytes) -> list[bytes]:
    """channels(id), pendingWithdrawals(id), refundNonce(id): the three getters of one channel's state."""
    return [
        _call(f"{name}(bytes32)", ["bytes32"], [channel_id])
        for name in ("channels", "pendingWithdrawals", "refundNonce")
    ]


def decode_multicall(raw: bytes) -> list[bytes]:
    return [bytes(item) for item in abi_decode(["bytes[]"], raw)[0]]


def decode_channel(results: Sequence[bytes]) -> tuple[int, int, int, int, int]:
    """(balance, totalClaimed, withdrawal amount, withdrawal initiatedAt, refundNonce) from channel_reads' answers."""
    balance, total = abi_decode(["uint128", "uint128"], results[0])
    amount, initiated_at = abi_decode(["uint128", "uint40"], results[1])
    (nonce,) = abi_decode(["uint256"], results[2])
    return int(balance), int(total), int(amount), int(initiated_at), int(nonce)


def receivers_call(receiver: str, token: str) -> bytes:
    return _call("receivers(address,address)", ["address", "address"], [receiver.lower(), token.lower()])


def decode_pair(raw: bytes) -> tuple[int, int]:
    first, second = abi_decode(["uint128", "uint128"], raw)
    return int(first), int(second)


def balance_of_call(owner: str) -> bytes:
    return _call("balanceOf(address)", ["address"], [owner.lower()])


def is_valid_signature_call(digest: bytes, signature: bytes) -> bytes:
    return _call("isValidSignature(bytes32,bytes)", ["bytes32", "bytes"], [digest, signature])


ERC1271_MAGIC = bytes.fromhex("1626ba7e")


# ---- events ----


def _topic(signature: str) -> str:
    return "0x" + keccak256(signature.encode()).hex()


DEPOSITED = _topic("Deposited(bytes32,address,uint128,uint128)")
CLAIMED = _topic("Claimed(bytes32,address,uint128,uint128)")
SETTLED = _topic("Settled(address,address,address,uint128)")
REFUNDED = _topic("Refunded(bytes32,address,uint128)")


@dataclass(frozen=True, slots=True)
class ContractLog:
    event: str  # topic0
    key: str  # topic1: the channel id (or, for Settled, the receiver), lowercase 0x hex
    amount: int  # the first data word: deposited, claimed, settled or refunded


def contract_logs(receipt: dict[str, Any], contract: str) -> list[ContractLog]:
    """The settlement contract's own logs in a receipt (another contract's lookalike log proves nothing)."""
    found = []
    for log in receipt.get("logs") or []:
        topics = log.get("topics") or []
        data = str(log.get("data") or "0x")
        if str(log.get("address", "")).lower() != contract.lower() or len(topics) < 2 or len(data) < 66:
            continue
        found.append(ContractLog(str(topics[0]).lower(), str(topics[1]).lower(), int(data[2:66], 16)))
    return found


# ---- custom errors ----

_ERROR_NAMES = (
    "ClaimExceedsBalance",
    "ClaimExceedsCeiling",
    "DepositCollectionFailed",
    "DepositOverflow",
    "EmptyBatch",
    "InvalidChannel",
    "InvalidCollector",
    "InvalidRefundNonce",
    "InvalidSignature",
    "NotAuthorizedToClaim",
    "NotAuthorizedToFinalizeWithdraw",
    "NotAuthorizedToRefund",
    "NotReceiverAuthorizer",
    "NothingToWithdraw",
    "ReentrancyGuardReentrantCall",
    "WithdrawAmountExceedsAvailable",
    "WithdrawDelayNotElapsed",
    "WithdrawDelayOutOfRange",
    "WithdrawalAlreadyPending",
    "WithdrawalNotPending",
    "ZeroDeposit",
    "ZeroRefund",
    "OnlyX402BatchSettlement",
    "InvalidX402BatchSettlementAddress",
)
CUSTOM_ERRORS = {keccak256(f"{name}()".encode())[:4]: name for name in _ERROR_NAMES}
CUSTOM_ERRORS[keccak256(b"TokenTransferFailed(address)")[:4]] = "TokenTransferFailed"


def custom_error(data: Any) -> str | None:
    """The name of the contract's custom error in revert data, if it is one."""
    if isinstance(data, dict):  # some nodes nest it
        data = data.get("data")
    if not isinstance(data, str) or not data.startswith("0x") or len(data) < 10:
        return None
    try:
        return CUSTOM_ERRORS.get(bytes.fromhex(data[2:10]))
    except ValueError:
        return None
