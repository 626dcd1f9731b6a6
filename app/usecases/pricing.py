"""The pricing table: which paths are paid, at what exact price, with which offers, query rules and quote.

Prices come from the registry's tier for each stream, overridden per path or per route in
settings; every price is parsed once at startup into atomic units (a price finer than the token's
decimals refuses to start). Each paid route also carries its query parameters (the one description
the 402's `bazaar` extension, /openapi.json and /llms.txt are built from), an example answer, and
its x402 `extensions` declarations, built once per route by the builders in `EXTENSIONS` (name →
declaration). The 402 quote of a path is encoded once per public base URL and kept in a bounded
LRU, so an unpaid request costs a dict lookup and a write.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from starlette.types import Scope

from adapters import Registry, Sharing, Stream
from adapters.filters import LIMIT_DEFAULT, LIMIT_MAX, MAX_AGE_S_MAX, MAX_AGE_S_MIN, RADIUS_KM_MAX
from app.usecases.queries import WORLD_RADIUS_KM_DEFAULT, WORLD_RADIUS_KM_MAX, Problem, stream_query, world_query
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

STREAM_ROUTE = "GET /v1/streams/{id}"
STREAM_PREFIX = "/v1/streams/"
WORLD_ROUTE = "GET /v1/world"
WORLD_PATH = "/v1/world"
WORLD_PRICE_TIER = "premium"
QUOTES_MAX = 4096  # distinct (base URL, path) quotes kept encoded
ASSET_SYMBOL = "USDC"  # every offer is in USDC (settings refuse other assets' domains)
HOW_TO_PAY_README = 'README.md, section "Try it as a new user"'
STREAM_RADIUS_KM_DEFAULT = 100.0  # adapters.filters.parse's radius when lat/lon come without one
BBOX_PATTERN = r"^-?\d+(\.\d+)?(,-?\d+(\.\d+)?){3}$"

# CAIP-2 ids as a person reads them (the 402 body, /llms.txt, /openapi.json); others show as their id.
NETWORK_NAMES: Mapping[str, str] = {
    BASE_MAINNET: "Base",
    BASE_SEPOLIA: "Base Sepolia",
    SOLANA_MAINNET: "Solana",
    SOLANA_DEVNET: "Solana devnet",
}

_HOST = re.compile(r"^[A-Za-z0-9.\-]+(?::\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](?::\d{1,5})?$")


class PricingError(ValueError):
    """The pricing table cannot be built from the settings (unknown tier, inexact price)."""


def revenue_account(stream_id: str | None, resource: str) -> str:
    """The journal's revenue account of a sale: its stream, or for a composite route its path (v1.world)."""
    return stream_id or resource.strip("/").replace("/", ".")


def network_name(network: str) -> str:
    return NETWORK_NAMES.get(network, network)


def public_base_url(scope: Scope, public_url: str | None) -> str:
    """The absolute base of the gateway's URLs (quotes' `resource.url`, discovery documents): the
    configured public URL, else the request's scheme and Host; a missing or malformed Host falls back
    to the server's own address, so a client cannot write arbitrary text into a quote."""
    if public_url:
        return public_url.rstrip("/")
    host = next((bytes(v).decode("latin-1") for k, v in scope["headers"] if k == b"host"), "")
    if not host or len(host) > 255 or not _HOST.match(host):
        server = scope.get("server") or ("localhost", None)
        host = f"{server[0]}:{server[1]}" if server[1] else str(server[0])
    return f"{scope.get('scheme', 'http')}://{host}"


