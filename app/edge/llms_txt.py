"""/llms.txt: what is sold, the prices, how to pay and where everything is, as markdown for agents,
built from the live pricing and registry (app/edge/discovery.py serves and caches it). The time machine's
and live feeds' routes get a section of their own: they apply to some kinds of stream only, and are priced
by the range asked (history) or per window (live)."""

from __future__ import annotations

from typing import Any

from adapters import Registry
from app.edge.openapi_timed import block_snapshots
from app.usecases.history_queries import HISTORY_ROUTE
from app.usecases.live_pricing import LIVE_ROUTE, RENEW_ROUTE
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


def _by_kind(routes: list[PaidRoute]) -> list[str]:
    """The routes' streams by kind (realtime, grid, snapshot), a line each."""
    kinds: dict[str, list[str]] = {}
    for paid in routes:
        if paid.stream is not None:
            kinds.setdefault(paid.stream.type.value, []).append(paid.stream.id)
    return [f"- {kind}: {', '.join(ids)}" for kind, ids in sorted(kinds.items())]


def _timed(pricing: Pricing) -> list[str]:
    """History and live: which streams, the routes, how they are priced."""
    history = [p for p in pricing.history_routes() if p.on_sale and p.route == HISTORY_ROUTE]
    lives = [p for p in pricing.live_routes() if p.on_sale]
    if not history and not lives:
        return []
    lines = [
        "## History and live feeds",
        "",
        "Only for the streams refreshed for everyone (realtime, grid and snapshot streams); not for the static sets "
        "nor the streams read at a point. Same payment as above, same 400-before-payment rules; full parameters "
        "and answers in the OpenAPI document.",
        "",
    ]
    if history:
        block = block_snapshots(history[0])
        blocks = f"block of {block} snapshots" if block else "block of snapshots"
        lines += [
            "History (the time machine) is sold for:",
            "",
            *_by_kind(history),
            "",
            "- `GET /v1/streams/{id}/history?from=&to=[&step=][&limit=][&format=json|ndjson|csv]` (paid; bbox, or "
            "lat/lon/radius_km, filter the records): the recorded snapshots from..to, oldest first, each "
            f"`{{t, observed_at, records}}`. Priced by the range: the stream's price above per started {blocks} "
            "the range holds at the stream's interval (or `step`), capped by `limit`; the 402 states the total "
            "before you pay. Nothing recorded in the range (404) or the store down (503): nothing charged.",
            "- `GET /v1/streams/{id}/at?t=` (paid, the stream's price): the snapshot in force at t.",
            "- `GET /v1/streams/{id}/coverage` (free): earliest, latest, count and gaps of the recording.",
            "- MCP: `get_history` (paid, the same price for the same range) and `get_coverage` (free).",
            "",
        ]
    if lives:
        windows: dict[int, list[str]] = {}
        for paid in lives:
            if paid.route == LIVE_ROUTE and paid.stream is not None:
                windows.setdefault(paid.amount_atomic, []).append(paid.stream.id)
        sse = next(p for p in lives if p.route == LIVE_ROUTE)
        renews = any(p.route == RENEW_ROUTE for p in lives)
        lines += [
            f"Live feeds, paid per window ({sse.description.rsplit(' for ', 1)[-1]}), are sold for:",
            "",
            *_by_kind([p for p in lives if p.route == LIVE_ROUTE]),
            "",
            "- `GET /v1/streams/{id}/live` with `Accept: text/event-stream` (paid, one window): the payment rides on "
            "the connect (an x402 client's retry). Events: `window` (the session, its end, its ticket, the URLs), "
            "`frame` (each refresh's records; `Last-Event-ID` on reconnect replays what you missed), `lagged`, "
            "heartbeats, and `payment-required` when the window ends. A feed that cannot be sold now: 503, nothing "
            "charged; too many connections: 429.",
            "- `GET /v1/streams/{id}/live/ticket` (paid, one window): a ticket for a browser; open "
            "`/v1/streams/{id}/ws?ticket=` (WebSocket, JSON messages `{event, id, data}`) or "
            "`/v1/streams/{id}/live/events?ticket=` (SSE) within its `expires_in_s`; the window starts then, and the "
            "ticket reopens a dropped session until the window ends.",
            "- `GET /v1/streams/{id}/live/renew?session=` (paid, one window, batch-settlement vouchers only): the "
            "in-band renewal a batch session's `payment-required` names; the window is extended once the voucher is "
            "booked."
            if renews
            else "- Renewal: this gateway offers no batch-settlement, so a window ends with a final `payment-required` "
            "(the next window's quote); connect again to buy the next.",
        ]
        lines += ["", "A window's price:", ""]
        for amount in sorted(windows):
            lines.append(f"- ${pricing.display(amount)} a window ({amount} atomic units): {', '.join(windows[amount])}")
        lines.append("")
    return lines


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
    finer: dict[tuple[int, ...], list[str]] = {}
    for paid in selling:
        if paid.stream is not None and paid.stream.resolutions:
            finer.setdefault(tuple(paid.stream.resolutions), []).append(paid.stream.id)
    for resolutions, grids in finer.items():
        lines += [
            "",
            f"Finer grids: {', '.join(grids)} take `resolution=` {', '.join(map(str, resolutions))} (degrees; "
            "without it, the 30-degree grid), priced by size: the stream's price per started 100 cells the answer "
            "can hold (in bbox or radius_km, at most `limit`); the 402 states the total.",
        ]
    lines += [
        "",
        *_timed(pricing),
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
