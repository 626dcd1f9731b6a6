"""The time machine's and live feeds' parts of /openapi.json (app/edge/openapi.py assembles the document).

Paid routes get one path per stream, as the data reads do (their prices differ by stream): `/history` (priced by
the range asked: `x-402-pricing` says how, the 402 states the total), `/at`, `/live`, `/live/ticket` and
`/live/renew` (one fixed price each: `x-402-price`; a live price buys one window). The free routes are templates
over the streams they serve: `/coverage`, and the ticketed `/live/events` (SSE) and `/ws` (WebSocket, which
OpenAPI has no verb for: a `get` answering 101, with `x-websocket` saying what flows).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from adapters import Registry, Stream
from adapters.history import recorded
from adapters.live import live as has_live_feed
from app.edge.openapi_ops import ALWAYS
from app.edge.openapi_timed_schemas import EVENTS, JSON, SSE, STREAM_FLOW, problem
from app.usecases.history_queries import AT_ROUTE, COVERAGE_SUFFIX, HISTORY_ROUTE, STEP_S_MIN
from app.usecases.live_pricing import EVENTS_SUFFIX, LIVE_ROUTE, RENEW_SUFFIX, TICKET_ROUTE, WS_SUFFIX
from app.usecases.paths import STREAM_PREFIX
from app.usecases.pricing import ASSET_SYMBOL, PaidRoute, Pricing

_NOT_CHARGED = "nothing was charged"
_EPOCH_2000 = 946_684_800  # unix seconds of 2000-01-01, where the pricing probe's range starts
BaseOperation = Callable[[Pricing, PaidRoute], dict[str, Any]]  # openapi.py's paid operation of a route


def block_snapshots(paid: PaidRoute) -> int | None:
    """How many snapshots one block of a /history route buys (one price each): asked of the route's own pricing,
    the function its 402 quotes with, over a range with more snapshots than `limit`'s maximum."""
    most = next((int(p.maximum) for p in paid.params if p.name == "limit" and p.maximum), None)
    if paid.price_for is None or most is None or paid.amount_atomic <= 0:
        return None
    price_for, span = paid.price_for, {"from": str(_EPOCH_2000), "to": str(_EPOCH_2000 + int(most * STEP_S_MIN))}

    def blocks(limit: int) -> int | None:
        params = {**span, "step": f"{STEP_S_MIN:g}", "limit": str(limit)}
        return None if paid.check(params) is not None else price_for(params)[0] // paid.amount_atomic

    if blocks(1) != 1:
        return None
    low, high = 1, most  # the largest limit that is still one block
    while low < high:
        middle = (low + high + 1) // 2
        if blocks(middle) == 1:
            low = middle
        else:
            high = middle - 1
    return low


def _example_price(paid: PaidRoute, display: Callable[[int], str]) -> str | None:
    """A two-day range priced as its 402 would be (hourly steps if the stream's own cadence holds too many)."""
    assert paid.price_for is not None
    for params in (
        {"from": "2024-05-20T00:00:00Z", "to": "2024-05-21T23:00:00Z"},
        {"from": "2024-05-20T00:00:00Z", "to": "2024-05-21T23:00:00Z", "step": "3600"},
    ):
        if paid.check(params) is None:
            amount, text = paid.price_for(params)
            query = "&".join(f"{k}={v}" for k, v in params.items())
            return f"`?{query}` is quoted {display(amount)} {ASSET_SYMBOL} ({text})."
    return None


def _paid(base: dict[str, Any], operation_id: str, summary: str, tags: list[str], description: str) -> dict[str, Any]:
    """openapi.py's operation of the route, retold for this kind of route."""
    return {**base, "operationId": operation_id, "summary": summary, "tags": tags, "description": description}


def _ok(base: dict[str, Any], description: str, content: dict[str, Any], **headers: Any) -> dict[str, Any]:
    """A paid 200: its content, and the settlement receipt the gate adds."""
    receipt = {"PAYMENT-RESPONSE": base["responses"]["200"]["headers"]["PAYMENT-RESPONSE"]}
    return {"description": description, "headers": {**receipt, **headers}, "content": content}


