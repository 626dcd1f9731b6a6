"""Discovery for agents and tools: /.well-known/x402 (and .json), the bazaar's /discovery/resources and
/discovery/search (discovery_resources.py builds all four), /openapi.json (openapi.py) and /llms.txt (llms_txt.py).

Every document is built from the live pricing and registry (`services.pricing`, the `registry()`
getter), never from a copy: an operator's sharing change swaps both, and the next request sees it.
Each document is encoded once per (pricing, registry) pair and public base URL, and kept in a small
LRU; a new pricing or registry object empties it. The bazaar's list and search are built per request from
the resources listed once per (pricing, registry, base). They are free routes: the gate prices only the
paths the pricing lists.

What each one lists is what can be bought right now: the streams shared `ok`, /v1/world, and their
history and live routes. A stream in maintenance stays in the free catalog (/v1/streams) but is left
out here until it is sold again; an unshared stream appears nowhere.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from adapters import Registry
from app.edge.base_url import public_base_url
from app.edge.discovery_resources import (
    RESOURCES_PATH,
    SEARCH_PATH,
    WELL_KNOWN_JSON_PATH,
    Item,
    bazaar_items,
    list_page,
    manifest,
    search_page,
)
from app.edge.llms_txt import llms_txt
from app.edge.openapi import openapi
from app.runtime.settings import Settings
from app.usecases.paths import LLMS_PATH, OPENAPI_PATH, WELL_KNOWN_PATH
from app.usecases.pricing import Pricing
from app.usecases.queries import Problem
from app.usecases.services import Services
from payments import encode_json

DOCUMENTS_MAX = 64  # distinct (document, base URL) pairs kept encoded
_CACHE_CONTROL = "public, max-age=60"
_JSON = "application/json"
_TEXT = "text/plain; charset=utf-8"


# ---- the routes ----

Builder = Callable[[Pricing, Registry, str], bytes]
_BUILDERS: dict[str, tuple[Builder, str]] = {
    WELL_KNOWN_PATH: (lambda p, r, b: encode_json(manifest(p, b)), _JSON),
    WELL_KNOWN_JSON_PATH: (lambda p, r, b: encode_json(manifest(p, b)), _JSON),
    OPENAPI_PATH: (lambda p, r, b: encode_json(openapi(p, r, b)), _JSON),
    LLMS_PATH: (lambda p, r, b: llms_txt(p, r, b).encode(), _TEXT),
}
Page = Callable[[list[Item], dict[str, str]], dict[str, Any] | Problem]
_PAGES: dict[str, Page] = {RESOURCES_PATH: list_page, SEARCH_PATH: search_page}


class Documents:
    """The discovery documents, encoded once per (pricing, registry) and base URL."""

    def __init__(self, services: Services, registry: Callable[[], Registry], public_url: str | None) -> None:
        self.services = services
        self.registry = registry
        self.public_url = public_url
        self._source: tuple[Pricing, Registry] | None = None
        self._encoded: OrderedDict[tuple[str, str], bytes] = OrderedDict()
        self._items: OrderedDict[str, list[Item]] = OrderedDict()  # per base URL: the bazaar's listing

    def _current(self) -> Pricing | None:
        pricing = self.services.pricing
        if pricing is None:
            return None
        registry = self.registry()
        if self._source is None or self._source[0] is not pricing or self._source[1] is not registry:
            self._source = (pricing, registry)  # a sharing change (or startup): rebuild everything
            self._encoded.clear()
            self._items.clear()
        return pricing

    def items(self, base: str) -> list[Item] | None:
        """Every paid resource on sale as a bazaar item, built once per (pricing, registry) and base URL."""
        pricing = self._current()
        if pricing is None:
            return None
        found = self._items.get(base)
        if found is None:
            found = self._items[base] = bazaar_items(pricing, base)
            if len(self._items) > DOCUMENTS_MAX:
                self._items.popitem(last=False)
        return found

    def document(self, path: str, base: str) -> bytes | None:
        pricing = self._current()
        if pricing is None:
            return None
        registry = self.registry()
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
        base = public_base_url(request.scope, self.public_url)
        if path in _PAGES:
            return self.page(path, base, dict(request.query_params))
        encoded = self.document(path, base)
        if encoded is None:
            return _starting()
        headers = {"cache-control": _CACHE_CONTROL}  # CORS headers: app/edge/cors.py
        return Response(encoded, media_type=_BUILDERS[path][1], headers=headers)

    def page(self, path: str, base: str, params: dict[str, str]) -> Response:
        """A page of the bazaar's list or search: 400 for a malformed query, 503 while starting."""
        items = self.items(base)
        if items is None:
            return _starting()
        page = _PAGES[path](items, params)
        if isinstance(page, Problem):
            body = encode_json({"error": page.error, "message": page.message})
            return Response(body, page.status, media_type=_JSON, headers={"cache-control": "no-store"})
        return Response(encode_json(page), media_type=_JSON, headers={"cache-control": _CACHE_CONTROL})


def _starting() -> Response:
    body = encode_json({"error": "starting", "message": "the gateway is starting; try again shortly"})
    return Response(body, 503, media_type=_JSON, headers={"cache-control": "no-store", "retry-after": "1"})


def routes(services: Services, registry: Callable[[], Registry], settings: Settings) -> list[BaseRoute]:
    """The discovery routes; they read the live registry and prices, so sharing changes show at once."""
    documents = Documents(services, registry, settings.public_url)
    return [Route(path, documents.serve, methods=["GET", "HEAD"]) for path in (*_BUILDERS, *_PAGES)]