def _compact(value: float | int) -> float | int:
    """-90.0 → -90: the same JSON number, fewer bytes in a header."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


@dataclass(frozen=True)
class QueryParam:
    """One query parameter of a paid route: what its 402 (`bazaar`), /openapi.json and /llms.txt declare.
    The rules themselves are in app/usecases/queries.py and adapters/filters.py; these values are read from there."""

    name: str
    type: str  # JSON Schema type of the value: "number", "integer" or "string"
    description: str
    example: float | int | str
    required: bool = False
    minimum: float | None = None
    maximum: float | None = None
    default: float | int | None = None
    pattern: str | None = None
    in_example: bool = True  # part of the route's example query (bbox is not: it excludes lat/lon)

    def schema(self, *, full: bool = False) -> dict[str, Any]:
        """Its JSON Schema; `full` adds the default, the description and the example (OpenAPI), the
        short form (the 402 header, where bytes count) keeps the type and the bounds."""
        schema: dict[str, Any] = {"type": self.type}
        if self.minimum is not None:
            schema["minimum"] = _compact(self.minimum)
        if self.maximum is not None:
            schema["maximum"] = _compact(self.maximum)
        if self.pattern is not None:
            schema["pattern"] = self.pattern
        if full:
            if self.default is not None:
                schema["default"] = _compact(self.default)
            schema["description"] = self.description
            schema["examples"] = [self.example]
        return schema


_LAT = QueryParam("lat", "number", "Latitude in degrees (WGS 84).", 48.85, minimum=-90, maximum=90)
_LON = QueryParam("lon", "number", "Longitude in degrees (WGS 84).", 2.35, minimum=-180, maximum=180)
_BBOX = QueryParam(
    "bbox",
    "string",
    "Bounding box min_lon,min_lat,max_lon,max_lat in degrees; min_lon > max_lon crosses the antimeridian. "
    "Not with lat/lon/radius_km.",
    "-10,35,30,60",
    pattern=BBOX_PATTERN,
    in_example=False,
)
_RADIUS = QueryParam(
    "radius_km",
    "number",
    f"Radius around lat/lon in km (needs lat and lon; default {STREAM_RADIUS_KM_DEFAULT:g}).",
    1000,
    minimum=0,
    maximum=RADIUS_KM_MAX,
    default=STREAM_RADIUS_KM_DEFAULT,
)
_LIMIT = QueryParam(
    "limit",
    "integer",
    f"At most this many records, nearest first around a point (default {LIMIT_DEFAULT}).",
    10,
    minimum=1,
    maximum=LIMIT_MAX,
    default=LIMIT_DEFAULT,
)
_MAX_AGE = QueryParam(
    "max_age",
    "number",
    "The oldest data you will pay for, in seconds: older cached data is refetched, and if that fails the "
    "answer is a 503 and nothing is charged.",
    600,
    minimum=MAX_AGE_S_MIN,
    maximum=MAX_AGE_S_MAX,
)
_AT_POINT = "; required: this stream is read at that point"
STREAM_PARAMS = (_BBOX, _LAT, _LON, _RADIUS, _LIMIT, _MAX_AGE)
POINT_STREAM_PARAMS = (  # bbox and radius_km are refused: the stream is read at one point
    replace(_LAT, required=True, description=_LAT.description[:-1] + _AT_POINT + "."),
    replace(_LON, required=True, description=_LON.description[:-1] + _AT_POINT + "."),
    _LIMIT,
    _MAX_AGE,
)
POINT_STREAM_REFUSED = ("bbox", "radius_km")
WORLD_REFUSED = ("bbox",)
WORLD_PARAMS = (
    replace(_LAT, required=True, description="Latitude of the point the picture is of, in degrees (WGS 84)."),
    replace(_LON, required=True, description="Longitude of the point the picture is of, in degrees (WGS 84)."),
    replace(
        _RADIUS,
        description=f"Radius for earthquakes, disaster alerts and natural events, in km "
        f"(default {WORLD_RADIUS_KM_DEFAULT:g}; the nearest 20 of each).",
        maximum=WORLD_RADIUS_KM_MAX,
        default=WORLD_RADIUS_KM_DEFAULT,
    ),
    replace(_MAX_AGE, description="The oldest data you will pay for, in seconds, for every part of the picture."),
)


def query_schema(params: tuple[QueryParam, ...], refused: tuple[str, ...] = ()) -> dict[str, Any]:
    """A route's query parameters as one JSON Schema object, with the rules that tie them together and the
    parameters it refuses (other unknown ones are ignored by the route, so the schema allows them)."""
    schema: dict[str, Any] = {"type": "object", "properties": {p.name: p.schema() for p in params}}
    required = [p.name for p in params if p.required]
    if required:
        schema["required"] = required
    optional = {p.name for p in params if not p.required}
    if {"lat", "lon"} <= optional:  # lat and lon go together; radius_km needs them
        schema["dependentRequired"] = {
            "lat": ["lon"],
            "lon": ["lat"],
            **({"radius_km": ["lat", "lon"]} if "radius_km" in optional else {}),
        }
    if "bbox" in optional:  # either a box or a circle
        schema["dependentSchemas"] = {"bbox": {"not": {"anyOf": [{"required": ["lat"]}, {"required": ["lon"]}]}}}
    if refused:
        schema["propertyNames"] = {"not": {"enum": list(refused)}}
    return schema


# A few real-looking fields per stream for the example answers (the full set is in each adapter).
_SAMPLE_RECORDS: Mapping[str, tuple[str, dict[str, Any]]] = {
    "weather.current": ("Open-Meteo", {"temperature_c": 11.2, "wind_speed_kmh": 9.7, "cloud_cover_pct": 75}),
    "weather.grid.temperature": ("Open-Meteo", {"temperature_c": 14.6}),
    "weather.grid.wind": ("Open-Meteo", {"wind_speed_kmh": 18.4, "wind_direction_deg": 240}),
    "weather.grid.precipitation": ("Open-Meteo", {"precipitation_mm": 0.4}),
    "air.quality": ("Open-Meteo Air Quality", {"us_aqi": 42, "european_aqi": 31, "pm2_5_ugm3": 9.1}),
    "quakes.usgs": ("USGS Earthquake Hazards Program", {"magnitude": 4.6, "depth_km": 10.0, "place": "Sicily, Italy"}),
    "iss.position": ("wheretheiss.at", {"altitude_km": 419.8, "velocity_kmh": 27580.4, "visibility": "daylight"}),
    "space.kp": ("NOAA SWPC", {"kp": 2.33, "kp_index": 2, "storm_level": None}),
    "space.solar_wind": ("NOAA SWPC", {"speed_km_s": 412.3, "density_cm3": 5.1, "temperature_k": 88931}),
    "disasters.gdacs": ("GDACS", {"event_type": "EQ", "name": "Earthquake in Italy", "alert_level": "Green"}),
    "events.eonet": ("NASA EONET", {"title": "Wildfire near Etna, Italy", "category": "wildfires"}),
    "static.capitals": ("worldgate:capitals.json", {"country": "France", "iso2": "FR", "capital": "Paris"}),
    "static.volcanoes": ("worldgate:volcanoes.json", {"name": "Etna", "country": "Italy", "elevation_m": 3357}),
}
_EXAMPLE_TIME = "2026-11-22T16:25:00Z"
_EXAMPLE_FETCHED = {"fetched_at": "2026-11-22T16:29:33Z", "age_seconds": 12.0, "stale": False, "freshness": "fresh"}


def _example_record(stream_id: str, source: str | None = None, *, located: bool = True) -> dict[str, Any]:
    sample_source, fields = _SAMPLE_RECORDS.get(stream_id, (source or "", {}))
    return {
        "stream": stream_id,
        "observed_at": _EXAMPLE_TIME,
        "lat": _LAT.example if located else None,
        "lon": _LON.example if located else None,
        "fields": fields,
        "source": sample_source,
    }


def stream_example(stream: Stream) -> dict[str, Any]:
    """A 200 of GET /v1/streams/{id}, one record long (the shape app/routes.py answers)."""
    return {
        "stream": stream.id,
        "name": stream.name,
        "type": stream.type.value,
        **_EXAMPLE_FETCHED,
        "count": 1,
        "records": [_example_record(stream.id, stream.upstream)],
        "license": stream.license,
        "attribution": stream.attribution,
    }


def world_example() -> dict[str, Any]:
    """A 200 of GET /v1/world, cut short to what tells its parts apart: a point's record, the nearest records,
    the ISS's distance, the latest Kp, a part that could not be read and why (real parts also carry their
    fetched_at, age_seconds, stale and cache; the header has no room for them)."""

    def part(stream_id: str, **rest: Any) -> dict[str, Any]:
        return {"stream": stream_id, "available": True, **rest}

    return {
        "lat": _LAT.example,
        "lon": _LON.example,
        "radius_km": WORLD_RADIUS_KM_DEFAULT,
        "weather": part("weather.current", freshness="fresh", record=_example_record("weather.current")),
        "air_quality": {"stream": "air.quality", "available": False, "reason": "upstream unavailable"},
        "earthquakes": part("quakes.usgs", count=0, records=[]),
        "disasters": part("disasters.gdacs", count=0, records=[]),
        "natural_events": part("events.eonet", count=0, records=[]),
        "iss": part("iss.position", distance_km=6120.4),
        "space_weather": part("space.kp", record=_example_record("space.kp", located=False)),
    }


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
    refused_params: tuple[str, ...] = ()  # parameters it answers 400 to (the others it does not declare are ignored)
    example: Mapping[str, Any] | None = None  # an example 200 answer
    extensions: Mapping[str, Any] = field(default_factory=dict)  # x402 `extensions`: name → declaration

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
            "method": {"type": "string", "enum": ["GET", "HEAD", "DELETE"]},
            "queryParams": query_schema(paid.params, paid.refused_params),
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
    (app/usecases/checkout.py replays the stored answer to the same payment, 409s another)."""
    return _PAYMENT_IDENTIFIER_DECLARATION