def _paying(what: str) -> str:
    return (
        f"**Paying:** without a payment the answer is 402 with a PAYMENT-REQUIRED header (the quote of {what}); sign "
        "one of its offers with an x402 client and retry with PAYMENT-SIGNATURE. A query that breaks the rules, or "
        "has a parameter not listed here or one given twice, is refused with 400 before any quote or payment. A "
        "HEAD is quoted and never settled. Before any of that, like every route: 405, 413, 429 (over the rate "
        "limit of quotes from one address) or 431 (components/responses)."
    )


def _history(pricing: Pricing, paid: PaidRoute, base: dict[str, Any]) -> dict[str, Any]:
    stream = paid.stream
    assert stream is not None
    price, block = pricing.price(paid), block_snapshots(paid)
    cadence = float(stream.interval_s or 3600)
    blocks = f"block of {block} snapshots" if block else "block of snapshots"
    example = _example_price(paid, pricing.display)
    description = (
        f"{paid.description}.\n\n**Price:** follows the range asked: {price['usd']} ({price['amount_atomic']} atomic "
        f"units of {ASSET_SYMBOL}) per started {blocks} the range from..to holds at the stream's interval "
        f"({cadence:g} s) or at `step`, capped by `limit`; the 402 states the total for the range before anything is "
        f"paid{': ' + example if example else '.'}\n\n{_paying('the range')}\n\n"
        "Gives the snapshots from..to, oldest first, each with its records (bbox, or lat/lon/radius_km, filter "
        "them); `format=ndjson` is a snapshot a line, `format=csv` a record a row. A range holding more snapshots "
        "than `limit`'s maximum, or longer than the gateway's maximum (WORLDGATE_HISTORY_RANGE_DAYS_MAX), is "
        "refused with 400 naming a `step` that fits; nothing recorded in the range (404), an answer over the paid "
        "size cap (400 `answer_too_large`, naming a `to` that fits) or the store unreachable (503): not charged. "
        f"What is recorded: {STREAM_PREFIX}{stream.id}{COVERAGE_SUFFIX} (free)."
    )
    operation = _paid(
        base, f"history_{_slug(stream)}", f"{stream.name}: history", [stream.category, "history"], description
    )
    operation.pop("x-402-price")  # no one price: x-402-pricing says how the 402 computes it
    operation["x-402-pricing"] = {
        "unit": "block",
        "block_snapshots": block,
        "block_price": {**price, "tier": paid.price_tier},
        "interval_s": cadence,
        "formula": "block_price * ceil(n / block_snapshots), n = min(floor((to - from) / (step or interval_s)) + 1, "
        "limit)",
    }
    ok = {"schema": {"$ref": "#/components/schemas/HistoryAnswer"}, "example": paid.example}
    operation["responses"] = {
        **operation["responses"],
        "200": _ok(
            base,
            "The snapshots, once the payment settled.",
            {
                JSON: ok,
                "application/x-ndjson": {"schema": {"type": "string", "description": "A snapshot a line."}},
                "text/csv": {"schema": {"type": "string", "description": "A record a row, its fields as columns."}},
            },
        ),
        "400": problem(
            "The query breaks the rules or names an unknown parameter or one twice (`invalid_query`), or the answer "
            f"would be over the paid size cap (`answer_too_large`); {_NOT_CHARGED}."
        ),
        "404": problem(f"No such stream, or nothing recorded in the range (`no_history`); {_NOT_CHARGED}."),
        "503": _history_unavailable(),
    }
    return operation


def _history_unavailable() -> dict[str, Any]:
    """The 503 of the time machine's paid reads (history and at)."""
    return problem(
        "The stream is in maintenance, the history store is unreachable (`history_unavailable`), or payments "
        f"cannot be recorded; {_NOT_CHARGED}."
    )


