"""The MCP server at /mcp (streamable HTTP, stateless): the API as tools, the paid ones sold by the checkout.

Free: `list_streams`, `search_streams`, `attribution`, `health`. Paid: `get_stream` (as GET /v1/streams/{id}, at
that stream's price, or by size at a finer grid's `resolution`) and `get_world_state` (as GET /v1/world). The
time machine adds `get_history` (paid) and `get_coverage` (free): app/mcp/history_tools.py. Live feeds (SSE,
WebSocket) are HTTP only. Each tool calls the read its HTTP handler
calls (app/usecases/reads.py) and returns that document as `structuredContent` and, as JSON text, in
`content[0]`; a document HTTP would send with a status of 400 or more is a tool error (`isError: true`).

Paid tools speak x402 v2's MCP transport (the x402 project's specs/transports-v2/mcp.md,
github.com/coinbase/x402), on the checkout HTTP uses:
  the arguments' rules first (app/usecases/queries.py, as the gate runs them) → a tool error, before any quote
  no `_meta["x402/payment"]`  → isError, structuredContent = the route's PaymentRequired (the 402's offers,
                                 resource `mcp://tool/<name>`), content[0].text = the same JSON
  `_meta["x402/payment"]`     → a PaymentPayload object (not base64): size cap → decode → `accepted` bound to
                                 one of this route's offers (app/usecases/binding.py) → the checkout
                                 (app/usecases/checkout.py: inspection, bans, payment-identifier, claim, verify,
                                 serve, settle, journal) → its reply (app/usecases/replies.py) as a tool result
  delivered                   → the data, `_meta["x402/payment-response"]` = the SettleResponse
  refused / not settled       → isError with a fresh PaymentRequired naming the reason (and, unsettled, the
                                 SettleResponse in `_meta` and in structuredContent, as the spec shows it)
  no data (e.g. nothing within max_age), banned, busy → isError with the error document; nothing charged

Stateless streamable HTTP: no session lives in a worker, so any uvicorn worker answers any request.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, replace
from typing import Any

from mcp.server import Server, ServerRequestContext
from mcp.server.streamable_http_manager import StreamableHTTPASGIApp, StreamableHTTPSessionManager
from mcp.shared.exceptions import MCPError
from mcp_types import (
    INVALID_PARAMS,
    CallToolRequestParams,
    CallToolResult,
    ListToolsResult,
    PaginatedRequestParams,
    TextContent,
    Tool,
    ToolAnnotations,
)
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from adapters import Stream
from app import __version__
from app.mcp.history_tools import history_tools
from app.runtime import metrics
from app.runtime.logs import bind
from app.runtime.settings import Settings
from app.usecases import binding
from app.usecases.checkout import Checkout
from app.usecases.history_reads import HistoryReads
from app.usecases.outcomes import Delivered, Refused, Served, Unavailable, Verified
from app.usecases.params import GRID_STREAM_PARAMS, WORLD_PARAMS, QueryParam, did_you_mean
from app.usecases.paths import MCP_PATH, STREAM_PREFIX, WORLD_PATH
from app.usecases.pricing import PaidRoute
from app.usecases.queries import Problem
from app.usecases.reads import UNKNOWN_STREAM, Answer, Reads, problem_answer
from app.usecases.replies import Kind, Reply, reply
from app.usecases.retries import Requested
from app.usecases.services import Services
from payments import Refusal, Settlement, encode_json, to_builtins

PAYMENT_META_KEY = "x402/payment"  # request `_meta`: the PaymentPayload, a JSON object
PAYMENT_RESPONSE_META_KEY = "x402/payment-response"  # result `_meta`: the SettleResponse
CACHE_META_KEY = "worldgate/cache"  # result `_meta`: what HTTP sends as X-Cache
# Extensions of the HTTP 402 that describe the HTTP interface (bazaar's `input` is an HTTP query): not
# repeated in a tool's PaymentRequired, whose input is the tool's schema.
HTTP_ONLY_EXTENSIONS = frozenset({"bazaar"})
INSTRUCTIONS = (
    "World-state data (weather, air quality, earthquakes, disaster alerts, natural events, the ISS, space "
    "weather, curated static sets), paid per call in USDC over x402 on Base or Solana. list_streams, "
    "search_streams, attribution and health are free. get_stream and get_world_state are paid: called without "
    'payment they answer isError with an x402 PaymentRequired; call again with params._meta["x402/payment"] = '
    "an x402 v2 PaymentPayload for one of its `accepts`. Nothing is charged unless the data is delivered."
)
HISTORY_INSTRUCTIONS = (
    " The time machine: get_coverage (free) says what a stream has recorded; get_history (paid the same way) sells "
    "a range of it, priced by the range asked (the PaymentRequired states the total)."
)
LIVE_INSTRUCTIONS = " Live feeds, where offered (Server-Sent Events, WebSocket), are HTTP only: see /llms.txt."


# ---- the tools' input schemas (the rules themselves are app/usecases/queries.py's, applied to every call) ----


def _object(properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        schema["required"] = list(required)
    return schema


def _arguments(params: tuple[QueryParam, ...], path_params: dict[str, Any] | None = None) -> dict[str, Any]:
    """A paid tool's input schema: the HTTP route's path parameters (required) and its declared query
    parameters (app/usecases/params.py: the ones the 402's bazaar and /openapi.json declare) as tool arguments."""
    leading = path_params or {}
    properties = {**leading, **{p.name: p.schema(full=True) for p in params}}
    return _object(properties, (*leading, *(p.name for p in params if p.required)))


_AT_A_POINT = "; point streams (weather.current, air.quality) need it and are read there."
_GRIDS_ONLY = "Grid streams with finer grids only (list_streams: `resolutions_deg`); elsewhere refused. "
WORLD_SCHEMA = _arguments(WORLD_PARAMS)
STREAM_SCHEMA = _arguments(
    tuple(
        replace(p, description=p.description[:-1] + _AT_A_POINT)
        if p.name in ("lat", "lon")
        else replace(p, description=_GRIDS_ONLY + p.description)
        if p.name == "resolution"
        else p
        for p in GRID_STREAM_PARAMS  # the union: each stream's own rules refuse what it does not take, as HTTP's
    ),
    {"id": {"type": "string", "minLength": 1, "description": "The stream's id, e.g. quakes.usgs (list_streams)."}},
)
CATALOG_SCHEMA = _object(
    {"category": {"type": "string", "description": "Only this category's streams, e.g. hazards or space."}}
)
SEARCH_SCHEMA = _object(
    {
        "q": {
            "type": "string",
            "minLength": 1,
            "maxLength": 100,
            "description": "Text found in a stream's id, name or description.",
        }
    },
    ("q",),
)
NO_ARGUMENTS = _object({})


def tool_params(arguments: Mapping[str, Any] | None, schema: Mapping[str, Any]) -> dict[str, str] | Problem:
    """A tool's arguments as the query parameters the HTTP route reads (strings), so app/usecases/queries.py judges
    them exactly as it judges a query string. Only types are checked here; ranges and combinations are the
    query rules'. JSON null means absent."""
    properties: Mapping[str, Any] = schema["properties"]
    params: dict[str, str] = {}
    for name, value in (arguments or {}).items():
        spec = properties.get(name)
        if spec is None:
            known = ", ".join(properties) or "no arguments"
            hint = did_you_mean(name, properties)
            return Problem(400, "invalid_query", f"unknown argument {name!r}{hint}; this tool takes {known}")
        if value is None:
            continue
        kind = spec["type"]
        if kind == "string":
            if not isinstance(value, str):
                return Problem(400, "invalid_query", f"{name} must be a string")
            params[name] = value
        elif isinstance(value, bool) or not isinstance(value, int | float):
            return Problem(400, "invalid_query", f"{name} must be {'an integer' if kind == 'integer' else 'a number'}")
        elif kind == "integer":
            if isinstance(value, float) and not value.is_integer():
                return Problem(400, "invalid_query", f"{name} must be an integer")
            params[name] = str(int(value)) if abs(value) < 10**18 else "1e999"  # str() refuses over 4300 digits
        elif isinstance(value, int) and abs(value) >= 10**18:  # out of every range; str() refuses over 4300 digits
            params[name] = "-1e999" if value < 0 else "1e999"
        else:
            params[name] = repr(value) if isinstance(value, float) else str(value)
    return params


# ---- tool results ----


def tool_result(document: Any, *, error: bool = False, meta: dict[str, Any] | None = None) -> CallToolResult:
    """`structuredContent` = the document, `content[0].text` = the same document as compact JSON."""
    return CallToolResult(
        content=[TextContent(text=encode_json(document).decode())],
        structured_content=document,
        is_error=error,
        _meta=meta or None,
    )


def answer_result(answer: Answer, meta: dict[str, Any] | None = None) -> CallToolResult:
    """An HTTP handler's answer as a tool result: its document, an error when HTTP's status is one."""
    extra = dict(meta or {})
    cache = (answer.headers or {}).get("x-cache")
    if cache is not None and answer.ok:
        extra[CACHE_META_KEY] = cache
    return tool_result(answer.document, error=not answer.ok, meta=extra)


class _GetHint:
    """A GET without `Accept: text/event-stream` (a browser, curl) is answered at once with how to call
    /mcp, instead of waiting on an event stream a stateless server never writes to."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        accept = b",".join(v for k, v in scope.get("headers", ()) if k == b"accept")
        if scope["type"] == "http" and scope["method"] in ("GET", "HEAD") and b"text/event-stream" not in accept:
            body = encode_json(
                {"error": "method_not_allowed", "message": "POST JSON-RPC to /mcp (streamable HTTP); see /llms.txt"}
            )
            headers = [
                (b"content-type", b"application/json"),
                (b"allow", b"POST"),
                (b"cache-control", b"no-store"),
                (b"content-length", str(len(body)).encode()),
            ]
            await send({"type": "http.response.start", "status": 405, "headers": headers})
            await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})
            return
        await self.app(scope, receive, send)


ToolCall = Callable[[dict[str, str], Mapping[str, Any]], Awaitable[CallToolResult]]  # (params, request _meta)


@dataclass(frozen=True)
class ToolSpec:
    name: str
    title: str
    description: str
    schema: dict[str, Any]
    call: ToolCall
    paid: bool = False


class McpServer:
    """The tools over the API's data functions and the services' checkout; `route()` mounts it, `run()` (in the
    app's lifespan) runs its session manager."""

    def __init__(self, api: Reads, services: Services, settings: Settings, history: HistoryReads | None = None) -> None:
        self.api = api  # read live: an operator's sharing change swaps api.registry and services.pricing
        self.services = services
        self.checkout = Checkout(services)
        self.payment_bytes_max = settings.payment_header_bytes_max
        self.response_bytes_max = settings.response_bytes_max
        self.tools = {
            spec.name: spec
            for spec in (
                ToolSpec(
                    "get_world_state",
                    "The world around a point",
                    "Paid, like GET /v1/world: weather and air quality at the point, earthquakes, GDACS disaster "
                    "alerts and EONET natural events within radius_km, the ISS and its distance, the latest Kp "
                    "index; each part with fetched_at, age_seconds, stale and freshness. Sold only when the "
                    "weather at the point is available.",
                    WORLD_SCHEMA,
                    self._world,
                    paid=True,
                ),
                ToolSpec(
                    "list_streams",
                    "Stream catalog",
                    "Free, like GET /v1/streams: every stream's id, name, description, category, type, interval, "
                    "price (atomic USDC units, networks), freshness, fetched_at and license.",
                    CATALOG_SCHEMA,
                    self._catalog,
                ),
                ToolSpec(
                    "get_stream",
                    "Read a stream",
                    "Paid at the stream's price (list_streams), like GET /v1/streams/{id}: its records within "
                    "bbox or radius_km of lat/lon (point streams are read at lat/lon), with fetched_at, "
                    "age_seconds, stale and freshness. On a grid stream, `resolution` (2, 5, 10 or 20 degrees) "
                    "reads a finer grid, priced by size as over HTTP: the stream's price per started 100 cells the "
                    "answer can hold; the PaymentRequired states the total.",
                    STREAM_SCHEMA,
                    self._stream,
                    paid=True,
                ),
                ToolSpec(
                    "search_streams",
                    "Search streams",
                    "Free, like GET /v1/streams/search: the streams whose id, name or description contain q.",
                    SEARCH_SCHEMA,
                    self._search,
                ),
                ToolSpec(
                    "attribution",
                    "Attribution",
                    "Free, like GET /v1/attribution: every stream's upstream, license and attribution.",
                    NO_ARGUMENTS,
                    self._attribution,
                ),
                ToolSpec(
                    "health",
                    "Health",
                    "Free, like GET /v1/health: status (ok, degraded or down) and its problems, version, uptime, "
                    "database, Redis and chain RPC checks, and per source its last fetch, freshness, last error "
                    "and circuit.",
                    NO_ARGUMENTS,
                    self._health,
                ),
            )
        }
        if history is not None:  # the time machine's tools: get_history (paid), get_coverage (free)
            self.tools.update({spec[0]: ToolSpec(*spec) for spec in history_tools(history, self._sell, answer_result)})
        self.server: Server[Any] = Server(
            "worldgate",
            version=__version__,
            title="worldgate",
            instructions=INSTRUCTIONS + (HISTORY_INSTRUCTIONS if history is not None else "") + LIVE_INSTRUCTIONS,
            on_list_tools=self._list_tools,
            on_call_tool=self._call_tool,
        )
        # JSON answers (no SSE stream to keep open) and no session: every request stands alone.
        self.session_manager = StreamableHTTPSessionManager(app=self.server, json_response=True, stateless=True)

    def route(self) -> Route:
        return Route(MCP_PATH, endpoint=_GetHint(StreamableHTTPASGIApp(self.session_manager)))

    def run(self) -> AbstractAsyncContextManager[None]:
        return self.session_manager.run()

    # ---- MCP handlers ----

    async def _list_tools(
        self, _ctx: ServerRequestContext[Any], params: PaginatedRequestParams | None
    ) -> ListToolsResult:
        tools = [
            Tool(
                name=spec.name,
                title=spec.title,
                description=spec.description,
                input_schema=spec.schema,
                annotations=ToolAnnotations(
                    title=spec.title, read_only_hint=True, open_world_hint=True, idempotent_hint=not spec.paid
                ),
                _meta={"worldgate/paid": spec.paid},
            )
            for spec in self.tools.values()
        ]
        return ListToolsResult(tools=tools)

    async def _call_tool(self, _ctx: ServerRequestContext[Any], params: CallToolRequestParams) -> CallToolResult:
        spec = self.tools.get(params.name)
        if spec is None:
            raise MCPError(INVALID_PARAMS, f"unknown tool {params.name!r}; tools/list lists them")
        bind(mcp_tool=spec.name)  # on every later log line of this call (the request id is bound already)
        query = tool_params(params.arguments, spec.schema)
        if isinstance(query, Problem):
            return answer_result(problem_answer(query))
        return await spec.call(query, dict(params.meta or {}))

    # ---- free tools ----

    async def _catalog(self, params: dict[str, str], meta: Mapping[str, Any]) -> CallToolResult:
        return answer_result(await self.api.catalog_answer(params.get("category")))

    async def _search(self, params: dict[str, str], meta: Mapping[str, Any]) -> CallToolResult:
        return answer_result(await self.api.search_answer(params.get("q")))

    async def _attribution(self, params: dict[str, str], meta: Mapping[str, Any]) -> CallToolResult:
        return answer_result(self.api.attribution_answer())

    async def _health(self, params: dict[str, str], meta: Mapping[str, Any]) -> CallToolResult:
        return answer_result(await self.api.health_answer())

    # ---- paid tools ----

    async def _stream(self, params: dict[str, str], meta: Mapping[str, Any]) -> CallToolResult:
        stream_id = params.pop("id", None)
        if not stream_id:
            return answer_result(problem_answer(Problem(400, "invalid_query", "give id: a stream id (list_streams)")))
        found = self.api.find_stream(stream_id)
        if isinstance(found, Answer):
            return answer_result(found)
        stream: Stream = found

        async def read() -> Answer:
            return await self.api.stream_answer(stream, params)

        return await self._sell("get_stream", STREAM_PREFIX + stream.id, params, meta, read)

    async def _world(self, params: dict[str, str], meta: Mapping[str, Any]) -> CallToolResult:
        async def read() -> Answer:
            return await self.api.world_answer(params)

        return await self._sell("get_world_state", WORLD_PATH, params, meta, read)

    async def _sell(
        self,
        tool: str,
        path: str,
        params: Mapping[str, str],
        meta: Mapping[str, Any],
        read: Callable[[], Awaitable[Answer]],
    ) -> CallToolResult:
        """One paid call, the HTTP gate's sequence in MCP terms (the module docstring)."""
        pricing = self.services.pricing
        if pricing is None:
            return self._render(tool, None, reply(Unavailable("starting", "payments are not ready yet")))
        paid = pricing.lookup(path)
        if paid is None:  # unshared since the stream was looked up: it does not exist to callers
            return answer_result(problem_answer(Problem(404, "unknown_stream", UNKNOWN_STREAM)))
        problem = paid.query(list(params.items()))
        if isinstance(problem, Problem):  # a query that cannot be served costs nothing: refused before any quote
            return answer_result(problem_answer(problem))
        paid = pricing.for_query(paid, problem)  # a history range is priced by what it asks
        raw = meta.get(PAYMENT_META_KEY)
        if raw is None:
            metrics.QUOTES(paid.path).inc()
            return self._payment_required(tool, paid, "Payment required", None)
        bound = binding.bind_object(
            raw,
            paid.offers,
            bytes_max=self.payment_bytes_max,
            name=PAYMENT_META_KEY,
            resources=(f"mcp://tool/{tool}", paid.path),  # this tool, or the HTTP route it sells
        )
        if isinstance(bound, Refusal):
            return self._render(tool, paid, reply(Refused(binding.refused(paid, bound, transport="mcp"))))
        payload, offer = bound

        async def serve(verified: Verified) -> Served:
            answer = await read()
            if not answer.ok:
                return Served(False, answer, f"handler_status_{answer.status}")
            if len(encode_json(answer.document)) > self.response_bytes_max:
                return Served(False, Answer(502, {"error": "response_too_large"}), "response_too_large")
            return Served(True, answer)

        def stored(delivered: Delivered) -> bytes:
            delivery = self._delivered(delivered.served.result, delivered.settlement)
            return delivery.model_dump_json(by_alias=True, exclude_none=True).encode()

        # A payment-identifier is bound to this call: the tool and its arguments (the stream's id is in the path).
        requested = Requested(f"tools/call {tool}", params)
        outcome = await self.checkout.pay(paid, payload, offer, serve, transport="mcp", store=stored, request=requested)
        if isinstance(outcome, Delivered):  # handed to the MCP session, which sends it
            await self.checkout.delivered(outcome)
        return self._render(tool, paid, reply(outcome))

    def _required(self, tool: str, paid: PaidRoute, error: str, message: str | None) -> dict[str, Any]:
        """The route's PaymentRequired, built by Pricing as the 402 is (the same offers), for this tool."""
        pricing = self.services.pricing
        assert pricing is not None
        document: dict[str, Any] = to_builtins(pricing.payment_required(paid, "", error))
        document["resource"] = {**document["resource"], "url": f"mcp://tool/{tool}"}
        declared = document.pop("extensions", None) or {}
        extensions = {k: v for k, v in declared.items() if k not in HTTP_ONLY_EXTENSIONS}
        if extensions:
            document["extensions"] = extensions
        if message:
            document["message"] = message
        networks = ", ".join(o.network for o in paid.offers)
        document["hint"] = (
            f"This call costs {pricing.display(paid.amount_atomic)} USDC ({paid.amount_atomic} atomic units), "
            f'payable on {networks}. Call the tool again with params._meta["{PAYMENT_META_KEY}"] = an x402 v2 '
            "PaymentPayload (a JSON object) for one of `accepts`; an x402 MCP client does this for you."
        )
        return document

    def _payment_required(self, tool: str, paid: PaidRoute, error: str, message: str | None) -> CallToolResult:
        return tool_result(self._required(tool, paid, error, message), error=True)

    def _delivered(self, answer: Answer, settlement: Settlement) -> CallToolResult:
        return answer_result(answer, {PAYMENT_RESPONSE_META_KEY: to_builtins(settlement.response())})

    def _render(self, tool: str, paid: PaidRoute | None, answer: Reply) -> CallToolResult:
        """A paid call's reply, as a tool result (`paid` is None only before there are prices: no quote)."""
        if answer.kind is Kind.DELIVERED:
            assert answer.served is not None and answer.settlement is not None
            return self._delivered(answer.served.result, answer.settlement)  # `_sell` marks it delivered
        if answer.kind is Kind.REPLAYED:
            assert answer.stored is not None
            return CallToolResult.model_validate_json(answer.stored)
        if answer.kind is Kind.ACKNOWLEDGED:  # no data: the receipt and a short document
            assert answer.settlement is not None
            receipt = to_builtins(answer.settlement.response())
            return tool_result(
                {**answer.fields, PAYMENT_RESPONSE_META_KEY: receipt}, meta={PAYMENT_RESPONSE_META_KEY: receipt}
            )
        if answer.kind is Kind.QUOTE:
            assert paid is not None and answer.error is not None
            quoted = replace(paid, offers=answer.offers) if answer.offers else paid
            return self._payment_required(tool, quoted, answer.error, answer.message)
        if answer.kind is Kind.NOT_SERVED:
            assert answer.served is not None
            return answer_result(answer.served.result)
        if answer.kind is Kind.UNSETTLED:
            assert paid is not None and answer.error is not None and answer.settlement is not None
            response = to_builtins(answer.settlement.response())
            if answer.retry_after is not None:  # pending: no fresh quote, which would invite a second payment
                pending = {**answer.document(), "retry_after": answer.retry_after, PAYMENT_RESPONSE_META_KEY: response}
                return tool_result(pending, error=True, meta={PAYMENT_RESPONSE_META_KEY: response})
            if answer.status == 409:  # not charged and spent: no fresh quote either, the receipt says why
                closed = {**answer.document(), PAYMENT_RESPONSE_META_KEY: response}
                return tool_result(closed, error=True, meta={PAYMENT_RESPONSE_META_KEY: response})
            document = self._required(tool, paid, answer.error, answer.message)
            document[PAYMENT_RESPONSE_META_KEY] = response
            return tool_result(document, error=True, meta={PAYMENT_RESPONSE_META_KEY: response})
        assert answer.kind is Kind.ERROR
        return tool_result(answer.document(), error=True)
