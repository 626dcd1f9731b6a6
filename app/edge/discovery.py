"""Discovery for agents and tools: /.well-known/x402 (here), /openapi.json (openapi.py) and /llms.txt
(llms_txt.py).

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
from app.edge.base_url import public_base_url
from app.edge.llms_txt import llms_txt
from app.edge.openapi import openapi
from app.runtime.settings import Settings
from app.usecases.paths import LLMS_PATH, MCP_PATH, OPENAPI_PATH, WELL_KNOWN_PATH
from app.usecases.pricing import Pricing
from app.usecases.services import Services
from payments import encode_json, to_builtins

DOCUMENTS_MAX = 64  # distinct (document, base URL) pairs kept encoded
_CACHE_CONTROL = "public, max-age=60"
_JSON = "application/json"
_TEXT = "text/plain; charset=utf-8"


# ---- /.well-known/x402 ----


def well_known(pricing: Pricing, registry: Registry, base: str) -> dict[str, Any]:
    """Every resource on sale with the exact offers and extensions of its 402, in the item shape of a
    bazaar discovery listing (`GET /discovery/resources`: resource, type, x402Version, accepts, ...)."""
    built = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    items = []
    for paid in pricing.routes_on_sale():
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
        headers = {"cache-control": _CACHE_CONTROL}  # CORS headers: app/edge/cors.py
        return Response(encoded, media_type=_BUILDERS[path][1], headers=headers)


def routes(services: Services, registry: Callable[[], Registry], settings: Settings) -> list[BaseRoute]:
    """The discovery routes; they read the live registry and prices, so sharing changes show at once."""
    documents = Documents(services, registry, settings.public_url)
    return [Route(path, documents.serve, methods=["GET", "HEAD"]) for path in _BUILDERS]