def _at(pricing: Pricing, paid: PaidRoute, base: dict[str, Any]) -> dict[str, Any]:
    stream = paid.stream
    assert stream is not None
    price = pricing.price(paid)
    description = (
        f"{paid.description}: its records (bbox, or lat/lon/radius_km, filter them), when it took effect and "
        f"until when later fetches found it unchanged; `gap: true` when t is past the recording.\n\n**Price:** "
        f"{price['usd']} per request ({price['amount_atomic']} atomic units of {ASSET_SYMBOL}), the stream's own.\n\n"
        f"{_paying('the snapshot')}\n\nNothing recorded at or before t (404), or the store unreachable (503): not "
        "charged."
    )
    operation = _paid(
        base, f"at_{_slug(stream)}", f"{stream.name}: at a moment", [stream.category, "history"], description
    )
    ok = {"schema": {"$ref": "#/components/schemas/AtAnswer"}, "example": paid.example}
    operation["responses"] = {
        **operation["responses"],
        "200": _ok(base, "The snapshot, once the payment settled.", {JSON: ok}),
        "404": problem(f"No such stream, or nothing recorded at or before t (`no_history`); {_NOT_CHARGED}."),
        "503": _history_unavailable(),
    }
    return operation


def _live(pricing: Pricing, paid: PaidRoute, base: dict[str, Any]) -> dict[str, Any]:
    stream = paid.stream
    assert stream is not None
    price = pricing.price(paid)
    window = (
        f"**Price:** {price['usd']} per window ({price['amount_atomic']} atomic units of {ASSET_SYMBOL}; a window "
        "lasts WORLDGATE_LIVE_WINDOW_S)."
    )
    sold = (
        "A window is sold only when it can start: a feed unreachable, stale or empty (`feed_unreachable`, "
        "`feed_stale`, `feed_empty`) or live sessions not kept now (`live_unavailable`) is 503 before the "
        f"settlement, {_NOT_CHARGED}; too many live connections from this address or payer is 429 "
        "`too_many_live_connections` (Retry-After), before any charge."
    )
    slug, tags = _slug(stream), [stream.category, "live"]
    if paid.route == LIVE_ROUTE:
        description = f"{paid.description}.\n\n{window}\n\n{_paying('one window')} The payment rides on the connect: "
        description += f"the 200 is the event stream, with a `Live-Session` header.\n\n{STREAM_FLOW}\n\n{sold}"
        operation = _paid(base, f"live_{slug}", f"{stream.name}: live (SSE)", tags, description)
        ok = _ok(
            base,
            "The event stream for the window, once the payment settled.",
            {SSE: {"schema": {"type": "string"}, "x-events": EVENTS}},
            **{"Live-Session": {"description": "The session's id.", "schema": {"type": "string"}}},
        )
        missing = "No such stream, or it has no live feed (`no_live_feed`)."
    elif paid.route == TICKET_ROUTE:
        description = (
            f"{paid.description}, for a browser (its WebSocket and EventSource cannot send a payment header).\n\n"
            f"{window}\n\n{_paying('one window')}\n\nOpen `ws` ({STREAM_PREFIX}{stream.id}{WS_SUFFIX}?ticket=, a "
            f"WebSocket) or `events` ({STREAM_PREFIX}{stream.id}{EVENTS_SUFFIX}?ticket=, SSE) within `expires_in_s`; "
            f"the window starts then. The ticket reopens the session after a dropped connection until the window "
            f"ends. {sold}"
        )
        operation = _paid(base, f"live_ticket_{slug}", f"{stream.name}: live ticket", tags, description)
        ok = _ok(
            base,
            "The ticket, once the payment settled.",
            {JSON: {"schema": {"$ref": "#/components/schemas/LiveTicket"}}},
        )
        missing = "No such stream, or it has no live feed (`no_live_feed`)."
    else:
        description = (
            f"{paid.description}: the in-band renewal a batch-settlement session's `payment-required` event names "
            f"(`?session=`), paid with the channel's next voucher (batch-settlement offers only).\n\n{window}\n\n"
            f"{_paying('one window')}\n\nThe window is extended once the voucher is booked, never before; the stream "
            "then sends a `window` event with the new end. Another payer's session: 403 `not_your_session`."
        )
        operation = _paid(base, f"live_renew_{slug}", f"{stream.name}: renew a live window", tags, description)
        ok = _ok(
            base,
            "Renewed (`renewed: true` and the new `window_end`), once the voucher is booked.",
            {JSON: {"schema": {"$ref": "#/components/schemas/LiveRenewal"}}},
        )
        missing = f"No such session on this stream (`unknown_session`), or no live feed; {_NOT_CHARGED}."
        operation["responses"] = {
            **operation["responses"],
            "403": problem(
                "The payer is banned (`payer_banned`), or the session was opened by another payer "
                f"(`not_your_session`); {_NOT_CHARGED}."
            ),
        }
    operation["responses"] = {
        **operation["responses"],
        "200": ok,
        "404": problem(missing),
        "503": problem(
            "The stream is in maintenance, its feed cannot be sold now (`feed_unreachable`, `feed_stale`, "
            f"`feed_empty`, `live_unavailable`), or payments cannot be recorded; {_NOT_CHARGED}."
        ),
    }
    return operation


