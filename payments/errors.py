"""Why a payment is refused: one closed set of reason codes and the HTTP status each one maps to.

Spec codes (x402 v2 §9 and the reference SDKs' EVM codes) keep their spelling so clients that know
them keep working; codes worldgate adds are marked. A remote facilitator may answer with a code we
do not know; such codes travel as plain strings, so every `reason` field in this package is `str`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Reason(StrEnum):
    # malformed input: HTTP 400
    INVALID_PAYLOAD = "invalid_payload"
    PAYMENT_HEADER_TOO_LARGE = "payment_header_too_large"  # worldgate
    # protocol-level mismatches
    INVALID_X402_VERSION = "invalid_x402_version"
    UNSUPPORTED_SCHEME = "unsupported_scheme"
    NETWORK_MISMATCH = "network_mismatch"
    INVALID_NETWORK = "invalid_network"
    OFFER_MISMATCH = "offer_mismatch"  # worldgate: `accepted` is not one of this route's offers
    # EVM exact, in the reference verification order
    MISSING_EIP712_DOMAIN = "missing_eip712_domain"
    EVM_RECIPIENT_MISMATCH = "invalid_exact_evm_payload_recipient_mismatch"
    EVM_VALUE_MISMATCH = "invalid_exact_evm_payload_authorization_value_mismatch"
    EVM_VALID_BEFORE = "invalid_exact_evm_payload_authorization_valid_before"
    EVM_VALID_AFTER = "invalid_exact_evm_payload_authorization_valid_after"
    EVM_SIGNATURE = "invalid_exact_evm_payload_signature"
    EVM_UNDEPLOYED_SMART_WALLET = "invalid_exact_evm_payload_undeployed_smart_wallet"
    EVM_FAILED_TO_VERIFY_SIGNATURE = "invalid_exact_evm_failed_to_verify_signature"
    ASSET_NOT_DEPLOYED = "asset_not_deployed_contract"
    EVM_NONCE_ALREADY_USED = "invalid_exact_evm_nonce_already_used"
    EVM_TOKEN_NAME_MISMATCH = "invalid_exact_evm_token_name_mismatch"  # noqa: S105 (a reason code)
    EVM_TOKEN_VERSION_MISMATCH = "invalid_exact_evm_token_version_mismatch"  # noqa: S105 (a reason code)
    EVM_INSUFFICIENT_BALANCE = "invalid_exact_evm_insufficient_balance"
    EVM_EIP3009_NOT_SUPPORTED = "invalid_exact_evm_eip3009_not_supported"
    EVM_SIMULATION_FAILED = "invalid_exact_evm_transaction_simulation_failed"
    EVM_TRANSFER_EVENT_MISMATCH = "invalid_exact_evm_transfer_event_mismatch"
    # SVM exact, reference TS spellings where one exists
    SVM_MISSING_FEE_PAYER = "invalid_exact_svm_payload_missing_fee_payer"
    SVM_FEE_PAYER_NOT_MANAGED = "invalid_exact_svm_fee_payer_not_managed_by_facilitator"
    SVM_COULD_NOT_DECODE = "invalid_exact_svm_payload_transaction_could_not_be_decoded"
    SVM_NOT_V0 = "invalid_exact_svm_payload_transaction_not_v0"  # worldgate
    SVM_ADDRESS_LOOKUP_TABLES = "invalid_exact_svm_payload_address_lookup_tables"  # worldgate
    SVM_FEE_PAYER_MISMATCH = "invalid_exact_svm_fee_payer_mismatch"
    SVM_EXCESSIVE_SIGNERS = "invalid_exact_svm_payload_excessive_signers"
    SVM_SIGNATURE_INVALID = "invalid_exact_svm_payload_signature_invalid"
    SVM_INSTRUCTIONS_LENGTH = "invalid_exact_svm_payload_transaction_instructions_length"
    SVM_COMPUTE_LIMIT_INSTRUCTION = "invalid_exact_svm_payload_transaction_instructions_compute_limit_instruction"
    SVM_COMPUTE_LIMIT_TOO_HIGH = "invalid_exact_svm_payload_transaction_instructions_compute_limit_instruction_too_high"
    SVM_COMPUTE_PRICE_INSTRUCTION = "invalid_exact_svm_payload_transaction_instructions_compute_price_instruction"
    SVM_COMPUTE_PRICE_TOO_HIGH = "invalid_exact_svm_payload_transaction_instructions_compute_price_instruction_too_high"
    SVM_PRIORITY_FEE_TOO_HIGH = "invalid_exact_svm_payload_priority_fee_too_high"  # worldgate
    SVM_NO_TRANSFER_INSTRUCTION = "invalid_exact_svm_payload_no_transfer_instruction"
    SVM_MINT_MISMATCH = "invalid_exact_svm_payload_mint_mismatch"
    SVM_RECIPIENT_MISMATCH = "invalid_exact_svm_payload_recipient_mismatch"
    SVM_AMOUNT_MISMATCH = "invalid_exact_svm_payload_amount_mismatch"
    SVM_FEE_PAYER_TRANSFERRING_FUNDS = "invalid_exact_svm_payload_transaction_fee_payer_transferring_funds"
    SVM_FEE_PAYER_IN_INSTRUCTION_ACCOUNTS = (
        "invalid_exact_svm_payload_transaction_fee_payer_included_in_instruction_accounts"
    )
    SVM_UNKNOWN_FOURTH_INSTRUCTION = "invalid_exact_svm_payload_unknown_fourth_instruction"
    SVM_UNKNOWN_FIFTH_INSTRUCTION = "invalid_exact_svm_payload_unknown_fifth_instruction"
    SVM_UNKNOWN_SIXTH_INSTRUCTION = "invalid_exact_svm_payload_unknown_sixth_instruction"
    SVM_MEMO_COUNT = "invalid_exact_svm_payload_memo_count"
    SVM_MEMO_MISMATCH = "invalid_exact_svm_payload_memo_mismatch"
    SVM_BLOCKHASH_EXPIRED = "invalid_exact_svm_payload_blockhash_expired"  # worldgate
    SVM_SIMULATION_FAILED = "invalid_exact_svm_transaction_simulation_failed"
    SVM_TRANSFER_MISMATCH = "invalid_exact_svm_transfer_not_confirmed"  # worldgate: landed, but not as verified
    # EVM batch-settlement: the reference SDKs' wire codes (`invalid_batch_settlement_evm_` + suffix)
    BATCH_PAYLOAD_TYPE = "invalid_batch_settlement_evm_payload_type"
    BATCH_MISSING_EIP712_DOMAIN = "invalid_batch_settlement_evm_missing_eip712_domain"
    BATCH_CHANNEL_ID_INVALID = "invalid_batch_settlement_evm_channel_id_invalid"
    BATCH_CHANNEL_ID_MISMATCH = "invalid_batch_settlement_evm_channel_id_mismatch"
    BATCH_CHANNEL_NOT_FOUND = "invalid_batch_settlement_evm_channel_not_found"
    BATCH_RECEIVER_MISMATCH = "invalid_batch_settlement_evm_receiver_mismatch"
    BATCH_RECEIVER_AUTHORIZER_MISMATCH = "invalid_batch_settlement_evm_receiver_authorizer_mismatch"
    BATCH_AUTHORIZER_ADDRESS_MISMATCH = "invalid_batch_settlement_evm_authorizer_address_mismatch"
    BATCH_AUTHORIZER_NOT_CONFIGURED = "invalid_batch_settlement_evm_authorizer_not_configured"
    BATCH_TOKEN_MISMATCH = "invalid_batch_settlement_evm_token_mismatch"  # noqa: S105 (a reason code)
    BATCH_WITHDRAW_DELAY_MISMATCH = "invalid_batch_settlement_evm_withdraw_delay_mismatch"
    BATCH_WITHDRAW_DELAY_OUT_OF_RANGE = "invalid_batch_settlement_evm_withdraw_delay_out_of_range"
    BATCH_VOUCHER_SIGNATURE = "invalid_batch_settlement_evm_voucher_signature"
    BATCH_CUMULATIVE_AMOUNT_MISMATCH = "invalid_batch_settlement_evm_cumulative_amount_mismatch"
    BATCH_CUMULATIVE_BELOW_CLAIMED = "invalid_batch_settlement_evm_cumulative_below_claimed"
    BATCH_CUMULATIVE_EXCEEDS_BALANCE = "invalid_batch_settlement_evm_cumulative_exceeds_balance"
    BATCH_CHARGE_EXCEEDS_SIGNED_CUMULATIVE = "invalid_batch_settlement_evm_charge_exceeds_signed_cumulative"
    BATCH_CHANNEL_BUSY = "invalid_batch_settlement_evm_channel_busy"
    BATCH_VERIFICATION_STATE_UNAVAILABLE = "invalid_batch_settlement_evm_verification_state_unavailable"
    BATCH_INSUFFICIENT_BALANCE = "invalid_batch_settlement_evm_insufficient_balance"
    BATCH_ERC3009_AUTHORIZATION_REQUIRED = "invalid_batch_settlement_evm_erc3009_authorization_required"
    BATCH_VALID_AFTER = "invalid_batch_settlement_evm_payload_authorization_valid_after"
    BATCH_VALID_BEFORE = "invalid_batch_settlement_evm_payload_authorization_valid_before"
    BATCH_RECEIVE_AUTHORIZATION_SIGNATURE = "invalid_batch_settlement_evm_receive_authorization_signature"
    BATCH_DEPOSIT_PAYLOAD = "invalid_batch_settlement_evm_deposit_payload"
    BATCH_DEPOSIT_BELOW_MIN_DEPOSIT = "invalid_batch_settlement_evm_deposit_below_min_deposit"
    BATCH_DEPOSIT_SIMULATION_FAILED = "invalid_batch_settlement_evm_deposit_simulation_failed"
    BATCH_DEPOSIT_TRANSACTION_FAILED = "invalid_batch_settlement_evm_deposit_transaction_failed"
    BATCH_CLAIM_PAYLOAD = "invalid_batch_settlement_evm_claim_payload"
    BATCH_CLAIM_SIMULATION_FAILED = "invalid_batch_settlement_evm_claim_simulation_failed"
    BATCH_CLAIM_TRANSACTION_FAILED = "invalid_batch_settlement_evm_claim_transaction_failed"
    BATCH_SETTLE_SIMULATION_FAILED = "invalid_batch_settlement_evm_settle_simulation_failed"
    BATCH_SETTLE_TRANSACTION_FAILED = "invalid_batch_settlement_evm_settle_transaction_failed"
    BATCH_NOTHING_TO_SETTLE = "invalid_batch_settlement_evm_nothing_to_settle"
    BATCH_REFUND_PAYLOAD = "invalid_batch_settlement_evm_refund_payload"
    BATCH_REFUND_NO_BALANCE = "invalid_batch_settlement_evm_refund_no_balance"
    BATCH_REFUND_AMOUNT_INVALID = "invalid_batch_settlement_evm_refund_amount_invalid"
    BATCH_REFUND_SIMULATION_FAILED = "invalid_batch_settlement_evm_refund_simulation_failed"
    BATCH_REFUND_TRANSACTION_FAILED = "invalid_batch_settlement_evm_refund_transaction_failed"
    BATCH_RPC_READ_FAILED = "invalid_batch_settlement_evm_rpc_read_failed"
    BATCH_MISSING_CHANNEL = "invalid_batch_settlement_evm_missing_channel"
    # exactly-once (worldgate): the payment key is already claimed by another request
    PAYMENT_ALREADY_CLAIMED = "payment_already_claimed"
    # settlement
    TRANSACTION_FAILED = "transaction_failed"
    SETTLEMENT_PENDING = "settlement_pending"
    UNEXPECTED_VERIFY_ERROR = "unexpected_verify_error"
    UNEXPECTED_SETTLE_ERROR = "unexpected_settle_error"


MALFORMED: frozenset[str] = frozenset({Reason.INVALID_PAYLOAD, Reason.PAYMENT_HEADER_TOO_LARGE})


def http_status(reason: str) -> int:
    """400 for input we could not even read, 402 for every payment we read and refused."""
    return 400 if reason in MALFORMED else 402


@dataclass(frozen=True, slots=True)
class Refusal:
    """A payment refused for a reason the payer can act on; a value, not an exception."""

    reason: str
    message: str

    @property
    def status(self) -> int:
        return http_status(self.reason)


class PaymentError(Exception):
    """Infrastructure failed while handling a payment (RPC down, facilitator unreadable).

    Never raised for a bad payment: those are `Refusal` values. Messages never carry secrets.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
