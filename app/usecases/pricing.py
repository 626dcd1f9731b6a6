"""The pricing table: which paths are paid, at what exact price, with which offers, query rules and quote.

Prices come from the registry's tier for each stream, overridden per path or per route in
settings; every price is parsed once at startup into atomic units (a price finer than the token's
decimals refuses to start). Each paid route also carries its query parameters (app/usecases/params.py:
the one description the 402's `bazaar` extension, /openapi.json and /llms.txt are built from), an
example answer (app/usecases/examples.py), and its x402 `extensions` declarations, built once per
route by the builders in `EXTENSIONS` (name → declaration). The 402 quote of a path is encoded once
per public base URL and kept in a bounded LRU, so an unpaid request costs a dict lookup and a write.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any
from urllib.parse import parse_qsl

from adapters import Coverage, Registry, Sharing, Stream, live_coverage
from adapters.history import recorded
from adapters.live import live as has_live_feed
from app.usecases.examples import stream_example, world_example
from app.usecases.grid_pricing import grid_price
from app.usecases.history_pricing import history_terms
from app.usecases.history_queries import HistoryBounds
from app.usecases.live_pricing import LiveTerms, live_terms
from app.usecases.params import (
    GRID_STREAM_PARAMS,
    POINT_STREAM_PARAMS,
    POINT_STREAM_REFUSED,
    STREAM_PARAMS,
    WORLD_PARAMS,
    WORLD_REFUSED,
    QueryParam,
    query_schema,
    strict_query,
)
from app.usecases.paths import STREAM_PREFIX, STREAM_ROUTE, WORLD_PATH, WORLD_ROUTE
from app.usecases.queries import Problem, stream_query, world_query
from ledger import idempotency
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
from payments.networks import BASE_MAINNET, BASE_SEPOLIA, SOLANA_DEVNET, SOLANA_MAINNET

WORLD_PRICE_TIER = "premium"
QUOTES_MAX = 4096  # distinct (base URL, path) quotes kept encoded
ASSET_SYMBOL = "USDC"  # every offer is in USDC (settings refuse other assets' domains)
HOW_TO_PAY_README = 'README.md, section "Try it as a new user"'

# CAIP-2 ids as a person reads them (the 402 body, /llms.txt, /openapi.json); others show as their id.
NETWORK_NAMES: Mapping[str, str] = {
    BASE_MAINNET: "Base",
    BASE_SEPOLIA: "Base Sepolia",
    SOLANA_MAINNET: "Solana",
    SOLANA_DEVNET: "Solana devnet",
}


class PricingError(ValueError):
    """The pricing table cannot be built from the settings (unknown tier, inexact price)."""


def revenue_account(stream_id: str | None, resource: str) -> str:
    """The journal's revenue account of a sale: its stream, or for a composite route its path (v1.world)."""
    return stream_id or resource.strip("/").replace("/", ".")


def network_name(network: str) -> str:
    return NETWORK_NAMES.get(network, network)


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
    price_tier: str | None = None  # the tier its price came from; None when settings priced it directly
    params: tuple[QueryParam, ...] = ()  # its query parameters, as declared to clients
    refused_params: tuple[str, ...] = ()  # known names its rules refuse in their own words (any other: unknown)
    example: Mapping[str, Any] | None = None  # an example 200 answer
    extensions: Mapping[str, Any] = field(default_factory=dict)  # x402 `extensions`: name → declaration
    # a price that follows the query (a history range): params → (amount, description); None: one price
    price_for: Callable[[Mapping[str, str]], tuple[int, str]] | None = None

    def query(self, params: list[tuple[str, str]]) -> dict[str, str] | Problem:
        """The query's pairs checked before any quote: strictly (no unknown or repeated name), then the rules."""
        parsed = strict_query(params, self.accepted, self.refused_params)
        if isinstance(parsed, Problem):
            return parsed
        problem = self.check(parsed)
        return parsed if problem is None else problem

    def query_string(self, raw: bytes) -> dict[str, str] | Problem:
        """`query` of an HTTP query string (decoded as Starlette decodes it, so the handler reads the same)."""
        return self.query(parse_qsl(raw.decode("latin-1"), keep_blank_values=True) if raw else [])

    @cached_property
    def accepted(self) -> tuple[str, ...]:
        """The query parameters it takes (each at most once)."""
        return tuple(p.name for p in self.params)

    @property
    def networks(self) -> tuple[str, ...]:
        """The networks it can be paid on, once each (a network may offer several schemes)."""
        return tuple(dict.fromkeys(o.network for o in self.offers))

    @property
    def revenue_account(self) -> str:
        return revenue_account(self.stream.id if self.stream else None, self.path)

    @property
    def on_sale(self) -> bool:
        """Sold right now: a stream in maintenance is priced (and listed) but answers 503 before any quote."""
        return self.stream is None or self.stream.sharing is Sharing.OK


