"""`batch-settlement` on the wire: the payer's payloads, the offer's `extra`, and what the server sends back.

msgspec structs on the codec's camelCase base. Amounts are base-10 strings; `withdrawDelay` and
`withdrawRequestedAt` are JSON integers, because the official Python client silently replaces a
non-integer `withdrawDelay` with 900 and so computes another channel id. `chargedAmount` and
`chargedCumulativeAmount` must be strings, or the client raises (or ignores the update).
"""

from __future__ import annotations

from typing import Any

import msgspec

from ...codec import PaymentRequirements, Wire
from ...errors import Reason, Refusal

SCHEME = "batch-settlement"
PAYLOAD_TYPES = ("voucher", "deposit", "refund")


class ChannelConfig(Wire):
    """The channel's immutable terms; its id is their EIP-712 hash on one chain."""

    payer: str
    payer_authorizer: str
    receiver: str
    receiver_authorizer: str
    token: str
    withdraw_delay: int
    salt: str  # bytes32, 0x hex


class Voucher(Wire):
    channel_id: str
    max_claimable_amount: str  # cumulative: everything charged so far plus this request
    signature: str


class Erc3009Authorization(Wire):
    valid_after: str
    valid_before: str
    salt: str  # uint256 as 0x hex (the Python SDK) or decimal
    signature: str


class DepositAuthorization(Wire):
    erc3009_authorization: Erc3009Authorization | None = None
    permit2_authorization: dict[str, Any] | None = None  # read only to refuse it by name


class Deposit(Wire):
    amount: str
    authorization: DepositAuthorization


class VoucherPayload(Wire, tag="voucher", tag_field="type"):
    channel_config: ChannelConfig
    voucher: Voucher


class DepositPayload(Wire, tag="deposit", tag_field="type"):
    channel_config: ChannelConfig
    voucher: Voucher
    deposit: Deposit


class RefundPayload(Wire, tag="refund", tag_field="type"):
    channel_config: ChannelConfig
    voucher: Voucher  # zero-charge: maxClaimableAmount == what was charged
    amount: str | None = None  # omitted: refund everything not charged


BatchPayload = VoucherPayload | DepositPayload | RefundPayload


class OfferExtra(Wire):
    """The offer's `extra`: what the client copies into its ChannelConfig, and the token's EIP-712 domain."""

    receiver_authorizer: str
    withdraw_delay: int
    name: str
    version: str
    asset_transfer_method: str = "eip3009"
    min_deposit: str | None = None


class ChannelStateExtra(Wire):
    channel_id: str
    balance: str
    total_claimed: str
    withdraw_requested_at: int  # unix s, 0 = no withdrawal pending
    refund_nonce: str
    charged_cumulative_amount: str | None = None


class VoucherStateExtra(Wire):
    signed_max_claimable: str
    signature: str


class PaymentResponseExtra(Wire):
    charged_amount: str | None = None
    channel_state: ChannelStateExtra | None = None


class BatchSettleResponse(Wire):
    """PAYMENT-RESPONSE for this scheme: the codec's SettleResponse plus `amount` and `extra`."""

    success: bool
    transaction: str  # "" for a voucher: nothing went on chain
    network: str
    payer: str | None = None
    amount: str | None = None
    error_reason: str | None = None
    error_message: str | None = None
    extra: PaymentResponseExtra | None = None


def parse_payload(raw: dict[str, Any] | BatchPayload) -> BatchPayload | Refusal:
    """The scheme payload (`PaymentPayload.payload`) as one of the three typed payloads."""
    if isinstance(raw, VoucherPayload | DepositPayload | RefundPayload):
        return raw
    if not isinstance(raw, dict) or raw.get("type") not in PAYLOAD_TYPES:
        return Refusal(Reason.BATCH_PAYLOAD_TYPE, f"payload `type` must be one of {', '.join(PAYLOAD_TYPES)}")
    try:
        return msgspec.convert(raw, type=BatchPayload)
    except msgspec.ValidationError as exc:
        return Refusal(Reason.INVALID_PAYLOAD, f"batch-settlement {raw['type']} payload: {exc}")


def parse_offer_extra(offer: PaymentRequirements) -> OfferExtra | Refusal:
    try:
        return msgspec.convert(offer.extra, type=OfferExtra)
    except msgspec.ValidationError as exc:
        return Refusal(Reason.BATCH_MISSING_EIP712_DOMAIN, f"the batch offer's extra is incomplete: {exc}")


def channel_state_extra(
    channel_id: str,
    balance: int,
    total_claimed: int,
    withdraw_requested_at: int,
    refund_nonce: int,
    charged_cumulative: int | None,
) -> ChannelStateExtra:
    return ChannelStateExtra(
        channel_id=channel_id,
        balance=str(balance),
        total_claimed=str(total_claimed),
        withdraw_requested_at=withdraw_requested_at,
        refund_nonce=str(refund_nonce),
        charged_cumulative_amount=None if charged_cumulative is None else str(charged_cumulative),
    )


def payment_response_extra(channel_state: ChannelStateExtra, charged_amount: int | None) -> dict[str, Any]:
    """PAYMENT-RESPONSE `extra` as JSON builtins: `chargedAmount` for a voucher or deposit, none for a refund."""
    extra = PaymentResponseExtra(
        charged_amount=None if charged_amount is None else str(charged_amount), channel_state=channel_state
    )
    return msgspec.to_builtins(extra)


def corrective_requirements(
    offer: PaymentRequirements,
    channel_state: ChannelStateExtra,
    signed_max_claimable: int | None = None,
    signature: str | None = None,
) -> PaymentRequirements:
    """The offer for a corrective 402 (error `…cumulative_amount_mismatch`): our offer plus `channelState`
    and, when a voucher is held, `voucherState`, so the client can re-base its cumulative and retry once."""
    extra = dict(offer.extra)
    extra["channelState"] = msgspec.to_builtins(channel_state)
    if signed_max_claimable is not None and signature is not None:
        extra["voucherState"] = msgspec.to_builtins(
            VoucherStateExtra(signed_max_claimable=str(signed_max_claimable), signature=signature)
        )
    return msgspec.structs.replace(offer, extra=extra)
