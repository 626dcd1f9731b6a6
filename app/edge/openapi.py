"""/openapi.json: OpenAPI 3.1 of the API, built from the live pricing and registry.

The free routes, one path per paid resource on sale with its own price, networks, query parameters and
example answer, the time machine's and live feeds' routes (app/edge/openapi_timed.py), the HTML pages
(app/edge/openapi_pages.py), and (app/edge/openapi_ops.py) the admin API, /mcp and /metrics; every operation
lists the answers any route may give before its handler (405, 413, 429, 431). app/edge/discovery.py serves and
caches it.
"""

from __future__ import annotations

from typing import Any

from adapters import Registry
from app import __version__
from app.edge import openapi_ops, openapi_pages, openapi_timed, openapi_timed_schemas
from app.edge.discovery_resources import LIMIT_MAX, RESOURCES_PATH, SEARCH_PATH, WELL_KNOWN_JSON_PATH
from app.edge.openapi_ops import ALWAYS
from app.usecases.params import query_schema
from app.usecases.paths import LLMS_PATH, OPENAPI_PATH, WELL_KNOWN_PATH
from app.usecases.pricing import ASSET_SYMBOL, PaidRoute, Pricing, network_name
from app.usecases.reads import SEARCH_RESULTS_MAX

_JSON = "application/json"
_TEXT = "text/plain; charset=utf-8"
_PAYMENT_REQUIRED_HEADER = "PAYMENT-REQUIRED"
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
            **openapi_timed_schemas.SCHEMAS,
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
        "responses": openapi_ops.components()["responses"],
        "securitySchemes": {
            **openapi_ops.components()["securitySchemes"],
            **openapi_ops.METRICS_SCHEME,
            "x402": {
                "type": "apiKey",
                "in": "header",
                "name": "PAYMENT-SIGNATURE",
                "description": "Not a key: an x402 v2 payment, base64 JSON PaymentPayload echoing one of the "
                "402's offers in `accepted` (X-PAYMENT carries an x402 v1 payment). Networks: "
                + ", ".join(f"{network_name(t.network)} ({t.network})" for t in pricing.terms)
                + f"; asset {ASSET_SYMBOL}. Each payment buys one answer.",
            },
        },
    }


def _free_get(summary: str, description: str, responses: dict[str, Any], **more: Any) -> dict[str, Any]:
    answers = {**responses, **ALWAYS}
    return {"get": {"summary": summary, "description": description, "tags": ["free"], **more, "responses": answers}}


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
        "/v1/health/live": _free_get(
            "Liveness",
            '`{"status": "alive"}`, touching neither the database nor the network: for liveness probes.',
            {"200": _json("Alive.", document)},
            operationId="liveness",
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
            "Paid resources (x402 well-known)",
            "The x402 well-known manifest (the proposal of x402-foundation/x402 PR #2979): x402Version 2, kind "
            "resource-server, and every paid resource on sale (streams, /v1/world, history and live routes) with its "
            "url, method, description, mimeType and the offers (`accepts`) its 402 makes. Also at "
            "/.well-known/x402.json.",
            {"200": _json("The manifest.", document)},
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
    networks = ", ".join(f"{network_name(n)} ({n})" for n in paid.networks)
    stream = paid.stream
    rules = (
        "Read at one point: lat and lon are required; bbox and radius_km are refused."
        if stream is not None and stream.point
        else "Give bbox, or lat and lon (with radius_km), or neither (every record, up to limit)."
        if stream is not None
        else "lat and lon are required; bbox is refused."
    )
    if stream is not None and stream.resolutions:
        rules += (
            f"\n\n**Finer grids:** resolution={', '.join(map(str, stream.resolutions))} (degrees) reads a finer "
            "global grid, priced by size: the price above per started 100 cells the answer can hold (the grid's cells "
            "in bbox or radius_km, at most limit); the 402 states the total. Without it: the 30-degree grid, at the "
            "price above."
        )
    description = (
        f"{paid.description}\n\n**Price:** {price['usd']} per request: {price['amount_atomic']} atomic units of "
        f"{ASSET_SYMBOL} ({price['decimals']} decimals), payable on {networks}.\n\n"
        "**Paying:** without a payment the answer is 402 with a PAYMENT-REQUIRED header (the quote); sign one of its "
        "offers with an x402 client and retry with PAYMENT-SIGNATURE. A query that breaks the rules, or has a "
        "parameter not listed here or one given twice, is refused with 400 before any quote or payment; a stream "
        "that cannot be served within max_age answers 503 and "
        f"nothing is charged. A HEAD is quoted and never settled. Before any of that, like every route: 405, 413, "
        f"429 (over the rate limit of quotes from one address) or 431 (components/responses).\n\n{rules}"
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
        # the whole query as one JSON Schema, as the 402's bazaar declares it: no other parameter is accepted
        "x-query-schema": query_schema(paid.params),
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
            "400": _problem(
                "The query breaks the rules, or names an unknown parameter or one twice (`invalid_query`); "
                "nothing was quoted or charged."
            ),
            "402": quote,
            "403": _problem("The payer is banned by the operator (`payer_banned`); nothing was claimed or charged."),
            "404": _problem("No such stream (it is no longer shared)."),
            "409": _problem(
                "The payment-identifier in the payment was already used by another payment "
                "(`payment_identifier_conflict`), or this payment closed unpaid for an earlier request "
                "(`payment_not_charged`, with `reason` and a failed PAYMENT-RESPONSE, no quote); nothing was charged."
            ),
            "503": _problem(
                "No data within max_age, the stream is in maintenance, or payments cannot be recorded; "
                "nothing was charged."
            ),
            **ALWAYS,  # 405, 413, 429 (Retry-After) and 431: before the gate, as on every route
        },
    }
    return operation


