"""What discovery lists: every paid resource on sale, in the shapes agents look for it.

- `bazaar_items`: the x402 bazaar's `DiscoveredResource` (what a facilitator's `GET /discovery/resources` lists):
  `resource`, `type`, `x402Version`, `accepts`, `lastUpdated`, `description`, `mimeType`, `serviceName`, `tags`,
  `extensions` (the 402's own declarations), and `metadata` (method, route, stream, category, price).
- `list_page` and `search_page`: `GET /discovery/resources` (`limit`/`offset`, filters by type, category, scheme,
  network, payTo and extension) and `GET /discovery/search` (`q` or `query`; `limit`/`cursor`), in the bazaar
  client's wire shapes (the reference SDK's `with_bazaar` reads both).
- `manifest`: `/.well-known/x402` in the shape of the x402 well-known proposal (x402-foundation/x402 PR #2979):
  `x402Version`, `kind: "resource-server"`, and `resources`, each a complete payment description (url, method,
  description, mimeType and its `accepts`); the runtime extensions stay in the 402 and in the bazaar listing.

Every paid resource: the streams and /v1/world, the time machine's /history and /at, and the live feeds' windows,
each only while it can be bought (a stream in maintenance is in the catalog, not here). Field lengths keep within
the bazaar's: `serviceName` at most 32 printable ASCII characters, at most 5 tags of at most 32.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from app.usecases.paths import LLMS_PATH, MCP_PATH, OPENAPI_PATH, WELL_KNOWN_PATH
from app.usecases.pricing import PaidRoute, Pricing
from app.usecases.queries import Problem
from payments import to_builtins

SERVICE_NAME = "worldgate"
SERVICE_NAME_MAX, TAG_MAX, TAGS_MAX = 32, 32, 5  # the bazaar's limits (x402 specs/extensions/bazaar.md)
LIMIT_DEFAULT, LIMIT_MAX = 20, 100  # the bazaar's `limit`: 1 to 100, 20 when not given
QUERY_MAX = 100
RESOURCES_PATH = "/discovery/resources"
SEARCH_PATH = "/discovery/search"
WELL_KNOWN_JSON_PATH = WELL_KNOWN_PATH + ".json"


def paid_on_sale(pricing: Pricing) -> list[PaidRoute]:
    """Every paid route that can be bought now: streams and /v1/world, then history, then live windows."""
    routes = [*pricing.routes_on_sale(), *pricing.history_routes(), *pricing.live_routes()]
    return [paid for paid in routes if paid.on_sale]


def _kind(paid: PaidRoute) -> str:
    """What a route sells: data (a read), history (the time machine), live (a window of a live feed)."""
    route = paid.route
    return "live" if "/live" in route else "history" if route.endswith(("/history", "/at")) else "data"


def _tag(text: str) -> str | None:
    cleaned = "".join(c for c in text if " " <= c <= "~")[:TAG_MAX]
    return cleaned or None


def tags(paid: PaidRoute) -> list[str]:
    stream = paid.stream
    found = [stream.category, stream.type.value, _kind(paid)] if stream else ["composite", "point", "data"]
    if stream is not None:
        found.append(stream.id.split(".", 1)[0])
        found.append("point" if stream.point else "global")
    unique = list(dict.fromkeys(t for t in (_tag(f) for f in found) if t))
    return unique[:TAGS_MAX]


@dataclass(frozen=True)
class Item:
    """One paid resource: its bazaar item, and what filters and search read."""

    document: dict[str, Any]
    category: str
    haystack: str  # lower-case text search matches words in
    title: str  # lower-case id and name: a word here ranks first

    @property
    def accepts(self) -> list[dict[str, Any]]:
        return self.document["accepts"]  # type: ignore[no-any-return]


def bazaar_items(pricing: Pricing, base: str) -> list[Item]:
    built = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    items = []
    for paid in paid_on_sale(pricing):
        required = pricing.payment_required(paid, base, None)
        stream = paid.stream
        category = stream.category if stream is not None else "composite"
        document = {
            "resource": base + paid.path,
            "type": "http",
            "x402Version": 2,
            "accepts": [to_builtins(offer) for offer in required.accepts],
            "lastUpdated": built,
            "description": paid.description,
            "mimeType": paid.mime_type,
            "serviceName": SERVICE_NAME[:SERVICE_NAME_MAX],
            "tags": tags(paid),
            "extensions": required.extensions or {},
            "metadata": {
                "method": paid.route.split(" ", 1)[0],
                "route": paid.route,
                "kind": _kind(paid),
                "stream": stream.id if stream is not None else None,
                "category": category,
                "price": pricing.price(paid),
            },
        }
        words = [paid.path, paid.description, category, *document["tags"]]
        if stream is not None:
            words += [stream.id, stream.name, stream.description, stream.upstream]
        title = " ".join([stream.id, stream.name] if stream is not None else [paid.path]).lower()
        items.append(Item(document, category, " ".join(words).lower(), title))
    return items


# ---- GET /discovery/resources and /discovery/search ----


def _bounded(params: Mapping[str, str], name: str, default: int, low: int, high: int | None) -> int | Problem:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    number = int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 9 else None
    if number is None or number < low or (high is not None and number > high):
        bound = f"from {low} to {high}" if high is not None else f"of at least {low}"
        return Problem(400, "invalid_query", f"{name} must be an integer {bound}")
    return number


def _matches(item: Item, params: Mapping[str, str]) -> bool:
    """The bazaar's list filters: type, category, scheme, network, payTo (any offer), extensions (a key)."""
    offers = item.accepts
    checks = (
        ("type", lambda v: v == item.document["type"]),
        ("category", lambda v: v == item.category),
        ("scheme", lambda v: any(o.get("scheme") == v for o in offers)),
        ("network", lambda v: any(o.get("network") == v for o in offers)),
        ("payTo", lambda v: any(str(o.get("payTo", "")).lower() == v.lower() for o in offers)),
        ("extensions", lambda v: v in item.document["extensions"]),
    )
    return all(check(params[name]) for name, check in checks if params.get(name))