def _slug(stream: Stream) -> str:
    return stream.id.replace(".", "_")


def _last_event_id() -> dict[str, Any]:
    return {
        "name": "Last-Event-ID",
        "in": "header",
        "required": False,
        "description": "Reconnecting: the last frame's id; the states observed after it are replayed first.",
        "schema": {"type": "string"},
    }


def _stream_id(ids: list[str], what: str) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string", "enum": ids} if ids else {"type": "string"}
    return {"name": "id", "in": "path", "required": True, "description": what, "schema": schema}


def _ticket() -> dict[str, Any]:
    return {
        "name": "ticket",
        "in": "query",
        "required": True,
        "description": "The ticket of a paid window (/live/ticket, or the `window` event).",
        "schema": {"type": "string"},
    }


def _free_templates(registry: Registry, live_on: bool) -> dict[str, Any]:
    streams = registry.all()
    history_ids = [s.id for s in streams if recorded(s)]
    paths: dict[str, Any] = {
        STREAM_PREFIX + "{id}" + COVERAGE_SUFFIX: {
            "parameters": [_stream_id(history_ids, "A recorded stream (realtime, grid, snapshot; not per point).")],
            "get": {
                "operationId": "coverage",
                "summary": "What history is recorded",
                "description": "Free: a recorded stream's earliest and latest snapshot, how many, the gaps in its "
                "recording, and its backfill (cached 30 s).",
                "tags": ["free", "history"],
                "responses": {
                    "200": {
                        "description": "The coverage.",
                        "content": {JSON: {"schema": {"$ref": "#/components/schemas/Coverage"}}},
                    },
                    "404": problem("No such stream, or it is not recorded (`no_history`)."),
                    "503": problem("The history store is unreachable (`history_unavailable`)."),
                    **ALWAYS,
                },
            },
        }
    }
    if not live_on:
        return paths
    live_id = _stream_id([s.id for s in streams if has_live_feed(s)], "A stream with a live feed.")
    refused = {
        "401": problem("No such ticket for this stream, or its time to be used is over (`invalid_ticket`)."),
        "404": problem("No such stream, or it has no live feed (`no_live_feed`)."),
        "409": problem("The session is open on another connection (`session_in_use`)."),
        "503": problem("Live sessions cannot be kept right now (`live_unavailable`)."),
    }
    paths[STREAM_PREFIX + "{id}" + EVENTS_SUFFIX] = {
        "parameters": [live_id],
        "get": {
            "operationId": "liveEvents",
            "summary": "Live feed by ticket (SSE)",
            "description": "An EventSource's stream of a paid window (no payment here: the ticket was paid), opened "
            f"or reopened until the window ends. {STREAM_FLOW} Too many live connections from this address or "
            "payer: 429 `too_many_live_connections`.",
            "tags": ["live"],
            "parameters": [_ticket(), _last_event_id()],
            "responses": {
                "200": {
                    "description": "The event stream, with a `Live-Session` header.",
                    "content": {SSE: {"schema": {"type": "string"}, "x-events": EVENTS}},
                },
                "204": {"description": "The window is over: an EventSource stops reconnecting."},
                **refused,
                **ALWAYS,
            },
        },
    }
    paths[STREAM_PREFIX + "{id}" + WS_SUFFIX] = {
        "parameters": [live_id],
        "get": {
            "operationId": "liveWebSocket",
            "summary": "Live feed by ticket (WebSocket)",
            "description": "A WebSocket, not a plain GET: the upgrade request (`Connection: Upgrade`, `Upgrade: "
            'websocket`) is answered 101 and the window\'s events follow as JSON text messages `{"event", "id", '
            '"data"}` (`x-websocket`), until the window ends. Needs the ticket of a paid window (/live/ticket, or '
            "the `window` event); nothing is paid here. A refusal comes after the upgrade: one `error` message "
            "(`{error, message}`: `invalid_ticket`, `no_live_feed`, `session_in_use`, `too_many_live_connections`, "
            "`live_unavailable`) and close code 1008. A window already over: `payment-required` (final), then 1008.",
            "tags": ["live"],
            "parameters": [
                _ticket(),
                {**_last_event_id(), "name": "last_event_id", "in": "query"},
            ],
            "x-websocket": {
                "messages": {"schema": {"type": "object", "properties": {"event": {"type": "string"}, "data": {}}}},
                "events": {**EVENTS, "heartbeat": {"description": '`{"event": "heartbeat"}` in silences.'}},
                "close": {
                    "1000": "The window ended, or was not renewed.",
                    "1008": "Refused (the `error` message says why), or the window is over.",
                    "4008": "Dropped: this client fell too far behind.",
                },
            },
            "responses": {
                "101": {"description": "Switching Protocols: the WebSocket is open."},
                "403": {"description": "The address is banned by the operator: closed before the handshake."},
                "404": problem("Not a WebSocket upgrade: a plain HTTP request finds no route here (`not_found`)."),
                **{status: ALWAYS[status] for status in ("413", "429", "431")},  # any other method: 404 too
            },
        },
    }
    return paths


