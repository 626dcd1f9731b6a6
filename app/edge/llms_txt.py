"""/llms.txt: what is sold, the prices, how to pay and where everything is, as markdown for agents,
built from the live pricing and registry (app/edge/discovery.py serves and caches it)."""

from __future__ import annotations

from typing import Any

from adapters import Registry
from app.usecases.paths import MCP_PATH, OPENAPI_PATH, WELL_KNOWN_PATH
from app.usecases.pricing import ASSET_SYMBOL, HOW_TO_PAY_README, PaidRoute, Pricing, network_name

WORLD_SUMMARY = (
    "/v1/world, the picture around a point: weather and air quality there, earthquakes, disaster alerts and "
    "natural events nearby, the ISS and its distance, the latest Kp"
)


def _networks(pricing: Pricing) -> list[dict[str, Any]]:
    return [
        {"network": t.network, "name": network_name(t.network), "asset": t.asset, "payTo": t.pay_to}
        for t in pricing.terms
    ]


def llms_txt(pricing: Pricing, registry: Registry, base: str) -> str:
    selling = pricing.routes_on_sale()
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
    ]
    if pricing.replayed:
        lines += [
            "REPLAY MODE: this gateway answers from recorded upstream payloads, not live data. Every data answer "
            'says `"source": "replay"`; records keep their recorded `observed_at`, so most read as stale; point '
            "reads (weather.current, air.quality, /v1/world) are sold only near a recorded point, and elsewhere "
            "refused with 404 `no_recording`, listing those points, before any quote.",
            "",
        ]
    lines += [
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
        "transaction. A bad query (a parameter the route does not declare, or one given twice, included) is "
        "refused with 400 before any payment; no data within max_age: 503, nothing charged. Browsers may call "
        "from any page: answers carry CORS headers and expose PAYMENT-REQUIRED and PAYMENT-RESPONSE.",
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
