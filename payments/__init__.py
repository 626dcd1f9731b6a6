"""The x402 protocol for worldgate: wire codec, offers, the `exact` schemes, facilitators, chain auditors, devnet.

Imports nothing of worldgate's other domains. `app/` uses only the names listed here.
"""

from .audit import ChainAuditor, SettlementFinding
from .codec import (
    EXPOSE_HEADERS,
    PAYMENT_REQUIRED_HEADER,
    PAYMENT_RESPONSE_HEADER,
    PAYMENT_SIGNATURE_HEADER,
    X_PAYMENT_HEADER,
    X_PAYMENT_RESPONSE_HEADER,
    PaymentPayload,
    PaymentPayloadV1,
    PaymentRequired,
    PaymentRequirements,
    ResourceInfo,
    SettleResponse,
    SupportedResponse,
    decode_payment_header,
    encode_header,
    encode_json,
    to_builtins,
)
from .errors import PaymentError, Reason, Refusal, http_status
from .evm.audit import EvmAuditor
from .evm.batch import (
    BatchOutcome,
    BatchSettlementChain,
    BatchSettleResponse,
    ChannelSnapshot,
    CheckedVoucher,
    ClaimRow,
    LocalAuthorizer,
    batch_terms,
    build_batch_offer,
    check_payment,
    check_voucher,
    corrective_requirements,
    next_cumulative_ok,
    payment_response_extra,
)
from .evm.exact import ExactEvmScheme
from .evm.relayer import Relayer
from .evm.rpc import EvmRpc
from .facilitator import Facilitator, OnBroadcast
from .facilitator.local import LocalFacilitator
from .facilitator.remote import RemoteFacilitator
from .money import PriceError, to_atomic, to_display
from .offers import NetworkTerms, build_offer, match_offer
from .outcomes import Inspection, Settlement, Verification
from .schemes import authenticate, inspect, v1_as_v2
from .svm.audit import SvmAuditor
from .svm.exact import ExactSvmScheme
from .svm.rpc import SvmRpc

__all__ = [
    "EXPOSE_HEADERS",
    "PAYMENT_REQUIRED_HEADER",
    "PAYMENT_RESPONSE_HEADER",
    "PAYMENT_SIGNATURE_HEADER",
    "X_PAYMENT_HEADER",
    "X_PAYMENT_RESPONSE_HEADER",
    "BatchOutcome",
    "BatchSettleResponse",
    "BatchSettlementChain",
    "ChainAuditor",
    "ChannelSnapshot",
    "CheckedVoucher",
    "ClaimRow",
    "EvmAuditor",
    "EvmRpc",
    "ExactEvmScheme",
    "ExactSvmScheme",
    "Facilitator",
    "Inspection",
    "LocalAuthorizer",
    "LocalFacilitator",
    "NetworkTerms",
    "OnBroadcast",
    "PaymentError",
    "PaymentPayload",
    "PaymentPayloadV1",
    "PaymentRequired",
    "PaymentRequirements",
    "PriceError",
    "Reason",
    "Refusal",
    "Relayer",
    "RemoteFacilitator",
    "ResourceInfo",
    "SettleResponse",
    "Settlement",
    "SettlementFinding",
    "SupportedResponse",
    "SvmAuditor",
    "SvmRpc",
    "Verification",
    "authenticate",
    "batch_terms",
    "build_batch_offer",
    "build_offer",
    "check_payment",
    "check_voucher",
    "corrective_requirements",
    "decode_payment_header",
    "encode_header",
    "encode_json",
    "http_status",
    "inspect",
    "match_offer",
    "next_cumulative_ok",
    "payment_response_extra",
    "to_atomic",
    "to_builtins",
    "to_display",
    "v1_as_v2",
]
