"""Chain-side helpers for tests: sign EIP-3009 authorizations with eth_account, read balances, mint.

Signing goes through payments.evm.client, which uses eth_account's typed-data encoder rather than
worldgate's own EIP-712 code, so every paid test also cross-checks the verifier's hashing.
"""

from __future__ import annotations

import base64
import json
import os
from typing import Any

import httpx
from eth_account import Account

from payments.devnet.evm import EvmDevnet, calldata, mint
from payments.evm.client import sign_transfer_authorization


def devnet_from_state(state: dict[str, Any]) -> EvmDevnet:
    """The devnet a `devnet.json` `evm` section describes (as `worldgate serve` writes it)."""
    return EvmDevnet.from_state(state)


def rpc(devnet: EvmDevnet, method: str, *params: Any) -> Any:
    answer = httpx.post(devnet.rpc_url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)})
    body = answer.json()
    if "error" in body:
        raise RuntimeError(body["error"])
    return body["result"]


def usdc_balance(devnet: EvmDevnet, address: str) -> int:
    return int(
        rpc(devnet, "eth_call", {"to": devnet.asset, "data": calldata("balanceOf(address)", address)}, "latest"), 16
    )


def authorization_used(devnet: EvmDevnet, address: str, nonce: str) -> bool:
    data = calldata("authorizationState(address,bytes32)", address, bytes.fromhex(nonce[2:]))
    return int(rpc(devnet, "eth_call", {"to": devnet.asset, "data": data}, "latest"), 16) == 1


def receipt(devnet: EvmDevnet, tx_hash: str) -> dict[str, Any] | None:
    result: dict[str, Any] | None = rpc(devnet, "eth_getTransactionReceipt", tx_hash)
    return result


def new_payer(devnet: EvmDevnet, usdc_atomic: int = 10_000_000) -> str:
    """A fresh private key holding `usdc_atomic` devnet USDC (and no ETH: EIP-3009 needs none)."""
    key = "0x" + os.urandom(32).hex()
    if usdc_atomic:
        mint(devnet.rpc_url, devnet.asset, Account.from_key(key).address, usdc_atomic)
    return key


def sign_authorization(
    key: str,
    devnet: EvmDevnet,
    *,
    to: str,
    value: int,
    name: str | None = None,
    version: str | None = None,
    chain_id: int | None = None,
    asset: str | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """An exact-EVM payload signed by `key` for the devnet's token (override any domain or message field)."""
    return sign_transfer_authorization(
        key,
        chain_id=chain_id or devnet.chain_id,
        asset=asset or devnet.asset,
        name=name or devnet.eip712_name,
        version=version or devnet.eip712_version,
        to=to,
        value=value,
        **fields,
    )


def b64(document: dict[str, Any]) -> str:
    return base64.b64encode(json.dumps(document, separators=(",", ":")).encode()).decode()


def unb64(value: str) -> dict[str, Any]:
    decoded: dict[str, Any] = json.loads(base64.b64decode(value))
    return decoded


def payment_header(accepted: dict[str, Any], payload: dict[str, Any]) -> str:
    """A v2 PAYMENT-SIGNATURE value for `accepted` (an offer from a 402) and a scheme payload."""
    return b64({"x402Version": 2, "accepted": accepted, "payload": payload})


def payment_document(
    key: str, devnet: EvmDevnet, offer: dict[str, Any], payment_id: str | None = None
) -> dict[str, Any]:
    """A signed v2 PaymentPayload for `offer` (the JSON object MCP carries; `b64` it for HTTP), with a
    payment-identifier when `payment_id` is given."""
    document: dict[str, Any] = {
        "x402Version": 2,
        "accepted": offer,
        "payload": sign_authorization(key, devnet, to=offer["payTo"], value=int(offer["amount"])),
    }
    if payment_id is not None:
        document["extensions"] = {"payment-identifier": {"info": {"id": payment_id}}}
    return document


def pay_for(key: str, devnet: EvmDevnet, accepted: dict[str, Any], **overrides: Any) -> str:
    """Sign a payment that satisfies `accepted` (override any authorization field to break it)."""
    fields: dict[str, Any] = {"to": accepted["payTo"], "value": int(accepted["amount"])}
    fields.update(overrides)
    return payment_header(accepted, sign_authorization(key, devnet, **fields))


def assert_one_served(answers: list[httpx.Response]) -> None:
    """Copies of one payment sent at once: one is served; every other is told the payment is spent (402
    payment_already_claimed) or still being processed (503 settlement_pending, retry the same payment),
    never asked to pay again and never given the data."""
    statuses = sorted(a.status_code for a in answers)
    assert statuses.count(200) == 1 and set(statuses) <= {200, 402, 503}, statuses
    others = {a.json()["error"] for a in answers if a.status_code != 200}
    assert others <= {"payment_already_claimed", "settlement_pending"}, others
    assert sum("records" in a.json() for a in answers) == 1  # the data left exactly once