def _renew_not_offered(registry: Registry) -> dict[str, Any]:
    """/live/renew when no batch-settlement is offered: the route answers, but sells nothing."""
    live_id = _stream_id([s.id for s in registry.all() if has_live_feed(s)], "A stream with a live feed.")
    return {
        STREAM_PREFIX + "{id}" + RENEW_SUFFIX: {
            "parameters": [live_id],
            "get": {
                "operationId": "liveRenewNotOffered",
                "summary": "Renew a live window: not offered here",
                "description": "Renewals are paid in-band with batch-settlement vouchers, and this gateway offers no "
                "batch-settlement: an `exact` window ends with its final `payment-required` event; buy the next "
                "window by connecting to /live again (or buying a ticket).",
                "tags": ["live"],
                "responses": {
                    "404": problem(
                        "Renewals are not offered here (`renewal_not_offered`), no such stream, or it has no live "
                        "feed (`no_live_feed`)."
                    ),
                    **ALWAYS,
                },
            },
        }
    }


def timed_paths(pricing: Pricing, registry: Registry, base: BaseOperation) -> dict[str, Any]:
    """The history and live paths: per stream on sale for the paid routes, templates for the free ones."""
    paths: dict[str, Any] = {}
    for paid in pricing.history_routes():
        if paid.on_sale:
            build = _history if paid.route == HISTORY_ROUTE else _at
            assert paid.route in (HISTORY_ROUTE, AT_ROUTE)
            paths[paid.path] = {"get": build(pricing, paid, base(pricing, paid))}
    lives = pricing.live_routes()
    for paid in lives:
        if paid.on_sale:
            paths[paid.path] = {"get": _live(pricing, paid, base(pricing, paid))}
    paths.update(_free_templates(registry, bool(lives)))
    if lives and not any(p.path.endswith(RENEW_SUFFIX) for p in lives):
        paths.update(_renew_not_offered(registry))
    return paths
