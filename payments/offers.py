"""Offers: what a route accepts on each network, and the strict match of a client's `accepted` to them.

The EIP-3009 signature binds payer, payTo, amount, window and nonce, not the URL, so binding a
payment to a route is the server's job: `accepted` must equal one of this route's own offers in
scheme, network, amount, asset, payTo and maxTimeoutSeconds, and carry every `extra` key we set
with our value. Verification then runs against our copy of the offer, never the client's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .codec import PaymentRequirements
from .errors import Reason, Refusal

MAX_TIMEOUT_SECONDS_DEFAULT = 300  # the reference SDK's default; the client sets validBefore = now + this


@dataclass(frozen=True)
class NetworkTerms:
    """How worldgate is paid on one network: asset, payee and the scheme data clients need."""

    network: str
    asset: str
    pay_to: str
    decimals: int = 6
    extra: dict[str, Any] = field(default_factory=dict)
    max_timeout_seconds: int = MAX_TIMEOUT_SECONDS_DEFAULT
    scheme: str = "exact"


def build_offer(terms: NetworkTerms, amount_atomic: int) -> PaymentRequirements:
    return PaymentRequirements(
        scheme=terms.scheme,
        network=terms.network,
        amount=str(amount_atomic),
        asset=terms.asset,
        pay_to=terms.pay_to,
        max_timeout_seconds=terms.max_timeout_seconds,
        extra=dict(terms.extra),
    )


def _same_address(ours: str, theirs: str, case_insensitive: bool) -> bool:
    return ours.lower() == theirs.lower() if case_insensitive else ours == theirs


def _matches(offer: PaymentRequirements, accepted: PaymentRequirements) -> bool:
    case_insensitive = offer.network.startswith("eip155:")  # EVM addresses may be echoed in any checksum case
    return (
        accepted.scheme == offer.scheme
        and accepted.network == offer.network
        and accepted.amount == offer.amount
        and _same_address(offer.asset, accepted.asset, case_insensitive)
        and _same_address(offer.pay_to, accepted.pay_to, case_insensitive)
        and accepted.max_timeout_seconds == offer.max_timeout_seconds
        and all(accepted.extra.get(key) == value for key, value in offer.extra.items())
    )


def match_offer(accepted: PaymentRequirements, offers: list[PaymentRequirements]) -> PaymentRequirements | Refusal:
    """Our offer that `accepted` echoes exactly, or a refusal naming the first field that differs."""
    for offer in offers:
        if _matches(offer, accepted):
            return offer
    same_network = [o for o in offers if o.network == accepted.network and o.scheme == accepted.scheme]
    if not same_network:
        networks = ", ".join(sorted({o.network for o in offers}))
        return Refusal(
            Reason.OFFER_MISMATCH,
            f"this route takes {networks}; the payment is for {accepted.scheme} on {accepted.network}",
        )
    offer = same_network[0]
    for name, ours, theirs in (
        ("amount", offer.amount, accepted.amount),
        ("asset", offer.asset.lower(), accepted.asset.lower()),
        ("payTo", offer.pay_to.lower(), accepted.pay_to.lower()),
        ("maxTimeoutSeconds", offer.max_timeout_seconds, accepted.max_timeout_seconds),
    ):
        if ours != theirs:
            return Refusal(Reason.OFFER_MISMATCH, f"`accepted.{name}` is not this route's ({ours})")
    return Refusal(Reason.OFFER_MISMATCH, "`accepted.extra` does not carry this route's extra")