ExtensionBuilder = Callable[[PaidRoute], Mapping[str, Any] | None]  # a route → its declaration, or None


def bazaar(paid: PaidRoute) -> dict[str, Any]:
    """The x402 v2 `bazaar` discovery declaration of a paid GET: `info` (an example query and answer) and
    the JSON Schema (2020-12) that validates it, in the shape the reference SDK's
    `declare_discovery_extension` produces and its facilitator code catalogs."""
    info: dict[str, Any] = {
        "input": {
            "type": "http",
            "method": "GET",
            "queryParams": {p.name: p.example for p in paid.params if p.in_example},
        }
    }
    input_schema: dict[str, Any] = {
        "type": "object",
        "properties": {
            "type": {"type": "string", "const": "http"},
            "method": {"type": "string", "enum": ["GET", "HEAD"]},
            "queryParams": query_schema(paid.params),
        },
        "required": ["type", "method"],
        "additionalProperties": False,
    }
    properties: dict[str, Any] = {"input": input_schema}
    if paid.example is not None:
        info["output"] = {"type": "json", "example": paid.example}
        properties["output"] = {
            "type": "object",
            "properties": {"type": {"type": "string"}, "example": {"type": "object"}},
            "required": ["type"],
        }
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": properties,
        "required": ["input"],
    }
    return {"info": info, "schema": schema}


PAYMENT_IDENTIFIER = "payment-identifier"
_PAYMENT_IDENTIFIER_DECLARATION = {
    "info": {"required": False},  # optional: a client that sends none pays and is served as before
    "schema": {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {
            "required": {"type": "boolean"},
            "id": {
                "type": "string",
                "minLength": idempotency.ID_LENGTH_MIN,
                "maxLength": idempotency.ID_LENGTH_MAX,
                "pattern": idempotency.ID_PATTERN,
            },
        },
        "required": ["required"],
    },
}


def payment_identifier_declaration(paid: PaidRoute) -> dict[str, Any]:
    """The x402 `payment-identifier` declaration: a client may add an id that makes its retries idempotent
    (app/usecases/retries.py replays the stored answer to the same payment, 409s another)."""
    return _PAYMENT_IDENTIFIER_DECLARATION


# The extensions every paid route declares in its 402 (and clients echo in their payment). Add one by
# name here, or pass `extensions=` to Pricing; a builder returning None leaves that route without it.
EXTENSIONS: Mapping[str, ExtensionBuilder] = {"bazaar": bazaar, PAYMENT_IDENTIFIER: payment_identifier_declaration}


@dataclass(frozen=True)
class Quote:
    header: str  # PAYMENT-REQUIRED value
    body: bytes  # the same PaymentRequired as JSON, plus `hint` and `about` for people


def _stream_check(stream: Stream, coverage: Coverage) -> Callable[[Mapping[str, str]], Problem | None]:
    def check(params: Mapping[str, str]) -> Problem | None:
        parsed = stream_query(stream, params, coverage)
        return parsed if isinstance(parsed, Problem) else None

    return check


def _stream_params(stream: Stream) -> tuple[QueryParam, ...]:
    if stream.point:
        return POINT_STREAM_PARAMS
    return GRID_STREAM_PARAMS if stream.resolutions else STREAM_PARAMS


def _world_check(coverage: Coverage) -> Callable[[Mapping[str, str]], Problem | None]:
    def check(params: Mapping[str, str]) -> Problem | None:
        parsed = world_query(params, coverage)
        return parsed if isinstance(parsed, Problem) else None

    return check


