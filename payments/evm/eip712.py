"""EIP-712 digests of EIP-3009 authorizations, and ECDSA recovery through libsecp256k1 (coincurve).

This is the hot path of every paid request: hashing by hand and recovering with coincurve costs
~0.1 ms, against ~0.4 ms through eth_account's typed-data encoder (measured on this project's machines).
Tests check every function here against eth_account on random inputs.
"""

from __future__ import annotations

from functools import lru_cache

from coincurve import PublicKey
from Crypto.Hash import keccak as _keccak

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
S_MAX = SECP256K1_N // 2  # larger s values are malleable; the token refuses them too


def keccak256(data: bytes) -> bytes:
    return _keccak.new(digest_bits=256, data=data).digest()


DOMAIN_TYPEHASH = keccak256(b"EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)")
TRANSFER_WITH_AUTHORIZATION_TYPEHASH = keccak256(
    b"TransferWithAuthorization(address from,address to,uint256 value,uint256 validAfter,"
    b"uint256 validBefore,bytes32 nonce)"
)
RECEIVE_WITH_AUTHORIZATION_TYPEHASH = keccak256(  # batch-settlement deposits: only `to` may submit it
    b"ReceiveWithAuthorization(address from,address to,uint256 value,uint256 validAfter,"
    b"uint256 validBefore,bytes32 nonce)"
)


def word_address(address: str) -> bytes:
    return bytes(12) + bytes.fromhex(address[2:])


def word_uint(value: int) -> bytes:
    return value.to_bytes(32, "big")


@lru_cache(maxsize=64)
def domain_separator(name: str, version: str, chain_id: int, verifying_contract: str) -> bytes:
    """The token's EIP-712 domain separator; a handful of (network, asset) pairs, so cached."""
    return keccak256(
        DOMAIN_TYPEHASH
        + keccak256(name.encode())
        + keccak256(version.encode())
        + word_uint(chain_id)
        + word_address(verifying_contract)
    )


def typed_digest(domain: bytes, struct_hash: bytes) -> bytes:
    """What an EIP-712 signature signs: the struct's hash under its domain."""
    return keccak256(b"\x19\x01" + domain + struct_hash)


def transfer_authorization_digest(
    domain: bytes,
    from_address: str,
    to_address: str,
    value: int,
    valid_after: int,
    valid_before: int,
    nonce: bytes,
    *,
    typehash: bytes = TRANSFER_WITH_AUTHORIZATION_TYPEHASH,
) -> bytes:
    """The digest an EIP-3009 authorization signature signs (addresses as 0x hex): TransferWithAuthorization,
    or with `typehash` RECEIVE_WITH_AUTHORIZATION_TYPEHASH, whose fields are the same."""
    struct_hash = keccak256(
        typehash
        + word_address(from_address)
        + word_address(to_address)
        + word_uint(value)
        + word_uint(valid_after)
        + word_uint(valid_before)
        + nonce
    )
    return typed_digest(domain, struct_hash)


def split_signature(signature: bytes) -> tuple[int, bytes, bytes] | None:
    """(v, r, s) of a 65-byte r‖s‖v signature with v in {27, 28} (0/1 accepted and shifted), else None."""
    if len(signature) != 65:
        return None
    v = signature[64]
    if v in (0, 1):
        v += 27
    if v not in (27, 28):
        return None
    return v, signature[:32], signature[32:64]


def recover_address(digest: bytes, signature: bytes) -> str | None:
    """The lowercase 0x address that signed `digest`, or None for a malformed or malleable signature."""
    parts = split_signature(signature)
    if parts is None:
        return None
    v, r, s = parts
    s_int = int.from_bytes(s, "big")
    r_int = int.from_bytes(r, "big")
    if not (0 < r_int < SECP256K1_N and 0 < s_int <= S_MAX):
        return None
    try:
        public_key = PublicKey.from_signature_and_message(r + s + bytes([v - 27]), digest, hasher=None)
    except Exception:  # coincurve raises plain Exception for points not on the curve
        return None
    return "0x" + keccak256(public_key.format(compressed=False)[1:])[12:].hex()
