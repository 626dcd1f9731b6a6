"""Binding a payment to a paid route: decode it, turn an x402 v1 payment into v2, and match what it
`accepted` to one of the route's own offers (ours, never the client's copy).

Both transports bind here before the checkout: HTTP from a PAYMENT-SIGNATURE (v2) or X-PAYMENT (v1)
header (`bind_header`), MCP from a PaymentPayload object in the request's `_meta` (`bind_object`).
Every failure is a `Refusal`, answered with a fresh quote naming its reason. A payment whose payload
names its `resource` must name the one requested: one quoted for another route is refused here, before
any claim, rather than spent on a route its signer did not mean.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import msgspec

from app.runtime import metrics
from app.usecases.pricing import PaidRoute
from payments import (
    PaymentPayload,
    PaymentPayloadV1,
    PaymentRequirements,
    Reason,
    Refusal,
    decode_payment_header,
    encode_json,
    match_offer,
    v1_as_v2,
)
from payments.codec import convert

log = logging.getLogger("worldgate.binding")

Bound = tuple[PaymentPayload, PaymentRequirements]  # the payment, and the route's offer it pays
RESOURCE_MISMATCH = "resource_mismatch"


def names_resource(url: str, resources: Sequence[str]) -> bool:
    """Whether a payload's `resource.url` names one of `resources`: an HTTP path (any host and prefix, as
    a proxy or WORLDGATE_PUBLIC_URL may put one before it) or an exact non-HTTP URL (mcp://tool/<name>)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    for resource in resources:
        if resource.startswith("/"):
            if parts.scheme in ("http", "https") and (parts.path == resource or parts.path.endswith(resource)):
                return True
        elif url == resource:
            return True
    return False


def _for_resource(bound: Bound | Refusal, resources: Sequence[str] | None) -> Bound | Refusal:
    if isinstance(bound, Refusal) or resources is None:
        return bound
    named = bound[0].resource
    if named is not None and not names_resource(named.url, resources):
        return Refusal(RESOURCE_MISMATCH, f"this payment was made for {named.url[:200]}, not this resource")
    return bound


def bind(
    decoded: PaymentPayload | PaymentPayloadV1 | Refusal, offers: Sequence[PaymentRequirements]
) -> Bound | Refusal:
    """A decoded payment bound to one of `offers`: v1 by its scheme and network, v2 by `accepted`."""
    if isinstance(decoded, Refusal):
        return decoded
    if isinstance(decoded, PaymentPayloadV1):
        payload = v1_as_v2(decoded, list(offers))
        return payload if isinstance(payload, Refusal) else (payload, payload.accepted)
    offer = match_offer(decoded.accepted, list(offers))
    return offer if isinstance(offer, Refusal) else (decoded, offer)


def bind_header(
    header: bytes,
    version: int,
    offers: Sequence[PaymentRequirements],
    *,
    bytes_max: int,
    resources: Sequence[str] | None = None,
) -> Bound | Refusal:
    """An HTTP payment header (`version` 2: PAYMENT-SIGNATURE, 1: X-PAYMENT), size-capped, decoded and bound;
    with `resources`, a payload naming its resource must name one of them (`names_resource`)."""
    decoded = decode_payment_header(header.decode("latin-1"), version=version, bytes_max=bytes_max)
    return _for_resource(bind(decoded, offers), resources)


def bind_object(
    raw: Any,
    offers: Sequence[PaymentRequirements],
    *,
    bytes_max: int,
    name: str,
    resources: Sequence[str] | None = None,
) -> Bound | Refusal:
    """A payment sent as a JSON object (x402 v2 only), size-capped, decoded and bound; `name` says where it
    came from in refusals, `resources` as in `bind_header`."""
    return _for_resource(bind(_decode_object(raw, bytes_max=bytes_max, name=name), offers), resources)


def _decode_object(raw: Any, *, bytes_max: int, name: str) -> PaymentPayload | Refusal:
    if not isinstance(raw, dict):
        return Refusal(Reason.INVALID_PAYLOAD, f"{name} must be an x402 v2 PaymentPayload object")
    try:
        size = len(encode_json(raw))
    except RecursionError:  # nested deeper than any payment: msgspec cannot even measure it
        return Refusal(Reason.INVALID_PAYLOAD, f"{name} is nested too deeply")
    if size > bytes_max:
        return Refusal(Reason.PAYMENT_HEADER_TOO_LARGE, f"{name} is over {bytes_max} bytes")
    try:
        payload: PaymentPayload = convert(raw, PaymentPayload)
    except msgspec.ValidationError as exc:
        return Refusal(Reason.INVALID_PAYLOAD, f"{name} does not fit the x402 v2 payload: {exc}")
    if payload.x402_version != 2:
        return Refusal(Reason.INVALID_X402_VERSION, f"x402Version {payload.x402_version}: MCP payments are v2")
    return payload


def refused(paid: PaidRoute, refusal: Refusal, **context: Any) -> Refusal:
    """Count and log a payment refused before the checkout (it could not be bound); `context` adds log fields."""
    metrics.REFUSED(refusal.reason).inc()
    log.info("payment refused", extra={"route": paid.path, "reason": refusal.reason, **context})
    return refusal
