"""The pricing table: which paths are paid, at what exact price, with which offers and quote.

Prices come from the registry's tier for each stream, overridden per path or per route in
settings; every price is parsed once at startup into atomic units (a price finer than the token's
decimals refuses to start). The 402 quote of a path is encoded once per public base URL and kept
in a bounded LRU, so an unpaid request costs a dict lookup and a write.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from adapters import Registry, Sharing, Stream
from payments import (
    NetworkTerms,
    PaymentRequired,
    PaymentRequirements,
    PriceError,
    ResourceInfo,
    build_offer,
    encode_header,
    encode_json,
    to_atomic,
    to_builtins,
    to_display,
)

from .queries import Problem, stream_query, world_query

STREAM_ROUTE = "GET /v1/streams/{id}"
STREAM_PREFIX = "/v1/streams/"
WORLD_ROUTE = "GET /v1/world"
WORLD_PATH = "/v1/world"
WORLD_PRICE_TIER = "premium"
QUOTES_MAX = 4096  # distinct (base URL, path) quotes kept encoded


class PricingError(ValueError):
    """The pricing table cannot be built from the settings (unknown tier, inexact price)."""


def revenue_account(stream_id: str | None, resource: str) -> str:
    """The journal's revenue account of a sale: its stream, or for a composite route its path (v1.world)."""
    return stream_id or resource.strip("/").replace("/", ".")


@dataclass(frozen=True)
class PaidRoute:
    route: str  # the route template, e.g. "GET /v1/streams/{id}"
    path: str  # the concrete path priced
    stream: Stream | None
    amount_atomic: int
    description: str
    offers: tuple[PaymentRequirements, ...]
    check: Callable[[Mapping[str, str]], Problem | None]  # the query rules, run before any payment
    mime_type: str = "application/json"

    @property
    def revenue_account(self) -> str:
        return revenue_account(self.stream.id if self.stream else None, self.path)


@dataclass(frozen=True)
class Quote:
    header: str  # PAYMENT-REQUIRED value
    body: bytes  # the same PaymentRequired as JSON, plus a human hint


def _stream_check(stream: Stream) -> Callable[[Mapping[str, str]], Problem | None]:
    def check(params: Mapping[str, str]) -> Problem | None:
        parsed = stream_query(stream, params)
        return parsed if isinstance(parsed, Problem) else None

    return check


def _world_check(params: Mapping[str, str]) -> Problem | None:
    parsed = world_query(params)
    return parsed if isinstance(parsed, Problem) else None


class Pricing:
    def __init__(
        self,
        registry: Registry,
        terms: list[NetworkTerms],
        tiers: Mapping[str, str | int],
        overrides: Mapping[str, str | int],
    ) -> None:
        if not terms:
            raise PricingError("no payment network is configured")
        self.terms = terms
        self._decimals = min(t.decimals for t in terms)
        self._offers: dict[int, tuple[PaymentRequirements, ...]] = {}
        self._routes: dict[str, PaidRoute] = {}
        tier_atomic = {name: self._atomic(price, f"tier {name!r}") for name, price in tiers.items()}
        template_override = overrides.get(STREAM_ROUTE) or overrides.get(STREAM_PREFIX + "{id}")
        for stream in registry.all():
            if stream.sharing is Sharing.NOT_SHARED:
                continue
            path = STREAM_PREFIX + stream.id
            if path in overrides:
                amount = self._atomic(overrides[path], path)
            elif template_override is not None:
                amount = self._atomic(template_override, STREAM_ROUTE)
            elif stream.price_tier in tier_atomic:
                amount = tier_atomic[stream.price_tier]
            else:
                raise PricingError(f"stream {stream.id} has price tier {stream.price_tier!r}, which has no price")
            self._routes[path] = PaidRoute(
                route=STREAM_ROUTE,
                path=path,
                stream=stream,
                amount_atomic=amount,
                description=f"{stream.name}: {stream.description}",
                offers=self._offers_for(amount),
                check=_stream_check(stream),
            )
        world = overrides.get(WORLD_PATH) or overrides.get(WORLD_ROUTE)
        if world is None and WORLD_PRICE_TIER not in tier_atomic:
            raise PricingError(f"/v1/world is priced by tier {WORLD_PRICE_TIER!r}, which has no price")
        world_amount = self._atomic(world, WORLD_PATH) if world is not None else tier_atomic[WORLD_PRICE_TIER]
        self._routes[WORLD_PATH] = PaidRoute(
            route=WORLD_ROUTE,
            path=WORLD_PATH,
            stream=None,
            amount_atomic=world_amount,
            description="The world around a point: weather, air quality, quakes, disasters, natural events, "
            "the ISS and space weather, in one answer",
            offers=self._offers_for(world_amount),
            check=_world_check,
        )
        self._quotes: OrderedDict[tuple[str, str], Quote] = OrderedDict()

    def _atomic(self, price: str | int, what: str) -> int:
        try:
            return to_atomic(price, self._decimals)
        except PriceError as exc:
            raise PricingError(f"price of {what}: {exc}") from None

    def _offers_for(self, amount: int) -> tuple[PaymentRequirements, ...]:
        if amount not in self._offers:
            self._offers[amount] = tuple(build_offer(t, amount) for t in self.terms)
        return self._offers[amount]

    def lookup(self, path: str) -> PaidRoute | None:
        return self._routes.get(path)

    def routes(self) -> list[PaidRoute]:
        return list(self._routes.values())

    def display(self, amount_atomic: int) -> str:
        return to_display(amount_atomic, self._decimals)

    def payment_required(self, paid: PaidRoute, base_url: str, error: str | None) -> PaymentRequired:
        return PaymentRequired(
            x402_version=2,
            error=error,
            resource=ResourceInfo(url=base_url + paid.path, description=paid.description, mime_type=paid.mime_type),
            accepts=list(paid.offers),
        )

    def quote(self, paid: PaidRoute, base_url: str) -> Quote:
        key = (base_url, paid.path)
        quote = self._quotes.get(key)
        if quote is not None:
            self._quotes.move_to_end(key)
            return quote
        quote = self.encode(paid, base_url, "Payment required", None)
        self._quotes[key] = quote
        if len(self._quotes) > QUOTES_MAX:
            self._quotes.popitem(last=False)
        return quote

    def encode(self, paid: PaidRoute, base_url: str, error: str, message: str | None) -> Quote:
        required = self.payment_required(paid, base_url, error)
        body = to_builtins(required)
        networks = ", ".join(o.network for o in paid.offers)
        body["hint"] = (
            f"This resource costs {self.display(paid.amount_atomic)} USDC ({paid.amount_atomic} atomic units) per "
            f"request, payable on {networks}. Retry the same request with a PAYMENT-SIGNATURE header (x402 v2): an "
            "x402 client such as the `x402` Python package does this for you. Prices of every stream: GET /v1/streams."
        )
        if message:
            body["message"] = message
        return Quote(header=encode_header(required), body=encode_json(body))
