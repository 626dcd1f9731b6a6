"""The parts of /openapi.json beyond the public reads (app/edge/openapi.py): the admin API under /admin/api/, the
MCP endpoint, /metrics, and the answers any route may give before its handler runs: 405 (a method the path does
not take), 413 (a body over the cap), 429 (over a rate limit) and 431 (headers over the cap).

An admin path that takes no GET still declares `get`, answering 405: it is what the server does, and every
path of the document then has its GET (what a reader of the document, or a client, tries first)."""

from __future__ import annotations

from typing import Any

from ledger import PaymentState
from ledger.reports import Grouping

_JSON = "application/json"
_PROBLEM = {"$ref": "#/components/schemas/Problem"}
_DOCUMENT = {"$ref": "#/components/schemas/Document"}
GROUPS = [g.value for g in Grouping]
ADMIN_SECURITY = [{"adminBearer": []}, {"adminSession": []}]
STATES = [s.value for s in PaymentState]

# what any route may answer before its handler: referenced from every operation
ALWAYS = {
    "405": {"$ref": "#/components/responses/MethodNotAllowed"},
    "413": {"$ref": "#/components/responses/BodyTooLarge"},
    "429": {"$ref": "#/components/responses/RateLimited"},
    "431": {"$ref": "#/components/responses/HeadersTooLarge"},
}


def _problem(description: str) -> dict[str, Any]:
    return {"description": description, "content": {_JSON: {"schema": _PROBLEM}}}


def components() -> dict[str, Any]:
    """components.responses and components.securitySchemes this module's paths refer to."""
    rate = {"schema": {"type": "integer"}}
    return {
        "responses": {
            "MethodNotAllowed": {
                "description": "This path does not take that method (`method_not_allowed`); `Allow` lists the ones "
                "it takes.",
                "headers": {"Allow": {"schema": {"type": "string"}}},
                "content": {_JSON: {"schema": _PROBLEM}},
            },
            "BodyTooLarge": _problem("The request body is over the cap (`body_too_large`, WORLDGATE_BODY_BYTES_MAX)."),
            "RateLimited": {
                "description": "Over a rate limit of this address (`rate_limited`): free routes, quotes of paid ones, "
                "health and metrics each have their own; `retry_after` (and Retry-After) says when to try again.",
                "headers": {
                    "Retry-After": rate,
                    "RateLimit-Limit": rate,
                    "RateLimit-Remaining": rate,
                    "RateLimit-Reset": rate,
                },
                "content": {_JSON: {"schema": _PROBLEM}},
            },
            "HeadersTooLarge": _problem(
                "Too many header fields, or the request line and headers over the cap (`too_many_headers`, "
                "`headers_too_large`)."
            ),
            "AdminUnauthorized": _problem(
                "No admin token, or one that is expired, for another audience or badly signed (`unauthorized`); a "
                "change riding on the session cookie must also come from this site."
            ),
        },
        "securitySchemes": {
            "adminBearer": {
                "type": "http",
                "scheme": "bearer",
                "bearerFormat": "JWT",
                "description": "An admin token (`worldgate admin token --ttl 1h`): `sub`, `aud` and `exp` required, "
                "the algorithm pinned by the settings.",
            },
            "adminSession": {
                "type": "apiKey",
                "in": "cookie",
                "name": "wg_admin",
                "description": "The same token as the dashboard keeps it after sign-in (HttpOnly, SameSite=Strict).",
            },
        },
    }


def _query(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description, "schema": schema or {}}


def _path(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "description": description, "schema": {"type": "string"}}


WINDOW = [
    _query("from", "Start (a date or ISO time, UTC if no zone).", {"type": "string"}),
    _query("to", "End, exclusive (default: now).", {"type": "string"}),
]
PAYMENT_FILTERS = [
    _query("payer", "The payer's address (EVM lowercased for you).", {"type": "string"}),
    _query("stream", "A stream id (or a composite route's path).", {"type": "string"}),
    _query("network", "A CAIP-2 network id.", {"type": "string"}),
    _query("state", "A payment state.", {"type": "string", "enum": STATES}),
]
LIMIT = _query("limit", "How many at most.", {"type": "integer", "minimum": 1})
BEFORE = _query("before_id", "Keyset paging: only ids below this one.", {"type": "integer", "minimum": 1})


