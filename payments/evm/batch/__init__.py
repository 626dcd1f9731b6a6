"""x402 `batch-settlement` on EVM: one deposit into an escrow channel, a signed cumulative voucher per request,
and many vouchers claimed in one transaction.

Pure parts (wire shapes, the offer, the local voucher check, the cumulative rule) do no I/O; the chain
side is `BatchSettlementChain` over our JSON-RPC client and relayer. The ledger keeps, per channel, the
charged total and the last voucher (ceiling and signature); nothing here holds state between calls.
"""

from .abi import ClaimRow
from .chain import BatchChainReader
from .digests import (
    BATCH_SETTLEMENT_ADDRESS,
    ERC3009_DEPOSIT_COLLECTOR_ADDRESS,
    MAX_WITHDRAW_DELAY,
    MIN_WITHDRAW_DELAY,
    channel_id_of,
    claim_batch_digest,
    erc3009_deposit_nonce,
    refund_digest,
    voucher_digest,
)
from .offer import batch_terms, build_batch_offer, offer_extra
from .outcomes import BatchOutcome, ChannelSnapshot, DepositCheck
from .settlement import AuthorizerSigner, BatchSettlementChain, LocalAuthorizer, rows_per_claim
from .vouchers import CheckedVoucher, DepositTerms, check_payment, check_voucher, config_channel_id, next_cumulative_ok
from .wire import (
    SCHEME,
    BatchPayload,
    BatchSettleResponse,
    ChannelConfig,
    ChannelStateExtra,
    Deposit,
    DepositAuthorization,
    DepositPayload,
    Erc3009Authorization,
    OfferExtra,
    PaymentResponseExtra,
    RefundPayload,
    Voucher,
    VoucherPayload,
    VoucherStateExtra,
    channel_state_extra,
    corrective_requirements,
    parse_payload,
    payment_response_extra,
)

__all__ = [
    "BATCH_SETTLEMENT_ADDRESS",
    "ERC3009_DEPOSIT_COLLECTOR_ADDRESS",
    "MAX_WITHDRAW_DELAY",
    "MIN_WITHDRAW_DELAY",
    "SCHEME",
    "AuthorizerSigner",
    "BatchChainReader",
    "BatchOutcome",
    "BatchPayload",
    "BatchSettleResponse",
    "BatchSettlementChain",
    "ChannelConfig",
    "ChannelSnapshot",
    "ChannelStateExtra",
    "CheckedVoucher",
    "ClaimRow",
    "Deposit",
    "DepositAuthorization",
    "DepositCheck",
    "DepositPayload",
    "DepositTerms",
    "Erc3009Authorization",
    "LocalAuthorizer",
    "OfferExtra",
    "PaymentResponseExtra",
    "RefundPayload",
    "Voucher",
    "VoucherPayload",
    "VoucherStateExtra",
    "batch_terms",
    "build_batch_offer",
    "channel_id_of",
    "channel_state_extra",
    "check_payment",
    "check_voucher",
    "claim_batch_digest",
    "config_channel_id",
    "corrective_requirements",
    "erc3009_deposit_nonce",
    "next_cumulative_ok",
    "offer_extra",
    "parse_payload",
    "payment_response_extra",
    "refund_digest",
    "rows_per_claim",
    "voucher_digest",
]
