"""x402 `batch-settlement` on the devnet: our own escrow contracts at the addresses the official SDKs use.

`install_batch_settlement` places x402BatchSettlement and ERC3009DepositCollector (worldgate's own
Solidity, in contracts/) with anvil_setCode at their CREATE2 addresses, as provision() does for
TestUSDC. The constructor never runs under setCode; the contracts need none (their EIP-712 domain is
computed per call). The rest is off-chain encoding (the EIP-712 digests of the scheme, hashed by hand
from the type strings) and small readers of the contract's public getters.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_account import Account

from ..evm.eip712 import keccak256
from .evm import Rpc, artifact

BATCH_SETTLEMENT_ADDRESS = "0x4020074e9dF2ce1deE5A9C1b5c3f541D02a10003"
ERC3009_DEPOSIT_COLLECTOR_ADDRESS = "0x4020806089470a89826cB9fB1f4059150b550004"
CONTRACTS = {
    BATCH_SETTLEMENT_ADDRESS: "x402BatchSettlement",
    ERC3009_DEPOSIT_COLLECTOR_ADDRESS: "ERC3009DepositCollector",
}

DOMAIN_NAME = "x402 Batch Settlement"
DOMAIN_VERSION = "1"
MIN_WITHDRAW_DELAY = 15 * 60
MAX_WITHDRAW_DELAY = 30 * 24 * 3600

DOMAIN_TYPE = "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
CHANNEL_CONFIG_TYPE = (
    "ChannelConfig(address payer,address payerAuthorizer,address receiver,address receiverAuthorizer,"
    "address token,uint40 withdrawDelay,bytes32 salt)"
)
VOUCHER_TYPE = "Voucher(bytes32 channelId,uint128 maxClaimableAmount)"
REFUND_TYPE = "Refund(bytes32 channelId,uint256 nonce,uint128 amount)"
CLAIM_ENTRY_TYPE = "ClaimEntry(bytes32 channelId,uint128 maxClaimableAmount,uint128 totalClaimed)"
CLAIM_BATCH_TYPE = "ClaimBatch(ClaimEntry[] claims)" + CLAIM_ENTRY_TYPE

# ABI tuple types of the contract's structs.
CONFIG_ABI = "(address,address,address,address,address,uint40,bytes32)"
VOUCHER_CLAIM_ABI = f"(({CONFIG_ABI},uint128),bytes,uint128)"


def _typehash(type_string: str) -> bytes:
    return keccak256(type_string.encode())


def _bytes32(value: bytes | str) -> bytes:
    raw = bytes.fromhex(value.removeprefix("0x")) if isinstance(value, str) else value
    if len(raw) != 32:
        raise ValueError(f"expected 32 bytes, got {len(raw)}")
    return raw


@dataclass(frozen=True)
class ChannelConfig:
    """The immutable terms of a channel; its id is the EIP-712 hash of these fields on one chain."""

    payer: str
    payer_authorizer: str
    receiver: str
    receiver_authorizer: str
    token: str
    withdraw_delay: int
    salt: bytes = bytes(32)

    def as_tuple(self) -> tuple[Any, ...]:
        return (
            self.payer,
            self.payer_authorizer,
            self.receiver,
            self.receiver_authorizer,
            self.token,
            self.withdraw_delay,
            _bytes32(self.salt),
        )


@dataclass(frozen=True)
class VoucherClaim:
    """One row of claim/claimWithSignature: a payer-signed voucher and the cumulative total to claim."""

    config: ChannelConfig
    max_claimable: int
    signature: bytes
    total_claimed: int

    def as_tuple(self) -> tuple[Any, ...]:
        return ((self.config.as_tuple(), self.max_claimable), self.signature, self.total_claimed)


@dataclass(frozen=True)
class ChannelState:
    balance: int
    total_claimed: int


@dataclass(frozen=True)
class WithdrawalState:
    amount: int
    initiated_at: int


@dataclass(frozen=True)
class ReceiverState:
    total_claimed: int
    total_settled: int


# ---- EIP-712, computed off chain ----


def domain_separator(chain_id: int, verifying_contract: str = BATCH_SETTLEMENT_ADDRESS) -> bytes:
    return keccak256(
        abi_encode(
            ["bytes32", "bytes32", "bytes32", "uint256", "address"],
            [
                _typehash(DOMAIN_TYPE),
                keccak256(DOMAIN_NAME.encode()),
                keccak256(DOMAIN_VERSION.encode()),
                chain_id,
                verifying_contract,
            ],
        )
    )


def _typed_digest(chain_id: int, struct_hash: bytes) -> bytes:
    return keccak256(b"\x19\x01" + domain_separator(chain_id) + struct_hash)


def channel_id(config: ChannelConfig, chain_id: int) -> bytes:
    """getChannelId: the EIP-712 digest of the ChannelConfig struct under the scheme's domain."""
    struct_hash = keccak256(
        abi_encode(
            ["bytes32", "address", "address", "address", "address", "address", "uint40", "bytes32"],
            [_typehash(CHANNEL_CONFIG_TYPE), *config.as_tuple()],
        )
    )
    return _typed_digest(chain_id, struct_hash)