def _operation(
    summary: str,
    description: str,
    *,
    answer: str = "200",
    errors: dict[str, str] | None = None,
    parameters: list[dict[str, Any]] | None = None,
    body: dict[str, Any] | None = None,
) -> dict[str, Any]:
    responses: dict[str, Any] = {answer: {"description": "The answer.", "content": {_JSON: {"schema": _DOCUMENT}}}}
    responses["401"] = {"$ref": "#/components/responses/AdminUnauthorized"}
    for status, text in (errors or {}).items():
        responses[status] = _problem(text)
    responses["503"] = _problem("The ledger is not connected yet, or Postgres is unreachable.")
    operation: dict[str, Any] = {
        "summary": summary,
        "description": description,
        "tags": ["admin"],
        "security": ADMIN_SECURITY,
        "responses": {**responses, **ALWAYS},
    }
    if parameters:
        operation["parameters"] = parameters
    if body is not None:
        schema = {"type": "object", "properties": body, "additionalProperties": True}
        operation["requestBody"] = {"required": True, "content": {_JSON: {"schema": schema}}}
    return operation


def _no_get(takes: str) -> dict[str, Any]:
    """The `get` of a path that takes no GET: 405, as the server answers."""
    return {
        "summary": f"Not answered: this path takes {takes}",
        "tags": ["admin"],
        "responses": {"405": ALWAYS["405"]},
    }