def list_page(items: list[Item], params: Mapping[str, str]) -> dict[str, Any] | Problem:
    limit = _bounded(params, "limit", LIMIT_DEFAULT, 1, LIMIT_MAX)
    offset = _bounded(params, "offset", 0, 0, None)
    if isinstance(limit, Problem):
        return limit
    if isinstance(offset, Problem):
        return offset
    selected = [item.document for item in items if _matches(item, params)]
    return {
        "x402Version": 2,
        "items": selected[offset : offset + limit],
        "pagination": {"limit": limit, "offset": offset, "total": len(selected)},
    }


def _score(item: Item, words: Iterable[str]) -> int | None:
    """None unless every word is in the item's text; more for words in its id or name."""
    score = 0
    for word in words:
        if word not in item.haystack:
            return None
        score += 2 if word in item.title else 1
    return score


def _words(query: str) -> list[str]:
    """The query's words, a trailing plural `s` let go ("earthquakes" finds "Earthquake")."""
    return [w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w for w in query.split()]


def search_page(items: list[Item], params: Mapping[str, str]) -> dict[str, Any] | Problem:
    query = (params.get("q") or params.get("query") or "").strip().lower()
    if not query or len(query) > QUERY_MAX:
        return Problem(400, "invalid_query", f"give q (or query): 1 to {QUERY_MAX} characters")
    limit = _bounded(params, "limit", LIMIT_DEFAULT, 1, LIMIT_MAX)
    cursor = _bounded(params, "cursor", 0, 0, None)
    if isinstance(limit, Problem):
        return limit
    if isinstance(cursor, Problem):
        return Problem(400, "invalid_query", "cursor must be the one a previous page gave")
    words = _words(query)
    hits = sorted(
        ((s, i, item) for i, item in enumerate(items) if _matches(item, params) and (s := _score(item, words))),
        key=lambda hit: (-hit[0], hit[1]),  # best first, then catalog order
    )
    page = hits[cursor : cursor + limit]
    following = cursor + limit if cursor + limit < len(hits) else None
    return {
        "x402Version": 2,
        "query": query,
        "resources": [item.document for _, _, item in page],
        "partialResults": following is not None,
        "pagination": {"limit": limit, "cursor": str(following) if following is not None else None},
        "total": len(hits),
    }


# ---- /.well-known/x402 ----


def manifest(pricing: Pricing, base: str) -> dict[str, Any]:
    """The x402 well-known manifest: this origin's paid resources, each a complete payment description."""
    resources = []
    for paid in paid_on_sale(pricing):
        required = pricing.payment_required(paid, base, None)
        stream = paid.stream
        resources.append(
            {
                "url": base + paid.path,
                "method": paid.route.split(" ", 1)[0],
                "description": paid.description,
                "mimeType": paid.mime_type,
                "accepts": [to_builtins(offer) for offer in required.accepts],
                "category": stream.category if stream is not None else "composite",
            }
        )
    return {
        "x402Version": 2,
        "kind": "resource-server",
        "name": SERVICE_NAME,
        "description": "World-state data sold per request over x402: weather, air, sea, rivers, hazards, space "
        "weather and more, every resource on sale now with the offers its 402 makes. Streams in maintenance are in "
        "the catalog but not here until they are sold again; unshared streams never appear.",
        "resources": resources,
        "discovery": {"resources": base + RESOURCES_PATH, "search": base + SEARCH_PATH},
        "links": {
            "catalog": base + "/v1/streams",
            "openapi": base + OPENAPI_PATH,
            "llms": base + LLMS_PATH,
            "mcp": base + MCP_PATH,
            "x402": base + WELL_KNOWN_PATH,
        },
        "updated": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
    }