class Pricing:
    def __init__(
        self,
        registry: Registry,
        terms: list[NetworkTerms],
        tiers: Mapping[str, str | int],
        overrides: Mapping[str, str | int],
        *,
        extensions: Mapping[str, ExtensionBuilder] = EXTENSIONS,
        coverage: Coverage = live_coverage,
        history: HistoryBounds | None = None,  # the time machine's routes, for the streams it records
        live: LiveTerms | None = None,  # live feeds' windows (app/usecases/live_pricing.py)
    ) -> None:
        if not terms:
            raise PricingError("no payment network is configured")
        self.terms = terms
        self.replayed = coverage is not live_coverage  # point reads bounded by recordings (llms.txt says so)
        self._decimals = min(t.decimals for t in terms)
        self._extensions = extensions
        self._offers: dict[int, tuple[PaymentRequirements, ...]] = {}
        self._routes: dict[str, PaidRoute] = {}
        self._history: dict[str, PaidRoute] = {}  # apart: the discovery documents list `routes()`
        self._live: dict[str, PaidRoute] = {}
        tier_atomic = {name: self._atomic(price, f"tier {name!r}") for name, price in tiers.items()}
        template_override = overrides.get(STREAM_ROUTE) or overrides.get(STREAM_PREFIX + "{id}")
        for stream in registry.all():
            if stream.sharing is Sharing.NOT_SHARED:
                continue
            path = STREAM_PREFIX + stream.id
            tier = None
            if path in overrides:
                amount = self._atomic(overrides[path], path)
            elif template_override is not None:
                amount = self._atomic(template_override, STREAM_ROUTE)
            elif stream.price_tier in tier_atomic:
                amount, tier = tier_atomic[stream.price_tier], stream.price_tier
            else:
                raise PricingError(f"stream {stream.id} has price tier {stream.price_tier!r}, which has no price")
            description = f"{stream.name}: {stream.description}"
            self._add(
                PaidRoute(
                    route=STREAM_ROUTE,
                    path=path,
                    stream=stream,
                    amount_atomic=amount,
                    description=description,
                    offers=self._offers_for(amount),
                    check=_stream_check(stream, coverage),
                    price_tier=tier,
                    params=_stream_params(stream),
                    refused_params=POINT_STREAM_REFUSED if stream.point else (),
                    example=stream_example(stream),
                    # finer grids are priced by the cells a read can answer (app/usecases/grid_pricing.py)
                    price_for=grid_price(stream, amount, description, self.display) if stream.resolutions else None,
                )
            )
            if history is not None and recorded(stream):
                for terms in history_terms(stream, amount, tier, history, self.display):
                    self._add(PaidRoute(**terms, offers=self._offers_for(amount)), self._history)
            if live is not None and has_live_feed(stream):
                self._add_live(stream, live, amount, tier)
        world = overrides.get(WORLD_PATH) or overrides.get(WORLD_ROUTE)
        if world is None and WORLD_PRICE_TIER not in tier_atomic:
            raise PricingError(f"/v1/world is priced by tier {WORLD_PRICE_TIER!r}, which has no price")
        world_amount = self._atomic(world, WORLD_PATH) if world is not None else tier_atomic[WORLD_PRICE_TIER]
        self._add(
            PaidRoute(
                route=WORLD_ROUTE,
                path=WORLD_PATH,
                stream=None,
                amount_atomic=world_amount,
                description="The world around a point: weather, air quality, quakes, disasters, natural events, "
                "the ISS and space weather, in one answer",
                offers=self._offers_for(world_amount),
                check=_world_check(coverage),
                price_tier=WORLD_PRICE_TIER if world is None else None,
                params=WORLD_PARAMS,
                refused_params=WORLD_REFUSED,
                example=world_example(),
            )
        )
        self._quotes: OrderedDict[tuple[str, str, int, str], Quote] = OrderedDict()

    def _add(self, paid: PaidRoute, table: dict[str, PaidRoute] | None = None) -> None:
        """Price a route, with the extensions its 402 declares (built once, here)."""
        declared = {name: d for name, build in self._extensions.items() if (d := build(paid)) is not None}
        (self._routes if table is None else table)[paid.path] = replace(paid, extensions=declared)

    def _add_live(self, stream: Stream, live: LiveTerms, amount: int, tier: str | None) -> None:
        priced = tier is not None and tier in live.tier_prices
        window = self._atomic(live.tier_prices[tier], f"live tier {tier!r}") if priced else amount * live.multiple
        for terms in live_terms(stream, window, tier if priced else None, live.window_s):
            scheme = terms.pop("scheme", None)
            offers = tuple(o for o in self._offers_for(window) if scheme is None or o.scheme == scheme)
            if offers:
                self._add(PaidRoute(**terms, offers=offers), self._live)

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
        return self._routes.get(path) or self._history.get(path) or self._live.get(path)

    def for_query(self, paid: PaidRoute, params: Mapping[str, str]) -> PaidRoute:
        """The route as priced for this (already checked) query: most have one price; a history range costs
        what it asks, and its 402 says so."""
        if paid.price_for is None:
            return paid
        amount, description = paid.price_for(params)
        return replace(paid, amount_atomic=amount, offers=self._offers_for(amount), description=description)

    def history_routes(self) -> list[PaidRoute]:
        """The time machine's routes (/history and /at per recorded stream)."""
        return list(self._history.values())

    def live_routes(self) -> list[PaidRoute]:
        """Live feeds' routes (/live, /live/ticket, /live/renew per live stream)."""
        return list(self._live.values())

    def routes(self) -> list[PaidRoute]:
        return list(self._routes.values())

    def routes_on_sale(self) -> list[PaidRoute]:
        """The paid routes that can be bought now, streams first in registry order, then /v1/world."""
        return [paid for paid in self._routes.values() if paid.on_sale]

    def display(self, amount_atomic: int) -> str:
        return to_display(amount_atomic, self._decimals)

    @property
    def decimals(self) -> int:
        return self._decimals

    def price(self, paid: PaidRoute) -> dict[str, Any]:
        """A route's price as people and programs read it: dollars, USDC, atomic units."""
        usdc = self.display(paid.amount_atomic)
        return {
            "usd": f"${usdc}",
            "usdc": usdc,
            "amount_atomic": str(paid.amount_atomic),
            "asset": ASSET_SYMBOL,
            "decimals": self._decimals,
        }

    def payment_required(self, paid: PaidRoute, base_url: str, error: str | None) -> PaymentRequired:
        return PaymentRequired(
            x402_version=2,
            error=error,
            resource=ResourceInfo(url=base_url + paid.path, description=paid.description, mime_type=paid.mime_type),
            accepts=list(paid.offers),
            extensions=dict(paid.extensions) or None,
        )

    def quote(self, paid: PaidRoute, base_url: str) -> Quote:
        key = (base_url, paid.path, paid.amount_atomic, paid.description)  # a history range: its own price
        quote = self._quotes.get(key)
        if quote is not None:
            self._quotes.move_to_end(key)
            return quote
        quote = self.encode(paid, base_url, "Payment required", None)
        self._quotes[key] = quote
        if len(self._quotes) > QUOTES_MAX:
            self._quotes.popitem(last=False)
        return quote

    def about(self, paid: PaidRoute, base_url: str) -> dict[str, Any]:
        """What a person reading a 402 wants to know, outside the x402 fields (so the header is unchanged)."""
        return {
            "description": paid.description,
            "price": self.price(paid),
            "networks": [
                {
                    "network": network,
                    "name": network_name(network),
                    "schemes": [o.scheme for o in paid.offers if o.network == network],
                }
                for network in paid.networks
            ],
            "how_to_pay": {
                "guide": base_url + "/llms.txt",
                "readme": HOW_TO_PAY_README,
                "header": "PAYMENT-SIGNATURE",
            },
        }

    def encode(self, paid: PaidRoute, base_url: str, error: str, message: str | None) -> Quote:
        required = self.payment_required(paid, base_url, error)
        body = to_builtins(required)
        networks = ", ".join(paid.networks)
        body["hint"] = (
            f"This resource costs {self.display(paid.amount_atomic)} USDC ({paid.amount_atomic} atomic units) per "
            f"request, payable on {networks}. Retry the same request with a PAYMENT-SIGNATURE header (x402 v2): an "
            "x402 client such as the `x402` Python package does this for you. Prices of every stream: GET /v1/streams."
        )
        body["about"] = self.about(paid, base_url)
        if message is not None:
            # A refusal's body says what went wrong and carries no data, not even the example answer of the
            # `bazaar` declaration; its header keeps every extension, for a client that pays again from it.
            body.pop("extensions", None)
            if message:
                body["message"] = message
        return Quote(header=encode_header(required), body=encode_json(body))