def _discovery_paths(registry: Registry) -> dict[str, Any]:
    """The x402 discovery routes beside /.well-known/x402: its .json twin and the bazaar's list and search."""
    document = {"$ref": "#/components/schemas/Document"}

    def query(name: str, description: str, schema: dict[str, Any], **more: Any) -> dict[str, Any]:
        return {"name": name, "in": "query", "required": False, "description": description, "schema": schema, **more}

    limit = query("limit", "Items per page.", {"type": "integer", "minimum": 1, "maximum": LIMIT_MAX, "default": 20})
    filters = [
        query("type", "Protocol type: http (every resource here).", {"type": "string", "enum": ["http"]}),
        query(
            "category",
            "Only this category's resources.",
            {"type": "string", "enum": [*sorted(registry.categories()), "composite"]},
        ),
        query("scheme", "Only resources with an offer in this x402 scheme.", {"type": "string"}),
        query("network", "Only resources payable on this CAIP-2 network.", {"type": "string"}),
        query("payTo", "Only resources paying this address.", {"type": "string"}),
        query("extensions", "Only resources declaring this extension.", {"type": "string"}),
    ]
    bad = _problem("A malformed limit, offset, cursor or query (`invalid_query`).")
    return {
        WELL_KNOWN_JSON_PATH: _free_get(
            "Paid resources (x402 well-known, .json)",
            "The same manifest as /.well-known/x402.",
            {"200": _json("The manifest.", document)},
            operationId="x402ResourcesJson",
        ),
        RESOURCES_PATH: _free_get(
            "Paid resources (bazaar)",
            "Every paid resource on sale as the x402 bazaar lists it: `{x402Version, items, pagination: {limit, "
            "offset, total}}`, each item with resource, type, x402Version, accepts, lastUpdated, description, "
            "mimeType, serviceName, tags, extensions and metadata (method, route, stream, category, price).",
            {"200": _json("A page of resources.", document), "400": bad},
            operationId="discoveryResources",
            parameters=[*filters, limit, query("offset", "Items to skip.", {"type": "integer", "minimum": 0})],
        ),
        SEARCH_PATH: _free_get(
            "Search paid resources (bazaar)",
            "Paid resources whose path, stream, name, description, category or tags hold every word of q, best "
            "first: `{x402Version, resources, partialResults, pagination: {limit, cursor}}`.",
            {"200": _json("The matching resources.", document), "400": bad},
            operationId="discoverySearch",
            parameters=[
                query(
                    "q",
                    "Words to find (or `query`, as the bazaar client sends it).",
                    {"type": "string", "minLength": 1, "maxLength": 100},
                    example="earthquake",
                ),
                query("query", "The same as q.", {"type": "string", "minLength": 1, "maxLength": 100}),
                *filters,
                limit,
                query("cursor", "The cursor of the previous page.", {"type": "string"}),
            ],
        ),
    }


def openapi(pricing: Pricing, registry: Registry, base: str) -> dict[str, Any]:
    """OpenAPI 3.1: the free routes, one path per paid resource on sale (its own price and rules), history and live
    routes, the HTML pages, the admin API, /mcp and /metrics."""
    paths = {**_free_paths(registry), **_discovery_paths(registry)}
    for paid in pricing.routes_on_sale():
        paths[paid.path] = {"get": _operation(pricing, paid)}
    paths.update(openapi_timed.timed_paths(pricing, registry, _operation))
    paths.update(openapi_pages.page_paths())
    paths.update(openapi_ops.ops_paths())
    paths.update(openapi_ops.admin_paths())
    tags = [{"name": "free", "description": "No payment."}]
    tags += [{"name": c, "description": f"Paid: {c} streams."} for c in sorted(registry.categories())]
    tags.append({"name": "composite", "description": "Paid: several streams in one answer."})
    tags.append({"name": "history", "description": "The time machine: recorded snapshots (paid), coverage (free)."})
    tags.append({"name": "live", "description": "Live feeds: SSE or WebSocket, paid per window."})
    tags.append({"name": "mcp", "description": "The same reads and sales as MCP tools."})
    tags.append({"name": "ops", "description": "For the operator's monitoring."})
    tags.append(
        {"name": "admin", "description": "The operator's API: an admin token (JWT) or the dashboard's session."}
    )
    tags.append({"name": "dashboard", "description": "The operator's HTML dashboard."})
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "worldgate",
            "version": __version__,
            "summary": "Pay-per-request world data over x402: no accounts, no API keys.",
            "description": "Live world data sold per request. An unpaid GET on a paid path answers 402 with an x402 "
            "v2 quote; pay in USDC on "
            + " or ".join(network_name(t.network) for t in pricing.terms)
            + f" and retry with PAYMENT-SIGNATURE. Paid operations state their price in `x-402-price` and the "
            "networks in `x-402-networks` (a live feed's price buys one window; a history range is priced by what it "
            f"asks, as `x-402-pricing` says). How to pay, step by step: {base}{LLMS_PATH}, and the README section "
            '"Try it as a new user". Streams in maintenance are in the catalog but not listed here until they are '
            "sold again.",
        },
        "servers": [{"url": base}],
        "tags": tags,
        "paths": paths,
        "components": _components(pricing),
    }