def voucher_digest(chain_id: int, channel: bytes, max_claimable: int) -> bytes:
    struct_hash = keccak256(
        abi_encode(["bytes32", "bytes32", "uint128"], [_typehash(VOUCHER_TYPE), channel, max_claimable])
    )
    return _typed_digest(chain_id, struct_hash)


def refund_digest(chain_id: int, channel: bytes, nonce: int, amount: int) -> bytes:
    struct_hash = keccak256(
        abi_encode(["bytes32", "bytes32", "uint256", "uint128"], [_typehash(REFUND_TYPE), channel, nonce, amount])
    )
    return _typed_digest(chain_id, struct_hash)


def claim_batch_digest(chain_id: int, rows: Sequence[tuple[ChannelConfig, int, int]]) -> bytes:
    """ClaimBatch over (config, maxClaimableAmount, totalClaimed) rows, as getClaimBatchDigest hashes them."""
    entries = b"".join(
        keccak256(
            abi_encode(
                ["bytes32", "bytes32", "uint128", "uint128"],
                [_typehash(CLAIM_ENTRY_TYPE), channel_id(config, chain_id), max_claimable, total],
            )
        )
        for config, max_claimable, total in rows
    )
    struct_hash = keccak256(abi_encode(["bytes32", "bytes32"], [_typehash(CLAIM_BATCH_TYPE), keccak256(entries)]))
    return _typed_digest(chain_id, struct_hash)


def erc3009_deposit_nonce(channel: bytes, salt: int) -> bytes:
    """The ReceiveWithAuthorization nonce the collector rebuilds: keccak256(abi.encode(channelId, salt))."""
    return keccak256(abi_encode(["bytes32", "uint256"], [channel, salt]))


def sign_digest(private_key: str, digest: bytes) -> bytes:
    """A 65-byte (r, s, v) signature of an EIP-712 digest (v = 27/28, low s)."""
    return bytes(Account.unsafe_sign_hash(digest, private_key).signature)


# ---- calldata ----


def encode_call(signature: str, types: Sequence[str], args: Sequence[Any]) -> str:
    """Calldata for a function whose ABI types may contain tuples (evm.calldata splits on commas)."""
    return "0x" + (keccak256(signature.encode())[:4] + abi_encode(list(types), list(args))).hex()


def erc3009_collector_data(valid_after: int, valid_before: int, salt: int, signature: bytes) -> bytes:
    return abi_encode(["uint256", "uint256", "uint256", "bytes"], [valid_after, valid_before, salt, signature])


def deposit_calldata(
    config: ChannelConfig, amount: int, collector_data: bytes, collector: str = ERC3009_DEPOSIT_COLLECTOR_ADDRESS
) -> str:
    types = [CONFIG_ABI, "uint128", "address", "bytes"]
    return encode_call(f"deposit({','.join(types)})", types, [config.as_tuple(), amount, collector, collector_data])


def claim_calldata(rows: Sequence[VoucherClaim]) -> str:
    types = [f"{VOUCHER_CLAIM_ABI}[]"]
    return encode_call(f"claim({types[0]})", types, [[row.as_tuple() for row in rows]])