def admin_paths() -> dict[str, Any]:
    """Every admin API route (api.py, console.py, console_actions.py, bans.py, refunds.py, history.py, live.py)."""
    op, bad = _operation, {"400": "A malformed query or body (`invalid_query`)."}
    stream, payment, finding = (
        _path("id", "A stream id."),
        _path("id", "A payment id."),
        _path("id", "A finding id."),
    )
    reason = {"reason": {"type": "string", "minLength": 1, "maxLength": 500}}
    paths = {
        "/admin/api/whoami": {"get": op("Who am I", "The token's subject, expiry and whether it rides a cookie.")},
        "/admin/api/system": {
            "get": op(
                "System health",
                "Version, uptime, mode (embedded or configured parts, mainnet, testnet or devnet networks, replay or "
                "live upstreams), connected users, sources fetched, total points, streams by sharing, and which "
                "actions this gateway offers.",
            )
        },
        "/admin/api/scheduler": {
            "get": op(
                "Scheduler",
                "The fetch tiers (interval, fetch every, total, shared, fresh, stale, never) and "
                "each stream's schedule (type, interval, elapsed, next in, freshness, sharing).",
            )
        },
        "/admin/api/matrix": {
            "get": op(
                "Source matrix",
                "Every stream, shared or not: category, type, upstream, interval, last fetch, "
                "freshness, health, sharing and who set it, points, price, parent fetch, backfill coverage.",
            )
        },
        "/admin/api/streams": {"get": op("Streams", "The source matrix's rows, without sharing provenance.")},
        "/admin/api/streams/{id}/sharing": {
            "get": _no_get("PUT"),
            "put": op(
                "Set a stream's sharing",
                "ok (sold), maintenance (listed, not sold) or not_shared (gone from every listing; its URL 404s). "
                "In force on every worker at once; kept in the audit log.",
                errors={**bad, "404": "No such stream."},
                parameters=[stream],
                body={"sharing": {"type": "string", "enum": ["ok", "maintenance", "not_shared"]}},
            ),
        },
        "/admin/api/streams/{id}/fetch": {
            "get": _no_get("POST"),
            "post": op(
                "Fetch a stream now",
                "Its source is asked past the cache's freshness (not past an open circuit). The outcome (fetched or "
                "failed, with the reason); the source watch runs at once after it. Kept in the audit log.",
                errors={**bad, "404": "No such stream.", "409": "A bundled stream: nothing to fetch."},
                parameters=[stream],
                body={"lat": {"type": "number"}, "lon": {"type": "number"}},
            ),
        },
        "/admin/api/users": {
            "get": op(
                "Connected users",
                "Admin sessions seen in the last two minutes, payers seen in the last hour, live-feed subscribers.",
            )
        },
        "/admin/api/bans": {
            "get": op(
                "Bans",
                "Payer and address bans in force, with reason, author, start and end; whether this "
                "gateway enforces address bans.",
            ),
            "post": op(
                "Ban a payer or an address",
                "Give `payer` or `address` (an IP or network), a `reason`, and optionally `expires_in_s` or "
                "`expires_at`. Refused at once on every worker; kept in the audit log.",
                answer="201",
                errors={**bad, "409": "Address bans are not enforced by this gateway's middleware."},
                body={
                    "payer": {"type": "string"},
                    "address": {"type": "string"},
                    **reason,
                    "expires_in_s": {"type": "integer", "minimum": 60},
                    "expires_at": {"type": "string", "format": "date-time"},
                },
            ),
        },
        "/admin/api/bans/{payer}": {
            "get": _no_get("the delete method"),
            "delete": op(
                "Lift a ban",
                "A payer, or an address or network. Kept in the audit log.",
                errors={"404": "Not banned."},
                parameters=[_path("payer", "A payer, or an IP address or network.")],
            ),
        },
        "/admin/api/audit": {
            "get": op(
                "Audit log",
                "Every admin change, newest first, with who made it (`system`: the source watch).",
                parameters=[
                    _query("action", "One action, or a prefix ending in '.' (ban.).", {"type": "string"}),
                    _query("actor", "Who acted.", {"type": "string"}),
                    BEFORE,
                    LIMIT,
                ],
            )
        },
        "/admin/api/api-status": {"get": op("API v1 status", "Requests per public route by status class.")},
        "/admin/api/reports": {
            "get": op(
                "Revenue report",
                "Revenue and outcomes grouped by hour, day, week, route, stream, network, asset or payer; JSON, CSV "
                "or a text table.",
                errors=bad,
                parameters=[
                    _query("group_by", "Grouping.", {"type": "string", "enum": GROUPS}),
                    _query("format", "Answer format.", {"type": "string", "enum": ["json", "csv", "table"]}),
                    *WINDOW,
                    *PAYMENT_FILTERS,
                ],
            )
        },
        "/admin/api/reports/summary": {
            "get": op("Revenue summary", "Totals over the window.", errors=bad, parameters=[*WINDOW, *PAYMENT_FILTERS])
        },
        "/admin/api/payments": {
            "get": op(
                "Search payments",
                "Newest first, keyset-paged; by payer, stream, network, scheme, state, time, tx hash or key.",
                errors=bad,
                parameters=[
                    *PAYMENT_FILTERS,
                    _query("scheme", "A scheme id, e.g. v2-eip155-exact.", {"type": "string"}),
                    _query("tx_hash", "A settlement transaction.", {"type": "string"}),
                    _query("payment_key", "A payment's key.", {"type": "string"}),
                    *WINDOW,
                    BEFORE,
                    LIMIT,
                ],
            )
        },
        "/admin/api/payments/summary": {
            "get": op(
                "Sales by network and scheme",
                "Sales, settled, revenue, unsettled value and payments never charged, per network and scheme.",
                errors=bad,
                parameters=WINDOW,
            )
        },
        "/admin/api/payments/pending": {
            "get": op(
                "Waiting for settlement",
                "Sales served but not final, the longest waiting first.",
                parameters=[LIMIT],
            )
        },
        "/admin/api/payments/{id}": {
            "get": op(
                "A payment",
                "With its events and journal lines.",
                errors={"404": "No such payment."},
                parameters=[payment],
            )
        },
        "/admin/api/payments/{id}/refund": {
            "get": _no_get("POST"),
            "post": op(
                "Refund a sale",
                "Pays the sale back (exact) or takes it off the channel's claim (a voucher). Kept with the reason.",
                answer="201",
                errors={**bad, "404": "No such payment.", "409": "Refunded already, or nothing was charged."},
                parameters=[payment],
                body=reason,
            ),
        },
        "/admin/api/refunds/{id}/sent": {
            "get": _no_get("POST"),
            "post": op(
                "Book a refund's transfer",
                "The transfer the operator sent from payTo to pay a refund owed, booked against its payable once the "
                "chain shows it moved exactly the refund's amount of the sale's token from payTo to the payer.",
                answer="201",
                errors={
                    **bad,
                    "404": "No such refund.",
                    "409": "Not owed, paid already, a transaction that paid another refund, or not landed yet.",
                    "422": "The transaction did not move the refund's amount from payTo to the payer.",
                    "503": "The chain did not answer; nothing was booked.",
                },
                parameters=[_path("id", "The refund (its id in GET /admin/api/refunds).")],
                body={"transaction": {"type": "string", "minLength": 1, "maxLength": 128}},
            ),
        },
        "/admin/api/refunds": {
            "get": op(
                "Refunds",
                "Newest first.",
                parameters=[_query("payment_id", "One payment's.", {"type": "integer"}), LIMIT],
            )
        },
        "/admin/api/reconcile": {
            "get": _no_get("POST"),
            "post": op(
                "Run reconcile",
                "Every open payment checked against its chain now; the run's report. Kept in the audit log.",
                errors={"503": "Reconciliation is not running in this process."},
            ),
        },
        "/admin/api/findings": {
            "get": op(
                "Reconcile findings",
                "Oldest first, by state.",
                parameters=[
                    _query("state", "A finding state.", {"type": "string", "enum": ["open", "acknowledged", "closed"]}),
                    LIMIT,
                ],
            )
        },
        "/admin/api/findings/{id}/{action}": {
            "get": _no_get("POST"),
            "post": op(
                "Acknowledge or close a finding",
                "`ack` or `close`, with a note kept with your name. Kept in the audit log.",
                errors={**bad, "404": "No such finding or action.", "409": "Closed already."},
                parameters=[finding, _path("action", "ack or close.")],
                body={"note": {"type": "string", "minLength": 1, "maxLength": 2000}},
            ),
        },
        "/admin/api/queue": {"get": op("Settlement queue", "Open payments by state, exposure, open flags, last runs.")},
        "/admin/api/batch/flush": {
            "get": _no_get("POST"),
            "post": op(
                "Flush batch settlement",
                "Claim every accepted voucher and sweep to payTo now. Kept in the audit log.",
                errors={"409": "Batch settlement is not offered here.", "502": "A chain call failed."},
            ),
        },
        "/admin/api/history": {"get": op("Time machine coverage", "Per recorded stream: coverage and backfill.")},
        "/admin/api/history/{id}/timeline": {
            "get": op(
                "A stream's timeline",
                "Its newest snapshots' times and record counts.",
                errors={"404": "Not a recorded stream."},
                parameters=[stream],
            )
        },
        "/admin/api/history/{id}/at": {
            "get": op(
                "A stream at a moment",
                "The snapshot in force at t.",
                errors={**bad, "404": "Nothing recorded."},
                parameters=[stream, _query("t", "Unix seconds or ISO 8601.", {"type": "string"})],
            )
        },
        "/admin/api/live": {
            "get": op("Live feeds", "Per feed: subscribers, keep-alive, last frame, counters (when live feeds are on).")
        },
        "/admin/api/live/{id}/{action}": {
            "get": _no_get("POST"),
            "post": op(
                "Keep a live feed alive, or stop",
                "`start` or `stop`. Kept in the audit log.",
                errors={"404": "No such feed or action."},
                parameters=[_path("id", "A feed (stream) id."), _path("action", "start or stop.")],
            ),
        },
    }
    return _with_path_parameters(paths)


