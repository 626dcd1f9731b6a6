"""The local check of a batch payload against our offer: every rule that needs neither the chain nor the ledger.

Order follows the reference facilitator: channel id (canonical, then equal to getChannelId on this
chain) → receiver == payTo → receiverAuthorizer == ours → token == asset → withdrawDelay == ours and
in range → the voucher's ECDSA signature by payerAuthorizer. A zero payerAuthorizer means the contract
checks the *payer* with SignatureChecker (ECDSA or EIP-1271), which needs the chain: the result says
so (`signer_verified=False`) instead of refusing. The cumulative rule needs the ledger's last charge;
`next_cumulative_ok` encodes it for the caller.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ...codec import PaymentPayload, PaymentRequirements
from ...errors import Reason, Refusal
from ...networks import evm_chain_id
from ..eip712 import domain_separator, recover_address
from .digests import (
    ERC3009_DEPOSIT_COLLECTOR_ADDRESS,
    MAX_WITHDRAW_DELAY,
    MIN_WITHDRAW_DELAY,
    UINT128_MAX,
    ZERO_ADDRESS,
    channel_id_of,
    erc3009_deposit_nonce,
    receive_authorization_digest,
    voucher_digest,
)
from .wire import SCHEME, BatchPayload, ChannelConfig, DepositPayload, RefundPayload, parse_offer_extra, parse_payload

SIGNATURE_BYTES_MAX = 2048  # EIP-1271 wallets may sign with more than 65 bytes; nothing needs kilobytes
_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
_BYTES32 = re.compile(r"^0x[0-9a-fA-F]{64}$")
_HEX = re.compile(r"^0x(?:[0-9a-fA-F]{2})*$")
_DIGITS = re.compile(r"^[0-9]{1,39}$")  # uint128 fits in 39 digits
_HEX_UINT256 = re.compile(r"^0x[0-9a-fA-F]{1,64}$")
_DEC_UINT256 = re.compile(r"^[0-9]{1,78}$")


@dataclass(frozen=True, slots=True)
class DepositTerms:
    """A deposit's ERC-3009 ReceiveWithAuthorization, as the collector will rebuild it."""

    amount: int
    valid_after: int
    valid_before: int
    salt: int
    signature: bytes
    digest: bytes  # under the token's EIP-712 domain, with `to` = the ERC-3009 collector
    signer_verified: bool  # ECDSA recovered to the payer; False: only an EIP-1271 payer can still be valid


@dataclass(frozen=True, slots=True)
class CheckedVoucher:
    """A batch payload that passed every local check. Addresses are lowercase 0x hex."""

    kind: str  # "voucher" | "deposit" | "refund"
    network: str
    chain_id: int
    channel_id: str  # lowercase 0x + 64 hex
    config: ChannelConfig  # normalized: lowercase addresses and salt
    max_claimable: int  # the voucher's cumulative ceiling
    signature: bytes
    signer_verified: bool  # recovered to payerAuthorizer; False: payerAuthorizer is zero, check on chain
    deposit: DepositTerms | None = None
    refund_amount: int | None = None  # a refund's requested amount; None = everything not charged

    @property
    def payer(self) -> str:
        return self.config.payer

    @property
    def payer_authorizer(self) -> str:
        return self.config.payer_authorizer

    @property
    def channel_id_bytes(self) -> bytes:
        return bytes.fromhex(self.channel_id[2:])

    @property
    def signature_hex(self) -> str:
        return "0x" + self.signature.hex()


def config_channel_id(config: ChannelConfig, chain_id: int) -> bytes:
    return channel_id_of(
        chain_id,
        config.payer,
        config.payer_authorizer,
        config.receiver,
        config.receiver_authorizer,
        config.token,
        config.withdraw_delay,
        bytes.fromhex(config.salt[2:]),
    )


def _normalized(config: ChannelConfig) -> ChannelConfig | Refusal:
    addresses = (config.payer, config.payer_authorizer, config.receiver, config.receiver_authorizer, config.token)
    if not all(_ADDRESS.match(a) for a in addresses):
        return Refusal(Reason.INVALID_PAYLOAD, "channelConfig addresses must be 0x + 40 hex")
    if not _BYTES32.match(config.salt):
        return Refusal(Reason.INVALID_PAYLOAD, "channelConfig.salt must be 0x + 64 hex")
    if not 0 <= config.withdraw_delay < 2**40:
        return Refusal(Reason.BATCH_WITHDRAW_DELAY_OUT_OF_RANGE, "withdrawDelay does not fit a uint40")
    payer, payer_authorizer, receiver, receiver_authorizer, token = (a.lower() for a in addresses)
    return ChannelConfig(
        payer, payer_authorizer, receiver, receiver_authorizer, token, config.withdraw_delay, config.salt.lower()
    )


