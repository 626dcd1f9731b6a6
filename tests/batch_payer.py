"""A batch-settlement payer as the official clients behave, built on eth_account alone (its typed-data encoder,
not the hand-hashed digests under test): channel configs, deposits (ERC-3009 ReceiveWithAuthorization to the
collector), vouchers and refund requests. Shared by the batch tests (payments core, gateway, refunds, faults,
the devnet contracts) and bench/batch.py."""

from __future__ import annotations

import os
import time
from typing import Any

from eth_account import Account

from payments.devnet import batch as devnet_batch
from payments.devnet.evm import EvmDevnet, devnet_key
from payments.evm.batch import (
    BATCH_SETTLEMENT_ADDRESS,
    ERC3009_DEPOSIT_COLLECTOR_ADDRESS,
    erc3009_deposit_nonce,
)

CHAIN_ID = 84532
NETWORK = "eip155:84532"
USDC = 10**6
PRICE = 10_000  # 0.01 USDC per request
AUTHORIZER_KEY = devnet_key("batch payments receiver authorizer")
AUTHORIZER = Account.from_key(AUTHORIZER_KEY).address
STRANGER_KEY = devnet_key("batch payments stranger")

RECEIVE_WITH_AUTHORIZATION = [
    {"name": n, "type": t}
    for n, t in (
        ("from", "address"),
        ("to", "address"),
        ("value", "uint256"),
        ("validAfter", "uint256"),
        ("validBefore", "uint256"),
        ("nonce", "bytes32"),
    )
]
VOUCHER_TYPES = {
    "Voucher": [{"name": "channelId", "type": "bytes32"}, {"name": "maxClaimableAmount", "type": "uint128"}]
}
SCHEME_DOMAIN = {
    "name": "x402 Batch Settlement",
    "version": "1",
    "chainId": CHAIN_ID,
    "verifyingContract": BATCH_SETTLEMENT_ADDRESS,
}


def sign_deposit_authorization(
    devnet: EvmDevnet,
    key: str,
    from_address: str,
    amount: int,
    *,
    valid_before: int,
    nonce: bytes,
    to: str = ERC3009_DEPOSIT_COLLECTOR_ADDRESS,
) -> bytes:
    """A deposit's ERC-3009 ReceiveWithAuthorization under the devnet token's domain, signed by `key` (normally
    the payer's: `from_address`) with eth_account's typed-data encoder; valid from 0 to `valid_before`."""
    signed = Account.sign_typed_data(
        key,
        domain_data={
            "name": devnet.eip712_name,
            "version": devnet.eip712_version,
            "chainId": CHAIN_ID,
            "verifyingContract": devnet.asset,
        },
        message_types={"ReceiveWithAuthorization": RECEIVE_WITH_AUTHORIZATION},
        message_data={
            "from": from_address,
            "to": to,
            "value": amount,
            "validAfter": 0,
            "validBefore": valid_before,
            "nonce": nonce,
        },
    )
    return bytes(signed.signature)


class Payer:
    """A payer as the official clients behave, built on eth_account alone."""

    def __init__(self, devnet: EvmDevnet, pay_to: str, key: str | None = None) -> None:
        self.devnet = devnet
        self.key = key or "0x" + os.urandom(32).hex()
        self.address = Account.from_key(self.key).address
        self.pay_to = pay_to

    def config(self, **changes: Any) -> dict[str, Any]:
        config = {
            "payer": self.address,
            "payerAuthorizer": self.address,
            "receiver": self.pay_to,
            "receiverAuthorizer": AUTHORIZER,
            "token": self.devnet.asset,
            "withdrawDelay": 900,
            "salt": "0x" + os.urandom(32).hex(),
        }
        return {**config, **changes}

    @staticmethod
    def channel_id(config: dict[str, Any]) -> str:
        c = devnet_batch.ChannelConfig(
            config["payer"],
            config["payerAuthorizer"],
            config["receiver"],
            config["receiverAuthorizer"],
            config["token"],
            config["withdrawDelay"],
            bytes.fromhex(config["salt"][2:]),
        )
        return "0x" + devnet_batch.channel_id(c, CHAIN_ID).hex()

    def voucher(self, config: dict[str, Any], max_claimable: int, key: str | None = None) -> dict[str, Any]:
        channel = self.channel_id(config)
        signed = Account.sign_typed_data(
            key or self.key,
            domain_data=SCHEME_DOMAIN,
            message_types=VOUCHER_TYPES,
            message_data={"channelId": bytes.fromhex(channel[2:]), "maxClaimableAmount": max_claimable},
        )
        return {
            "channelId": channel,
            "maxClaimableAmount": str(max_claimable),
            "signature": "0x" + signed.signature.hex(),
        }

    def voucher_payload(self, config: dict[str, Any], max_claimable: int, **kw: Any) -> dict[str, Any]:
        return {"type": "voucher", "channelConfig": config, "voucher": self.voucher(config, max_claimable, **kw)}

    def deposit_payload(
        self,
        config: dict[str, Any],
        amount: int,
        max_claimable: int,
        *,
        valid_before: int | None = None,
        to: str = ERC3009_DEPOSIT_COLLECTOR_ADDRESS,
        key: str | None = None,
    ) -> dict[str, Any]:
        salt = "0x" + os.urandom(32).hex()
        valid_before = int(time.time()) + 300 if valid_before is None else valid_before
        nonce = erc3009_deposit_nonce(bytes.fromhex(self.channel_id(config)[2:]), int(salt, 16))
        signature = sign_deposit_authorization(
            self.devnet, key or self.key, self.address, amount, valid_before=valid_before, nonce=nonce, to=to
        )
        authorization = {
            "validAfter": "0",
            "validBefore": str(valid_before),
            "salt": salt,
            "signature": "0x" + signature.hex(),
        }
        return {
            "type": "deposit",
            "channelConfig": config,
            "voucher": self.voucher(config, max_claimable),
            "deposit": {"amount": str(amount), "authorization": {"erc3009Authorization": authorization}},
        }