def claim_with_signature_calldata(rows: Sequence[VoucherClaim], authorizer_signature: bytes) -> str:
    types = [f"{VOUCHER_CLAIM_ABI}[]", "bytes"]
    args = [[row.as_tuple() for row in rows], authorizer_signature]
    return encode_call(f"claimWithSignature({','.join(types)})", types, args)


def settle_calldata(receiver: str, token: str) -> str:
    return encode_call("settle(address,address)", ["address", "address"], [receiver, token])


def refund_calldata(config: ChannelConfig, amount: int) -> str:
    types = [CONFIG_ABI, "uint128"]
    return encode_call(f"refund({','.join(types)})", types, [config.as_tuple(), amount])


def refund_with_signature_calldata(config: ChannelConfig, amount: int, nonce: int, signature: bytes) -> str:
    types = [CONFIG_ABI, "uint128", "uint256", "bytes"]
    args = [config.as_tuple(), amount, nonce, signature]
    return encode_call(f"refundWithSignature({','.join(types)})", types, args)


def initiate_withdraw_calldata(config: ChannelConfig, amount: int) -> str:
    types = [CONFIG_ABI, "uint128"]
    return encode_call(f"initiateWithdraw({','.join(types)})", types, [config.as_tuple(), amount])


def finalize_withdraw_calldata(config: ChannelConfig) -> str:
    return encode_call(f"finalizeWithdraw({CONFIG_ABI})", [CONFIG_ABI], [config.as_tuple()])


def multicall_calldata(calls: Sequence[str]) -> str:
    return encode_call("multicall(bytes[])", ["bytes[]"], [[bytes.fromhex(c.removeprefix("0x")) for c in calls]])


# ---- on the devnet ----


def install_batch_settlement(rpc_url: str) -> None:
    """Place both contracts at their CREATE2 addresses; idempotent (state is kept, code set only if it differs)."""
    rpc = Rpc(rpc_url)
    try:
        for address, name in CONTRACTS.items():
            code = artifact(name)["deployedBytecode"]
            if str(rpc("eth_getCode", address, "latest")).lower() != code.lower():
                rpc("anvil_setCode", address, code)
    finally:
        rpc.close()


def _view(rpc_url: str, data: str, types: Sequence[str]) -> tuple[Any, ...]:
    rpc = Rpc(rpc_url)
    try:
        return tuple(abi_decode(list(types), rpc.call(BATCH_SETTLEMENT_ADDRESS, data)))
    finally:
        rpc.close()


def onchain_channel_id(rpc_url: str, config: ChannelConfig) -> bytes:
    """The contract's getChannelId (equal to channel_id(config, chain id) when both are right)."""
    data = encode_call(f"getChannelId({CONFIG_ABI})", [CONFIG_ABI], [config.as_tuple()])
    return bytes(_view(rpc_url, data, ["bytes32"])[0])


def channel_state(rpc_url: str, channel: bytes) -> ChannelState:
    balance, total = _view(rpc_url, encode_call("channels(bytes32)", ["bytes32"], [channel]), ["uint128", "uint128"])
    return ChannelState(balance=balance, total_claimed=total)


def refund_nonce(rpc_url: str, channel: bytes) -> int:
    return int(_view(rpc_url, encode_call("refundNonce(bytes32)", ["bytes32"], [channel]), ["uint256"])[0])


def pending_withdrawal(rpc_url: str, channel: bytes) -> WithdrawalState:
    data = encode_call("pendingWithdrawals(bytes32)", ["bytes32"], [channel])
    amount, initiated_at = _view(rpc_url, data, ["uint128", "uint40"])
    return WithdrawalState(amount=amount, initiated_at=initiated_at)


def receiver_state(rpc_url: str, receiver: str, token: str) -> ReceiverState:
    data = encode_call("receivers(address,address)", ["address", "address"], [receiver, token])
    total_claimed, total_settled = _view(rpc_url, data, ["uint128", "uint128"])
    return ReceiverState(total_claimed=total_claimed, total_settled=total_settled)
