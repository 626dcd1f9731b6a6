"""The x402 wire format, v2 and v1: typed models, and the base64 header codec with its byte caps.

Models are msgspec structs on one camelCase base (`Wire`); optional fields that are None are
omitted, never sent as null, because the TS reference client's schemas reject null for optional
fields. Amounts travel as decimal strings. Nothing here does I/O or imports a chain library.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import msgspec

from .errors import Reason, Refusal

PAYMENT_SIGNATURE_HEADER = "payment-signature"  # v2 request
PAYMENT_REQUIRED_HEADER = "payment-required"  # v2 402
PAYMENT_RESPONSE_HEADER = "payment-response"  # v2 receipt
X_PAYMENT_HEADER = "x-payment"  # v1 request
X_PAYMENT_RESPONSE_HEADER = "x-payment-response"  # v1 receipt
# Browsers may read only the headers a response lists here (CORS).
EXPOSE_HEADERS = "PAYMENT-REQUIRED, PAYMENT-RESPONSE, X-PAYMENT-RESPONSE"

HEADER_BYTES_MAX_DEFAULT = 8192  # a real v2 EVM or SVM payment header is 1.5-3 KB


class Wire(msgspec.Struct, rename="camel", omit_defaults=True):
    """Base of every wire model: camelCase keys, defaults omitted, unknown keys ignored."""


class ResourceInfo(Wire):
    url: str
    description: str | None = None
    mime_type: str | None = None


class PaymentRequirements(Wire):
    scheme: str
    network: str
    amount: str
    asset: str
    pay_to: str
    max_timeout_seconds: int
    extra: dict[str, Any] = {}


class PaymentRequired(Wire):
    x402_version: int
    accepts: list[PaymentRequirements]
    error: str | None = None
    resource: ResourceInfo | None = None
    extensions: dict[str, Any] | None = None


class PaymentPayload(Wire):
    x402_version: int
    accepted: PaymentRequirements
    payload: dict[str, Any]
    resource: ResourceInfo | None = None
    extensions: dict[str, Any] | None = None


class PaymentPayloadV1(Wire):
    x402_version: int
    scheme: str
    network: str
    payload: dict[str, Any]


class VerifyResponse(Wire):
    is_valid: bool
    invalid_reason: str | None = None
    invalid_message: str | None = None
    payer: str | None = None


class SettleResponse(Wire):
    success: bool
    transaction: str
    network: str
    payer: str | None = None
    error_reason: str | None = None
    error_message: str | None = None
    amount: str | None = None  # batch-settlement: what went on chain (a deposit); exact omits it
    extra: dict[str, Any] | None = None  # batch-settlement: chargedAmount and the channel's state


class SupportedKind(Wire):
    x402_version: int
    scheme: str
    network: str
    extra: dict[str, Any] | None = None


class SupportedResponse(Wire):
    kinds: list[SupportedKind]
    extensions: list[str] = []
    signers: dict[str, list[str]] = {}


class FacilitatorRequest(Wire):
    """Body of a facilitator's POST /verify and POST /settle."""

    x402_version: int
    payment_payload: PaymentPayload
    payment_requirements: PaymentRequirements


_encoder = msgspec.json.Encoder()


def encode_json(value: Any) -> bytes:
    return _encoder.encode(value)


def encode_header(value: Wire) -> str:
    """Standard base64 (with padding) of the compact JSON of a wire model."""
    return base64.b64encode(_encoder.encode(value)).decode("ascii")


def _b64decode(text: str) -> bytes | None:
    """Standard base64; tolerate missing padding and the url-safe alphabet, nothing else."""
    text = text.strip()
    padded = text + "=" * (-len(text) % 4)
    for altchars in (None, b"-_"):
        try:
            return base64.b64decode(padded, altchars=altchars, validate=True)
        except (binascii.Error, ValueError):
            continue
    return None


def decode_payment_header(
    value: str, *, version: int, bytes_max: int = HEADER_BYTES_MAX_DEFAULT
) -> PaymentPayload | PaymentPayloadV1 | Refusal:
    """Decode a PAYMENT-SIGNATURE (version=2) or X-PAYMENT (version=1) header, size-capped first."""
    if len(value) > bytes_max:
        return Refusal(Reason.PAYMENT_HEADER_TOO_LARGE, f"payment header is over {bytes_max} bytes")
    raw = _b64decode(value)
    if raw is None:
        return Refusal(Reason.INVALID_PAYLOAD, "payment header is not base64")
    kind: type[PaymentPayload] | type[PaymentPayloadV1] = PaymentPayload if version == 2 else PaymentPayloadV1
    try:
        decoded = msgspec.json.decode(raw, type=kind)
    except msgspec.ValidationError as exc:
        return Refusal(Reason.INVALID_PAYLOAD, f"payment header JSON does not fit the x402 v{version} payload: {exc}")
    except (msgspec.DecodeError, UnicodeDecodeError):  # msgspec raises the latter for bad UTF-8 inside a string
        return Refusal(Reason.INVALID_PAYLOAD, "payment header is not JSON")
    if decoded.x402_version != version:
        return Refusal(
            Reason.INVALID_X402_VERSION,
            f"x402Version {decoded.x402_version} sent in a header that carries version {version}",
        )
    return decoded


def to_builtins(value: Any) -> Any:
    """A wire model as plain dicts and lists, camelCase keys, as it appears on the wire."""
    return msgspec.to_builtins(value)


def convert(value: Any, kind: type[Any]) -> Any:
    """Plain dicts (e.g. a scheme's `payload` object) into a wire model; raises msgspec.ValidationError."""
    return msgspec.convert(value, type=kind)