def _uint(text: str, maximum: int = UINT128_MAX) -> int | None:
    if not _DIGITS.match(text):
        return None
    value = int(text)
    return value if value <= maximum else None


def _uint256(text: str) -> int | None:
    """A uint256 as the SDKs write a salt: 0x hex or decimal."""
    if _HEX_UINT256.match(text):
        return int(text, 16)
    if _DEC_UINT256.match(text) and int(text) < 2**256:
        return int(text)
    return None


def _signature(text: str) -> bytes | None:
    if not _HEX.match(text) or len(text) > 2 + 2 * SIGNATURE_BYTES_MAX or len(text) < 4:
        return None
    return bytes.fromhex(text[2:])


def check_voucher(raw: dict[str, Any] | BatchPayload, offer: PaymentRequirements) -> CheckedVoucher | Refusal:
    """Parse a scheme payload (voucher, deposit or refund) and check it against our own offer. No I/O."""
    if offer.scheme != SCHEME:
        return Refusal(Reason.UNSUPPORTED_SCHEME, f"offer scheme {offer.scheme!r} is not {SCHEME!r}")
    chain_id = evm_chain_id(offer.network)
    if chain_id is None:
        return Refusal(Reason.INVALID_NETWORK, f"{offer.network} is not an eip155 network")
    terms = parse_offer_extra(offer)
    if isinstance(terms, Refusal):
        return terms
    payload = parse_payload(raw)
    if isinstance(payload, Refusal):
        return payload
    config = _normalized(payload.channel_config)
    if isinstance(config, Refusal):
        return config

    voucher = payload.voucher
    if not _BYTES32.match(voucher.channel_id):
        return Refusal(Reason.BATCH_CHANNEL_ID_INVALID, "voucher.channelId must be 0x + 64 hex")
    channel = config_channel_id(config, chain_id)
    if voucher.channel_id.lower() != "0x" + channel.hex():
        return Refusal(Reason.BATCH_CHANNEL_ID_MISMATCH, "voucher.channelId is not the id of channelConfig here")
    if config.receiver != offer.pay_to.lower():
        return Refusal(Reason.BATCH_RECEIVER_MISMATCH, "channelConfig.receiver is not the offer's payTo")
    ours = terms.receiver_authorizer.lower()
    if ours == ZERO_ADDRESS or config.receiver_authorizer != ours:
        return Refusal(Reason.BATCH_RECEIVER_AUTHORIZER_MISMATCH, "channelConfig.receiverAuthorizer is not ours")
    if config.token != offer.asset.lower():
        return Refusal(Reason.BATCH_TOKEN_MISMATCH, "channelConfig.token is not the offer's asset")
    if config.withdraw_delay != terms.withdraw_delay:
        return Refusal(Reason.BATCH_WITHDRAW_DELAY_MISMATCH, f"withdrawDelay must be {terms.withdraw_delay}")
    if not MIN_WITHDRAW_DELAY <= config.withdraw_delay <= MAX_WITHDRAW_DELAY:
        return Refusal(Reason.BATCH_WITHDRAW_DELAY_OUT_OF_RANGE, "withdrawDelay is outside the contract's range")

    max_claimable = _uint(voucher.max_claimable_amount)
    signature = _signature(voucher.signature)
    if max_claimable is None or signature is None:
        return Refusal(Reason.INVALID_PAYLOAD, "voucher needs a uint128 maxClaimableAmount and a 0x hex signature")
    signer_verified = False
    if config.payer_authorizer != ZERO_ADDRESS:
        signer = recover_address(voucher_digest(chain_id, channel, max_claimable), signature)
        if signer != config.payer_authorizer:
            return Refusal(Reason.BATCH_VOUCHER_SIGNATURE, "the voucher is not signed by payerAuthorizer")
        signer_verified = True

    deposit: DepositTerms | Refusal | None = None
    refund_amount = None
    if isinstance(payload, DepositPayload):
        deposit = _deposit_terms(payload, config, channel, chain_id, terms.name, terms.version)
        if isinstance(deposit, Refusal):
            return deposit
    elif isinstance(payload, RefundPayload) and payload.amount is not None:
        refund_amount = _uint(payload.amount)
        if not refund_amount:
            return Refusal(Reason.BATCH_REFUND_AMOUNT_INVALID, "refund amount must be a positive uint128")
    return CheckedVoucher(
        kind=str(type(payload).__struct_config__.tag),
        network=offer.network,
        chain_id=chain_id,
        channel_id="0x" + channel.hex(),
        config=config,
        max_claimable=max_claimable,
        signature=signature,
        signer_verified=signer_verified,
        deposit=deposit,
        refund_amount=refund_amount,
    )


