"""The paying side of `exact` on EVM: sign an EIP-3009 authorization for an offer, as x402 clients do.

Signs through eth_account's typed-data encoder, not this package's own EIP-712 code, so whatever pays
with it (the bench, the tests, a CLI) also cross-checks the verifier's hashing.
"""

from __future__ import annotations

import os
import time
from typing import Any

from eth_account import Account

from ..codec import PaymentPayload, PaymentRequirements, encode_header
from ..networks import evm_chain_id

EIP712_TYPES = {
    "EIP712Domain": [
        {"name": "name", "type": "string"},
        {"name": "version", "type": "string"},
        {"name": "chainId", "type": "uint256"},
        {"name": "verifyingContract", "type": "address"},
    ],
    "TransferWithAuthorization": [
        {"name": "from", "type": "address"},
        {"name": "to", "type": "address"},
        {"name": "value", "type": "uint256"},
        {"name": "validAfter", "type": "uint256"},
        {"name": "validBefore", "type": "uint256"},
        {"name": "nonce", "type": "bytes32"},
    ],
}


def sign_transfer_authorization(
    key: str,
    *,
    chain_id: int,
    asset: str,
    name: str,
    version: str,
    to: str,
    value: int,
    valid_after: int = 0,
    valid_before: int | None = None,
    nonce: str | None = None,
    from_address: str | None = None,
) -> dict[str, Any]:
    """The scheme payload `{signature, authorization}`; `from_address` lets a wallet owner sign for an
    EIP-1271 contract wallet. Defaults as the reference client: validAfter 0, a random nonce."""
    message = {
        "from": from_address or Account.from_key(key).address,
        "to": to,
        "value": value,
        "validAfter": valid_after,
        "validBefore": valid_before if valid_before is not None else int(time.time()) + 300,
        "nonce": nonce or "0x" + os.urandom(32).hex(),
    }
    typed = {
        "types": EIP712_TYPES,
        "primaryType": "TransferWithAuthorization",
        "domain": {"name": name, "version": version, "chainId": chain_id, "verifyingContract": asset},
        "message": message,
    }
    signed = Account.sign_typed_data(key, full_message=typed)
    authorization = {k: str(v) if isinstance(v, int) else v for k, v in message.items()}
    return {"signature": "0x" + bytes(signed.signature).hex(), "authorization": authorization}


def pay(key: str, offer: PaymentRequirements, *, valid_for_s: int | None = None) -> str:
    """A PAYMENT-SIGNATURE header value that pays `offer` exactly (the reference client's choices)."""
    chain_id = evm_chain_id(offer.network)
    if chain_id is None:
        raise ValueError(f"{offer.network} is not an EVM network")
    payload = sign_transfer_authorization(
        key,
        chain_id=chain_id,
        asset=offer.asset,
        name=str(offer.extra["name"]),
        version=str(offer.extra["version"]),
        to=offer.pay_to,
        value=int(offer.amount),
        valid_before=int(time.time()) + (valid_for_s or offer.max_timeout_seconds),
    )
    return encode_header(PaymentPayload(x402_version=2, accepted=offer, payload=payload))
