"""The scheme's fixed addresses and EIP-712 digests, hashed by hand (no typed-data encoder on the hot path).

A voucher check is one digest and one coincurve recovery, as for `exact`. The type strings are the
contract's; tests check every digest against the reference vectors and the contract's own views.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache

from ..eip712 import (
    RECEIVE_WITH_AUTHORIZATION_TYPEHASH,
    domain_separator,
    keccak256,
    transfer_authorization_digest,
    typed_digest,
    word_address,
    word_uint,
)

BATCH_SETTLEMENT_ADDRESS = "0x4020074e9dF2ce1deE5A9C1b5c3f541D02a10003"
ERC3009_DEPOSIT_COLLECTOR_ADDRESS = "0x4020806089470a89826cB9fB1f4059150b550004"
PERMIT2_DEPOSIT_COLLECTOR_ADDRESS = "0x4020425FAf3B746C082C2f942b4E5159887B0005"
ZERO_ADDRESS = "0x" + "00" * 20

DOMAIN_NAME = "x402 Batch Settlement"
DOMAIN_VERSION = "1"
MIN_WITHDRAW_DELAY = 15 * 60  # the contract's bounds, both inclusive
MAX_WITHDRAW_DELAY = 30 * 24 * 3600
UINT128_MAX = 2**128 - 1

CHANNEL_CONFIG_TYPEHASH = keccak256(
    b"ChannelConfig(address payer,address payerAuthorizer,address receiver,address receiverAuthorizer,"
    b"address token,uint40 withdrawDelay,bytes32 salt)"
)
VOUCHER_TYPEHASH = keccak256(b"Voucher(bytes32 channelId,uint128 maxClaimableAmount)")
REFUND_TYPEHASH = keccak256(b"Refund(bytes32 channelId,uint256 nonce,uint128 amount)")
_CLAIM_ENTRY_TYPE = b"ClaimEntry(bytes32 channelId,uint128 maxClaimableAmount,uint128 totalClaimed)"
CLAIM_ENTRY_TYPEHASH = keccak256(_CLAIM_ENTRY_TYPE)
CLAIM_BATCH_TYPEHASH = keccak256(b"ClaimBatch(ClaimEntry[] claims)" + _CLAIM_ENTRY_TYPE)


def scheme_domain_separator(chain_id: int) -> bytes:
    """The settlement contract's domain on one chain (its address is the same everywhere)."""
    return domain_separator(DOMAIN_NAME, DOMAIN_VERSION, chain_id, BATCH_SETTLEMENT_ADDRESS)


def _typed(chain_id: int, struct_hash: bytes) -> bytes:
    return typed_digest(scheme_domain_separator(chain_id), struct_hash)


@lru_cache(maxsize=4096)  # a payer's every voucher names the same channel: hash its config once
def channel_id_of(
    chain_id: int,
    payer: str,
    payer_authorizer: str,
    receiver: str,
    receiver_authorizer: str,
    token: str,
    withdraw_delay: int,
    salt: bytes,
) -> bytes:
    """getChannelId: the EIP-712 digest of the ChannelConfig struct (addresses as 0x hex)."""
    struct_hash = keccak256(
        CHANNEL_CONFIG_TYPEHASH
        + word_address(payer)
        + word_address(payer_authorizer)
        + word_address(receiver)
        + word_address(receiver_authorizer)
        + word_address(token)
        + word_uint(withdraw_delay)
        + salt
    )
    return _typed(chain_id, struct_hash)


def voucher_digest(chain_id: int, channel_id: bytes, max_claimable: int) -> bytes:
    return _typed(chain_id, keccak256(VOUCHER_TYPEHASH + channel_id + word_uint(max_claimable)))


def refund_digest(chain_id: int, channel_id: bytes, nonce: int, amount: int) -> bytes:
    return _typed(chain_id, keccak256(REFUND_TYPEHASH + channel_id + word_uint(nonce) + word_uint(amount)))


def claim_batch_digest(chain_id: int, rows: Iterable[tuple[bytes, int, int]]) -> bytes:
    """getClaimBatchDigest over (channelId, maxClaimableAmount, totalClaimed) rows, in order."""
    entries = b"".join(
        keccak256(CLAIM_ENTRY_TYPEHASH + channel + word_uint(max_claimable) + word_uint(total))
        for channel, max_claimable, total in rows
    )
    return _typed(chain_id, keccak256(CLAIM_BATCH_TYPEHASH + keccak256(entries)))


def erc3009_deposit_nonce(channel_id: bytes, salt: int) -> bytes:
    """The ReceiveWithAuthorization nonce the collector rebuilds: keccak256(abi.encode(channelId, salt))."""
    return keccak256(channel_id + word_uint(salt))


def receive_authorization_digest(
    token_domain: bytes,
    from_address: str,
    to_address: str,
    value: int,
    valid_after: int,
    valid_before: int,
    nonce: bytes,
) -> bytes:
    """ERC-3009 ReceiveWithAuthorization under the token's own domain."""
    return transfer_authorization_digest(
        token_domain,
        from_address,
        to_address,
        value,
        valid_after,
        valid_before,
        nonce,
        typehash=RECEIVE_WITH_AUTHORIZATION_TYPEHASH,
    )
