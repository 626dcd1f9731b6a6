"""The batch-settlement offer: `amount` is the price of one request, `extra` names our channel terms.

Built beside `exact`'s through the same `NetworkTerms`/`build_offer`, so `match_offer` binds a
client's `accepted` to it the same way (every `extra` key we set must come back with our value).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ...codec import PaymentRequirements
from ...offers import NetworkTerms, build_offer
from .digests import MAX_WITHDRAW_DELAY, MIN_WITHDRAW_DELAY, ZERO_ADDRESS
from .wire import SCHEME

ASSET_TRANSFER_METHOD = "eip3009"  # ERC-3009 deposits only: Permit2 ones are refused
WITHDRAW_DELAY_DEFAULT = MIN_WITHDRAW_DELAY  # the client can pull its deposit back 15 min after asking
MIN_DEPOSIT_MULTIPLIER = 10  # the Python reference server's default announcement: ten requests' worth


def offer_extra(
    receiver_authorizer: str,
    name: str,
    version: str,
    *,
    withdraw_delay: int = WITHDRAW_DELAY_DEFAULT,
    min_deposit: int | None = None,
) -> dict[str, Any]:
    """`extra` of a batch offer. `name`/`version` are the token's EIP-712 domain (the deposit is an ERC-3009
    authorization under it); `minDeposit` is a hint the Python client honours when it is ≥ the price."""
    if receiver_authorizer.lower() == ZERO_ADDRESS:
        raise ValueError("receiverAuthorizer must be a non-zero address (clients refuse a zero one)")
    if not MIN_WITHDRAW_DELAY <= withdraw_delay <= MAX_WITHDRAW_DELAY or isinstance(withdraw_delay, bool):
        raise ValueError(f"withdrawDelay must be an int in [{MIN_WITHDRAW_DELAY}, {MAX_WITHDRAW_DELAY}] s")
    extra: dict[str, Any] = {
        "receiverAuthorizer": receiver_authorizer,
        "withdrawDelay": withdraw_delay,  # an int: the Python client turns anything else into 900
        "name": name,
        "version": version,
        "assetTransferMethod": ASSET_TRANSFER_METHOD,  # said outright, though clients default to it
    }
    if min_deposit is not None:
        extra["minDeposit"] = str(min_deposit)
    return extra


def batch_terms(
    terms: NetworkTerms,
    receiver_authorizer: str,
    *,
    withdraw_delay: int = WITHDRAW_DELAY_DEFAULT,
) -> NetworkTerms:
    """Batch terms from a network's `exact` terms: same asset, payTo and EIP-712 domain (its `extra`)."""
    name, version = terms.extra.get("name"), terms.extra.get("version")
    if not isinstance(name, str) or not isinstance(version, str):
        raise ValueError(f"{terms.network}: the terms carry no extra.name / extra.version (the token's domain)")
    extra = offer_extra(receiver_authorizer, name, version, withdraw_delay=withdraw_delay)
    return dataclasses.replace(terms, scheme=SCHEME, extra=extra)


def build_batch_offer(terms: NetworkTerms, price_atomic: int, *, min_deposit: int | None = None) -> PaymentRequirements:
    """The batch offer for one route: `amount` = the price per request (the most one voucher may add).
    `minDeposit` defaults to ten requests' worth; pass 0 to leave it out."""
    if terms.scheme != SCHEME:
        raise ValueError(f"terms are for {terms.scheme!r}, not {SCHEME!r}: build them with batch_terms()")
    offer = build_offer(terms, price_atomic)
    deposit = price_atomic * MIN_DEPOSIT_MULTIPLIER if min_deposit is None else min_deposit
    if deposit:
        offer.extra["minDeposit"] = str(deposit)
    return offer