def _with_path_parameters(paths: dict[str, Any]) -> dict[str, Any]:
    """Each templated path declares its parameters once for all its operations (its 405 `get` too)."""
    for path, item in paths.items():
        names = [part[1:-1] for part in path.split("/") if part.startswith("{")]
        if names:
            item["parameters"] = [_path(name, f"The {name}.") for name in names]
    return paths


def ops_paths() -> dict[str, Any]:
    """/mcp and /metrics."""
    rpc = {"type": "object", "description": "A JSON-RPC 2.0 message (MCP over streamable HTTP)."}
    return {
        "/mcp": {
            "get": {
                "summary": "Not answered: MCP clients POST",
                "description": "A GET (or HEAD) answers 405 with how to connect: streamable HTTP is POST here, "
                "stateless (no session, no server-sent stream).",
                "tags": ["mcp"],
                "responses": {"405": ALWAYS["405"]},
            },
            "post": {
                "summary": "The MCP server",
                "description": "Streamable HTTP, stateless, JSON answers: initialize, tools/list and tools/call. Free "
                "tools (list_streams, search_streams, attribution, health, get_coverage) answer at once; paid ones "
                "(get_stream, get_world_state, get_history) answer an x402 PaymentRequired as a tool error until "
                'called with params._meta["x402/payment"] = a PaymentPayload.',
                "tags": ["mcp"],
                "requestBody": {"required": True, "content": {_JSON: {"schema": rpc}}},
                "responses": {
                    "200": {"description": "The JSON-RPC answer.", "content": {_JSON: {"schema": rpc}}},
                    "406": {"description": "Accept must include application/json (and text/event-stream)."},
                    **ALWAYS,
                },
            },
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "description": "Counters and histograms of this gateway, and gauges read from Postgres and Redis. "
                "Scrape with Authorization: Bearer WORLDGATE_METRICS_TOKEN (or an admin token); without a metrics "
                "token set, also from this machine (never through a proxy).",
                "tags": ["ops"],
                "security": [{"metricsBearer": []}, {"adminBearer": []}, {}],
                "responses": {
                    "200": {
                        "description": "Prometheus text exposition.",
                        "content": {"text/plain; version=0.0.4": {"schema": {"type": "string"}}},
                    },
                    "401": _problem("No metrics or admin token (`unauthorized`)."),
                    **ALWAYS,
                },
            }
        },
    }


METRICS_SCHEME = {"metricsBearer": {"type": "http", "scheme": "bearer", "description": "WORLDGATE_METRICS_TOKEN."}}