def _deposit_terms(
    payload: DepositPayload, config: ChannelConfig, channel: bytes, chain_id: int, name: str, version: str
) -> DepositTerms | Refusal:
    authorization = payload.deposit.authorization
    if authorization.erc3009_authorization is None:
        method = "permit2" if authorization.permit2_authorization is not None else "no"
        return Refusal(
            Reason.BATCH_ERC3009_AUTHORIZATION_REQUIRED,
            f"{method} deposit authorization: this server takes ERC-3009 (assetTransferMethod eip3009) only",
        )
    erc3009 = authorization.erc3009_authorization
    amount = _uint(payload.deposit.amount)
    valid_after, valid_before = _uint256(erc3009.valid_after), _uint256(erc3009.valid_before)
    salt, signature = _uint256(erc3009.salt), _signature(erc3009.signature)
    if not amount or valid_after is None or valid_before is None or salt is None or signature is None:
        return Refusal(
            Reason.BATCH_DEPOSIT_PAYLOAD,
            "deposit needs a positive uint128 amount, uint validity window, salt, signature",
        )
    digest = receive_authorization_digest(
        domain_separator(name, version, chain_id, config.token),
        config.payer,
        ERC3009_DEPOSIT_COLLECTOR_ADDRESS.lower(),
        amount,
        valid_after,
        valid_before,
        erc3009_deposit_nonce(channel, salt),
    )
    verified = recover_address(digest, signature) == config.payer
    return DepositTerms(amount, valid_after, valid_before, salt, signature, digest, verified)


def check_payment(payload: PaymentPayload, offer: PaymentRequirements) -> CheckedVoucher | Refusal:
    """`check_voucher` for a whole x402 payload whose `accepted` was already matched to `offer`."""
    if payload.accepted.scheme != offer.scheme:
        return Refusal(Reason.UNSUPPORTED_SCHEME, f"scheme {payload.accepted.scheme!r} is not {offer.scheme!r}")
    if payload.accepted.network != offer.network:
        return Refusal(Reason.NETWORK_MISMATCH, f"payment is for {payload.accepted.network}, not {offer.network}")
    return check_voucher(payload.payload, offer)


def next_cumulative_ok(
    last_charged: int,
    price: int,
    max_claimable: int,
    onchain_balance: int,
    *,
    total_claimed: int = 0,
    pending_withdrawal: int = 0,
    refund: bool = False,
) -> Refusal | None:
    """The cumulative rule: a paid voucher must be exactly `last_charged + price` (a refund's exactly
    `last_charged`), above what is already claimed on chain, and covered by the escrow.

    `onchain_balance` is `channels(id).balance` (plus the deposit riding in the same payload). A pending
    withdrawal may take `pending_withdrawal` of it before our claim lands, so that much is not counted.
    A mismatch answers a corrective 402, from which the official clients re-base and retry once.
    """
    expected = last_charged if refund else last_charged + price
    if max_claimable != expected:
        return Refusal(
            Reason.BATCH_CUMULATIVE_AMOUNT_MISMATCH,
            f"voucher maxClaimableAmount {max_claimable} is not the expected cumulative {expected}",
        )
    if max_claimable > onchain_balance - pending_withdrawal:
        return Refusal(Reason.BATCH_CUMULATIVE_EXCEEDS_BALANCE, "the voucher exceeds the channel's escrow")
    if max_claimable < total_claimed or (max_claimable == total_claimed and not refund):
        return Refusal(Reason.BATCH_CUMULATIVE_BELOW_CLAIMED, "the voucher is not above what is already claimed")
    return None