# The extensions every paid route declares in its 402 (and clients echo in their payment). Add one by
# name here, or pass `extensions=` to Pricing; a builder returning None leaves that route without it.
EXTENSIONS: Mapping[str, ExtensionBuilder] = {"bazaar": bazaar, PAYMENT_IDENTIFIER: payment_identifier_declaration}


@dataclass(frozen=True)
class Quote:
    header: str  # PAYMENT-REQUIRED value
    body: bytes  # the same PaymentRequired as JSON, plus `hint` and `about` for people


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
        *,
        extensions: Mapping[str, ExtensionBuilder] = EXTENSIONS,
    ) -> None:
        if not terms:
            raise PricingError("no payment network is configured")
        self.terms = terms
        self._decimals = min(t.decimals for t in terms)
        self._extensions = extensions
        self._offers: dict[int, tuple[PaymentRequirements, ...]] = {}
        self._routes: dict[str, PaidRoute] = {}
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
            self._add(
                PaidRoute(
                    route=STREAM_ROUTE,
                    path=path,
                    stream=stream,
                    amount_atomic=amount,
                    description=f"{stream.name}: {stream.description}",
                    offers=self._offers_for(amount),
                    check=_stream_check(stream),
                    price_tier=tier,
                    params=POINT_STREAM_PARAMS if stream.point else STREAM_PARAMS,
                    refused_params=POINT_STREAM_REFUSED if stream.point else (),
                    example=stream_example(stream),
                )
            )
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
                check=_world_check,
                price_tier=WORLD_PRICE_TIER if world is None else None,
                params=WORLD_PARAMS,
                refused_params=WORLD_REFUSED,
                example=world_example(),
            )
        )
        self._quotes: OrderedDict[tuple[str, str], Quote] = OrderedDict()

    def _add(self, paid: PaidRoute) -> None:
        """Price a route, with the extensions its 402 declares (built once, here)."""
        declared = {name: d for name, build in self._extensions.items() if (d := build(paid)) is not None}
        self._routes[paid.path] = replace(paid, extensions=declared)

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

    def about(self, paid: PaidRoute, base_url: str) -> dict[str, Any]:
        """What a person reading a 402 wants to know, outside the x402 fields (so the header is unchanged)."""
        return {
            "description": paid.description,
            "price": self.price(paid),
            "networks": [{"network": o.network, "name": network_name(o.network)} for o in paid.offers],
            "how_to_pay": {
                "guide": base_url + "/llms.txt",
                "readme": HOW_TO_PAY_README,
                "header": "PAYMENT-SIGNATURE",
            },
        }

    def encode(self, paid: PaidRoute, base_url: str, error: str, message: str | None) -> Quote:
        required = self.payment_required(paid, base_url, error)
        body = to_builtins(required)
        networks = ", ".join(o.network for o in paid.offers)
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
