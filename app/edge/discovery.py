"""Discovery for agents and tools: /.well-known/x402, /openapi.json and /llms.txt.

Every document is built from the live pricing and registry (`services.pricing`, the `registry()`
getter), never from a copy: an operator's sharing change swaps both, and the next request sees it.
Each document is encoded once per (pricing, registry) pair and public base URL, and kept in a small
LRU; a new pricing or registry object empties it. They are free routes: the gate prices only the
paths the pricing lists.

What each one lists is what can be bought right now: the streams shared `ok`, and /v1/world. A
stream in maintenance stays in the free catalog (/v1/streams) but is left out here until it is
sold again; an unshared stream appears nowhere.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from adapters import Registry
from app.edge.gate import Services
from app.edge.routes import SEARCH_RESULTS_MAX, VERSION
from app.mcp.server import MCP_PATH
from app.runtime.settings import Settings
from app.usecases.pricing import (
    ASSET_SYMBOL,
    HOW_TO_PAY_README,
    PaidRoute,
    Pricing,
    network_name,
    public_base_url,
)
from payments import encode_json, to_builtins

WELL_KNOWN_PATH = "/.well-known/x402"
OPENAPI_PATH = "/openapi.json"
LLMS_PATH = "/llms.txt"
DOCUMENTS_MAX = 64  # distinct (document, base URL) pairs kept encoded
_CACHE_CONTROL = "public, max-age=60"
_JSON = "application/json"
_TEXT = "text/plain; charset=utf-8"
_PAYMENT_REQUIRED_HEADER = "PAYMENT-REQUIRED"


def on_sale(pricing: Pricing) -> list[PaidRoute]:
    """The paid routes that can be bought now, streams first in registry order, then /v1/world."""
    return [paid for paid in pricing.routes() if paid.on_sale]


def _networks(pricing: Pricing) -> list[dict[str, Any]]:
    return [
        {"network": t.network, "name": network_name(t.network), "asset": t.asset, "payTo": t.pay_to}
        for t in pricing.terms
    ]


# ---- /.well-known/x402 ----


def well_known(pricing: Pricing, registry: Registry, base: str) -> dict[str, Any]:
    """Every resource on sale with the exact offers and extensions of its 402, in the item shape of a
    bazaar discovery listing (`GET /discovery/resources`: resource, type, x402Version, accepts, ...)."""
    built = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    items = []
    for paid in on_sale(pricing):
        required = pricing.payment_required(paid, base, None)
        items.append(
            {
                "resource": base + paid.path,
                "type": "http",
                "method": "GET",
                "x402Version": 2,
                "description": paid.description,
                "mimeType": paid.mime_type,
                "accepts": [to_builtins(offer) for offer in required.accepts],
                "extensions": required.extensions or {},
                "lastUpdated": built,
                "stream": paid.stream.id if paid.stream else None,
                "category": paid.stream.category if paid.stream else "composite",
                "price": pricing.price(paid),
            }
        )
    return {
        "x402Version": 2,
        "description": "Every resource this gateway sells right now, with the offers and extensions its 402 carries. "
        "Streams in maintenance are in the catalog but not here until they are sold again; unshared streams never "
        "appear.",
        "items": items,
        "pagination": {"limit": len(items), "offset": 0, "total": len(items)},
        "links": _links(base),
    }


def _links(base: str) -> dict[str, str]:
    return {
        "catalog": base + "/v1/streams",
        "openapi": base + OPENAPI_PATH,
        "llms": base + LLMS_PATH,
        "mcp": base + MCP_PATH,
        "x402": base + WELL_KNOWN_PATH,
    }


# ---- /openapi.json ----

_PROBLEM = {"$ref": "#/components/schemas/Problem"}


def _problem(description: str) -> dict[str, Any]:
    return {"description": description, "content": {_JSON: {"schema": _PROBLEM}}}


def _json(description: str, schema: dict[str, Any], example: Any = None) -> dict[str, Any]:
    media: dict[str, Any] = {"schema": schema}
    if example is not None:
        media["example"] = example
    return {"description": description, "content": {_JSON: media}}


def _components(pricing: Pricing) -> dict[str, Any]:
    nullable_number = {"type": ["number", "null"]}
    record = {
        "type": "object",
        "description": "One observation; every stream's records have this shape, `fields` vary by stream.",
        "properties": {
            "stream": {"type": "string"},
            "observed_at": {"type": "string", "format": "date-time", "description": "The provider's time (UTC)."},
            "lat": nullable_number,
            "lon": nullable_number,
            "fields": {"type": "object"},
            "source": {"type": "string"},
        },
        "required": ["stream", "observed_at", "lat", "lon", "fields", "source"],
    }
    freshness = {
        "fetched_at": {"type": ["string", "null"], "format": "date-time"},
        "age_seconds": {"type": "number"},
        "stale": {"type": "boolean", "description": "Older than the stream's refresh interval."},
        "freshness": {"type": "string", "enum": ["fresh", "aging", "stale", "critical"]},
    }
    stream_answer = {
        "type": "object",
        "properties": {
            "stream": {"type": "string"},
            "name": {"type": "string"},
            "type": {"type": "string", "enum": ["realtime", "grid", "snapshot", "static"]},
            **freshness,
            "count": {"type": "integer", "minimum": 0},
            "records": {"type": "array", "items": {"$ref": "#/components/schemas/Record"}},
            "license": {"type": "string"},
            "attribution": {"type": "string"},
        },
        "required": ["stream", "count", "records", "license", "attribution"],
    }
    world_part = {
        "type": "object",
        "description": "One part of the picture: `available: false` with a `reason` when it could not be read; "
        "else its freshness, `cache`, and `record` (a point, the ISS with `distance_km`, the latest Kp) or "
        "`count` and `records` (the nearest 20 within radius_km, each with `distance_km`).",
        "properties": {
            "stream": {"type": "string"},
            "available": {"type": "boolean"},
            "reason": {"type": "string"},
            **freshness,
            "cache": {"type": "string"},
            "record": {"oneOf": [{"$ref": "#/components/schemas/Record"}, {"type": "null"}]},
            "count": {"type": "integer", "minimum": 0},
            "records": {"type": "array", "items": {"$ref": "#/components/schemas/Record"}},
            "distance_km": {"type": "number"},
        },
        "required": ["stream", "available"],
    }
    parts = ("weather", "air_quality", "earthquakes", "disasters", "natural_events", "iss", "space_weather")
    world_answer = {
        "type": "object",
        "properties": {
            "lat": {"type": "number"},
            "lon": {"type": "number"},
            "radius_km": {"type": "number"},
            **{name: {"$ref": "#/components/schemas/WorldPart"} for name in parts},
        },
        "required": ["lat", "lon", "radius_km", *parts],
    }
    requirements = {
        "type": "object",
        "description": "One offer (x402 v2 PaymentRequirements); a payment echoes it verbatim in `accepted`.",
        "properties": {
            "scheme": {"type": "string", "const": "exact"},
            "network": {"type": "string", "description": "CAIP-2 id"},
            "amount": {"type": "string", "pattern": "^[0-9]+$", "description": "Atomic units of the asset."},
            "asset": {"type": "string"},
            "payTo": {"type": "string"},
            "maxTimeoutSeconds": {"type": "integer"},
            "extra": {"type": "object"},
        },
        "required": ["scheme", "network", "amount", "asset", "payTo", "maxTimeoutSeconds"],
    }
    payment_required = {
        "type": "object",
        "description": "The quote: the PAYMENT-REQUIRED header decoded, plus `hint` and `about` for people "
        "(and `message` when a payment was refused).",
        "properties": {
            "x402Version": {"type": "integer", "const": 2},
            "error": {"type": "string"},
            "resource": {
                "type": "object",
                "properties": {
                    "url": {"type": "string", "format": "uri"},
                    "description": {"type": "string"},
                    "mimeType": {"type": "string"},
                },
                "required": ["url"],
            },
            "accepts": {"type": "array", "items": {"$ref": "#/components/schemas/PaymentRequirements"}},
            "extensions": {"type": "object", "description": "`bazaar`: how to call this resource and what it answers."},
            "hint": {"type": "string"},
            "about": {"type": "object"},
            "message": {"type": "string"},
        },
        "required": ["x402Version", "accepts", "resource"],
    }
    return {
        "schemas": {
            "Problem": {
                "type": "object",
                "properties": {
                    "error": {"type": "string"},
                    "message": {"type": "string"},
                    "reason": {"type": "string"},
                    "stream": {"type": "string"},
                },
                "required": ["error"],
            },
            "Record": record,
            "StreamAnswer": stream_answer,
            "WorldPart": world_part,
            "WorldAnswer": world_answer,
            "PaymentRequirements": requirements,
            "PaymentRequired": payment_required,
            "Document": {"type": "object"},
        },
        "headers": {
            _PAYMENT_REQUIRED_HEADER: {
                "description": "Base64 (RFC 4648, padded) of the compact JSON PaymentRequired (x402 v2): the "
                "offers, one per network, and the `bazaar` extension. Sign one offer and retry with "
                "PAYMENT-SIGNATURE.",
                "required": True,
                "schema": {"type": "string"},
            }
        },
        "securitySchemes": {
            "x402": {
                "type": "apiKey",
                "in": "header",
                "name": "PAYMENT-SIGNATURE",
                "description": "Not a key: an x402 v2 payment, base64 JSON PaymentPayload echoing one of the "
                "402's offers in `accepted` (X-PAYMENT carries an x402 v1 payment). Networks: "
                + ", ".join(f"{network_name(t.network)} ({t.network})" for t in pricing.terms)
                + f"; asset {ASSET_SYMBOL}. Each payment buys one answer.",
            }
        },
    }


def _free_get(summary: str, description: str, responses: dict[str, Any], **more: Any) -> dict[str, Any]:
    return {"get": {"summary": summary, "description": description, "tags": ["free"], **more, "responses": responses}}


def _free_paths(registry: Registry) -> dict[str, Any]:
    document = {"$ref": "#/components/schemas/Document"}
    categories = sorted(registry.categories())
    return {
        "/v1/health": _free_get(
            "Health",
            "Version, uptime, database and Redis checks, stream counts, each source's last fetch, freshness, "
            "last error and circuit; live or replayed upstreams.",
            {"200": _json("Healthy.", document), "503": _json("The database is down.", document)},
            operationId="health",
        ),
        "/v1/streams": _free_get(
            "Catalog",
            "Every listed stream: id, name, description, category, type, interval, price (tier, atomic, USDC, "
            "networks), freshness, license.",
            {"200": _json("The catalog.", document), "404": _problem("Unknown category.")},
            operationId="catalog",
            parameters=[
                {
                    "name": "category",
                    "in": "query",
                    "required": False,
                    "description": "Only this category's streams.",
                    "schema": {"type": "string", "enum": categories} if categories else {"type": "string"},
                }
            ],
        ),
        "/v1/streams/search": _free_get(
            "Search the catalog",
            f"Streams whose id, name or description contain q (case-insensitive; at most {SEARCH_RESULTS_MAX}).",
            {"200": _json("The matching streams.", document), "400": _problem("q missing or too long.")},
            operationId="search",
            parameters=[
                {
                    "name": "q",
                    "in": "query",
                    "required": True,
                    "schema": {"type": "string", "minLength": 1, "maxLength": 100},
                    "example": "earthquake",
                }
            ],
        ),
        "/v1/attribution": _free_get(
            "Attribution",
            "Every stream's upstream, license and attribution.",
            {"200": _json("Sources and licenses.", document)},
            operationId="attribution",
        ),
        WELL_KNOWN_PATH: _free_get(
            "Paid resources (x402)",
            "Every resource on sale with its full URL, description, mimeType, the offers (`accepts`) and "
            "extensions its 402 carries, and x402Version 2.",
            {"200": _json("The resources.", document)},
            operationId="x402Resources",
        ),
        OPENAPI_PATH: _free_get(
            "This document",
            "OpenAPI 3.1 of the public API.",
            {"200": _json("OpenAPI 3.1.", document)},
            operationId="openapi",
        ),
        LLMS_PATH: _free_get(
            "For agents",
            "What is sold, the prices, how to pay, and where everything is, as llms.txt markdown.",
            {"200": {"description": "llms.txt.", "content": {_TEXT: {"schema": {"type": "string"}}}}},
            operationId="llmsTxt",
        ),
    }


def _operation(pricing: Pricing, paid: PaidRoute) -> dict[str, Any]:
    price = pricing.price(paid)
    networks = ", ".join(f"{network_name(o.network)} ({o.network})" for o in paid.offers)
    stream = paid.stream
    rules = (
        "Read at one point: lat and lon are required; bbox and radius_km are refused."
        if stream is not None and stream.point
        else "Give bbox, or lat and lon (with radius_km), or neither (every record, up to limit)."
        if stream is not None
        else "lat and lon are required; bbox is refused."
    )
    description = (
        f"{paid.description}\n\n**Price:** {price['usd']} per request: {price['amount_atomic']} atomic units of "
        f"{ASSET_SYMBOL} ({price['decimals']} decimals), payable on {networks}.\n\n"
        "**Paying:** without a payment the answer is 402 with a PAYMENT-REQUIRED header (the quote); sign one of its "
        "offers with an x402 client and retry with PAYMENT-SIGNATURE. A query that breaks the rules is refused "
        "with 400 before any quote or payment; a stream that cannot be served within max_age answers 503 and "
        f"nothing is charged. A HEAD is quoted and never settled.\n\n{rules}"
    )
    schema = "#/components/schemas/" + ("StreamAnswer" if stream is not None else "WorldAnswer")
    quote_header = {_PAYMENT_REQUIRED_HEADER: {"$ref": f"#/components/headers/{_PAYMENT_REQUIRED_HEADER}"}}
    quote = {
        "description": "Payment required: the quote, in the PAYMENT-REQUIRED header and the body. Also a payment "
        "that was refused (its reason in `error`) or that did not settle.",
        "headers": quote_header,
        "content": {_JSON: {"schema": {"$ref": "#/components/schemas/PaymentRequired"}}},
    }
    operation: dict[str, Any] = {
        "operationId": f"get_{stream.id.replace('.', '_')}" if stream is not None else "get_world",
        "summary": stream.name if stream is not None else "The world around a point",
        "description": description,
        "tags": [stream.category if stream is not None else "composite"],
        "parameters": [
            {
                "name": p.name,
                "in": "query",
                "required": p.required,
                "description": p.description,
                "schema": p.schema(full=True),
            }
            for p in paid.params
        ],
        "security": [{"x402": []}],
        "x-402-price": {**price, "tier": paid.price_tier},
        "x-402-networks": [
            {"network": o.network, "name": network_name(o.network), "asset": o.asset, "payTo": o.pay_to}
            for o in paid.offers
        ],
        "responses": {
            "200": {
                **_json("The data, once the payment settled.", {"$ref": schema}, paid.example),
                "headers": {
                    "PAYMENT-RESPONSE": {
                        "description": "Base64 JSON settlement receipt (X-PAYMENT-RESPONSE for a v1 payment).",
                        "schema": {"type": "string"},
                    },
                    "X-Cache": {"description": "Where the data came from.", "schema": {"type": "string"}},
                },
            },
            "400": _problem("The query breaks the rules (`invalid_query`); nothing was quoted or charged."),
            "402": quote,
            "403": _problem("The payer is banned by the operator (`payer_banned`); nothing was claimed or charged."),
            "404": _problem("No such stream (it is no longer shared)."),
            "409": _problem(
                "The payment-identifier in the payment was already used by another payment "
                "(`payment_identifier_conflict`); nothing was charged."
            ),
            "503": _problem(
                "No data within max_age, the stream is in maintenance, or payments cannot be recorded; "
                "nothing was charged."
            ),
        },
    }
    return operation


def openapi(pricing: Pricing, registry: Registry, base: str) -> dict[str, Any]:
    """OpenAPI 3.1: the free routes, and one path per paid resource on sale (its own price and rules)."""
    paths = _free_paths(registry)
    for paid in on_sale(pricing):
        paths[paid.path] = {"get": _operation(pricing, paid)}
    tags = [{"name": "free", "description": "No payment."}]
    tags += [{"name": c, "description": f"Paid: {c} streams."} for c in sorted(registry.categories())]
    tags.append({"name": "composite", "description": "Paid: several streams in one answer."})
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "worldgate",
            "version": VERSION,
            "summary": "Pay-per-request world data over x402: no accounts, no API keys.",
            "description": "Live world data sold per request. An unpaid GET on a paid path answers 402 with an x402 "
            "v2 quote; pay in USDC on "
            + " or ".join(network_name(t.network) for t in pricing.terms)
            + f" and retry with PAYMENT-SIGNATURE. Paid operations state their price in `x-402-price` and the "
            f"networks in `x-402-networks`. How to pay, step by step: {base}{LLMS_PATH}, and the README section "
            '"Try it as a new user". Streams in maintenance are in the catalog but not listed here until they are '
            "sold again.",
        },
        "servers": [{"url": base}],
        "tags": tags,
        "paths": paths,
        "components": _components(pricing),
    }


# ---- /llms.txt ----


def llms_txt(pricing: Pricing, registry: Registry, base: str) -> str:
    selling = on_sale(pricing)
    by_category: dict[str, list[str]] = {}
    world: PaidRoute | None = None
    for paid in selling:
        if paid.stream is None:
            world = paid
            continue
        label = paid.stream.id + (" (at a point: lat, lon)" if paid.stream.point else "")
        by_category.setdefault(paid.stream.category, []).append(label)
    by_price: dict[int, list[PaidRoute]] = {}
    for paid in selling:
        by_price.setdefault(paid.amount_atomic, []).append(paid)
    lines = [
        "# worldgate",
        "",
        "> Live world data sold per request over x402 (HTTP 402): weather, air quality, earthquakes, disaster "
        "alerts, natural events, the ISS, space weather and curated reference sets. No account, no API key: an "
        f"unpaid GET answers 402 with a quote; pay it in {ASSET_SYMBOL} and retry.",
        "",
        "## What is sold",
        "",
    ]
    for category in sorted(by_category):
        lines.append(f"- {category}: " + ", ".join(by_category[category]))
    if world is not None:
        lines.append(
            f"- composite: {WORLD_SUMMARY} (`{world.path}?lat=&lon=&radius_km=`)",
        )
    lines += ["", f"## Prices (per request, in {ASSET_SYMBOL}, {pricing.decimals} decimals)", ""]
    for amount in sorted(by_price):
        routes = by_price[amount]
        tiers = sorted({p.price_tier for p in routes if p.price_tier})
        names = ", ".join(p.stream.id if p.stream else p.path for p in routes)
        tier = f"; tier {', '.join(tiers)}" if tiers else ""
        lines.append(f"- ${pricing.display(amount)} ({amount} atomic units{tier}): {names}")
    lines += [
        "",
        "## How to pay (x402 v2)",
        "",
        "1. GET the resource. The 402 answer's PAYMENT-REQUIRED header is base64 JSON: `accepts` holds one offer "
        "per network (amount in atomic units, asset, payTo), `extensions.bazaar` the query parameters and an "
        "example answer. The body repeats it, with a `hint` and `about` for people.",
        "2. Sign one offer: on Base an EIP-3009 transferWithAuthorization of USDC (the gateway pays the gas); on "
        "Solana a partially signed SPL TransferChecked transaction (the offer's `extra.feePayer` pays the fees).",
        "3. Retry the same GET with the header PAYMENT-SIGNATURE: base64 JSON PaymentPayload echoing the offer in "
        "`accepted` (x402 v1 clients: X-PAYMENT). The 200 carries PAYMENT-RESPONSE with the settlement "
        "transaction. A bad query is refused with 400 before any payment; no data within max_age: 503, nothing "
        "charged.",
        "4. Retries: put `extensions.payment-identifier.info.id` (16-128 of A-Z a-z 0-9 _ -) in the payload. A "
        "retry with the same id and payment gets the stored answer again, settled once; the same id with another "
        "payment gets 409.",
        "",
        "Networks and assets:",
        "",
    ]
    for network in _networks(pricing):
        lines.append(f"- {network['name']} (`{network['network']}`): {ASSET_SYMBOL} `{network['asset']}`")
    lines += [
        "",
        'Official clients: Python `pip install "x402[evm,httpx]"` (`x402Client`, `x402HttpxClient`; `x402[svm]` for '
        "Solana); TypeScript `@x402/fetch` (`wrapFetchWithPayment`) with `@x402/evm` or `@x402/svm`. From a "
        "shell: `worldgate quote URL`, `worldgate pay URL`, or `worldgate pay --header-only URL` for curl's `-H`.",
        "",
        "## Documents",
        "",
        f"- [Catalog]({base}/v1/streams): every stream with price, type, interval and freshness; `?category=`",
        f"- [Search]({base}/v1/streams/search?q=earthquake): streams by id, name or description",
        f"- [OpenAPI 3.1]({base}{OPENAPI_PATH}): every route, its parameters and ranges, prices (`x-402-price`)",
        f"- [x402 resources]({base}{WELL_KNOWN_PATH}): every paid resource with its offers and bazaar declaration",
        f"- [MCP]({base}{MCP_PATH}): the MCP endpoint, the same data as tools, paid with x402",
        f"- [Attribution]({base}/v1/attribution) and [health]({base}/v1/health)",
        f"- {HOW_TO_PAY_README}: a paid request step by step",
        "",
    ]
    return "\n".join(lines)


WORLD_SUMMARY = (
    "/v1/world, the picture around a point: weather and air quality there, earthquakes, disaster alerts and "
    "natural events nearby, the ISS and its distance, the latest Kp"
)


# ---- the routes ----

Builder = Callable[[Pricing, Registry, str], bytes]
_BUILDERS: dict[str, tuple[Builder, str]] = {
    WELL_KNOWN_PATH: (lambda p, r, b: encode_json(well_known(p, r, b)), _JSON),
    OPENAPI_PATH: (lambda p, r, b: encode_json(openapi(p, r, b)), _JSON),
    LLMS_PATH: (lambda p, r, b: llms_txt(p, r, b).encode(), _TEXT),
}


class Documents:
    """The discovery documents, encoded once per (pricing, registry) and base URL."""

    def __init__(self, services: Services, registry: Callable[[], Registry], public_url: str | None) -> None:
        self.services = services
        self.registry = registry
        self.public_url = public_url
        self._source: tuple[Pricing, Registry] | None = None
        self._encoded: OrderedDict[tuple[str, str], bytes] = OrderedDict()

    def document(self, path: str, base: str) -> bytes | None:
        pricing = self.services.pricing
        if pricing is None:
            return None
        registry = self.registry()
        if self._source is None or self._source[0] is not pricing or self._source[1] is not registry:
            self._source = (pricing, registry)  # a sharing change (or startup): rebuild everything
            self._encoded.clear()
        key = (path, base)
        encoded = self._encoded.get(key)
        if encoded is not None:
            self._encoded.move_to_end(key)
            return encoded
        encoded = _BUILDERS[path][0](pricing, registry, base)
        self._encoded[key] = encoded
        if len(self._encoded) > DOCUMENTS_MAX:
            self._encoded.popitem(last=False)
        return encoded

    async def serve(self, request: Request) -> Response:
        path = request.url.path
        encoded = self.document(path, public_base_url(request.scope, self.public_url))
        if encoded is None:
            body = encode_json({"error": "starting", "message": "the gateway is starting; try again shortly"})
            return Response(body, 503, media_type=_JSON, headers={"cache-control": "no-store", "retry-after": "1"})
        headers = {"cache-control": _CACHE_CONTROL, "access-control-allow-origin": "*"}
        return Response(encoded, media_type=_BUILDERS[path][1], headers=headers)


def routes(services: Services, registry: Callable[[], Registry], settings: Settings) -> list[BaseRoute]:
    """The discovery routes; they read the live registry and prices, so sharing changes show at once."""
    documents = Documents(services, registry, settings.public_url)
    return [Route(path, documents.serve, methods=["GET", "HEAD"]) for path in _BUILDERS]
