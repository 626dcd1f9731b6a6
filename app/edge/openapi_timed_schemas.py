"""The answers of the time machine's and live feeds' routes as /openapi.json describes them (components/schemas,
and the events a live connection sends), for app/edge/openapi_timed.py's operations."""

from __future__ import annotations

from typing import Any

JSON = "application/json"
SSE = "text/event-stream"
PROBLEM = {"$ref": "#/components/schemas/Problem"}
_RECORDS = {"type": "array", "items": {"$ref": "#/components/schemas/Record"}}
_TIME = {"type": "string", "format": "date-time"}
_URL = {"type": "string", "format": "uri"}


def problem(description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": PROBLEM}}}


def _object(properties: dict[str, Any], required: list[str], description: str = "") -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties, "required": required}
    if description:
        schema["description"] = description
    return schema


_SNAPSHOT = _object(
    {"t": _TIME, "observed_at": {"type": ["string", "null"], "format": "date-time"}, "records": _RECORDS},
    ["t", "observed_at", "records"],
    "One recorded state: when it took effect (`t`), its newest record's time, and its records.",
)
_WINDOW = _object(
    {
        "session": {"type": "string"},
        "stream": {"type": "string"},
        "scheme": {"type": "string"},
        "window_s": {"type": "number"},
        "window_end": {"type": ["string", "null"], "format": "date-time"},
        "ticket": {"type": "string"},
        "events": _URL,
        "ws": _URL,
        "renew": {"type": ["string", "null"], "format": "uri"},
    },
    ["session", "stream", "window_end", "ticket", "events", "ws"],
    "The `window` event: the session, when its paid window ends, its ticket (reopens it after a dropped "
    "connection), the ticketed EventSource and WebSocket URLs, and the renewal URL (batch-settlement only).",
)
_FRAME = _object(
    {
        "stream": {"type": "string"},
        "feed_status": {"type": "string", "enum": ["ok", "unreachable"]},
        "observed_at": {"type": ["string", "null"], "format": "date-time"},
        "fetched_at": _TIME,
        "count": {"type": "integer", "minimum": 0},
        "records": _RECORDS,
        "since": _TIME,
        "reason": {"type": "string"},
    },
    ["stream", "feed_status"],
    "The `frame` event: a refresh's records (`feed_status: ok`, its SSE id the newest record's time), or a change "
    "of the feed's status (`unreachable` with `since` and `reason`, once per outage; `ok` again when it is back).",
)
SCHEMAS: dict[str, Any] = {
    "HistoryAnswer": _object(
        {
            "stream": {"type": "string"},
            "from": _TIME,
            "to": _TIME,
            "step": {"type": ["number", "null"]},
            "source": {"type": "string", "enum": ["live", "replay"]},
            "count": {"type": "integer", "minimum": 0},
            "truncated": {"type": "boolean", "description": "More than `limit` snapshots are in the range."},
            "next_from": {**_TIME, "description": "Where the next read starts, when truncated."},
            "snapshots": {"type": "array", "items": {"$ref": "#/components/schemas/Snapshot"}},
            "license": {"type": "string"},
            "attribution": {"type": "string"},
        },
        ["stream", "from", "to", "count", "snapshots"],
    ),
    "Snapshot": _SNAPSHOT,
    "AtAnswer": _object(
        {
            "stream": {"type": "string"},
            "asked": _TIME,
            **_SNAPSHOT["properties"],
            "seen_until": {**_TIME, "description": "The last fetch that still found this state."},
            "gap": {"type": "boolean", "description": "`asked` is past the recording (a gap): the last state known."},
            "source": {"type": "string", "enum": ["live", "replay"]},
            "license": {"type": "string"},
            "attribution": {"type": "string"},
        },
        ["stream", "asked", "t", "observed_at", "records"],
    ),
    "Coverage": _object(
        {
            "stream": {"type": "string"},
            "earliest": {"type": ["string", "null"], "format": "date-time"},
            "latest": {"type": ["string", "null"], "format": "date-time"},
            "count": {"type": "integer", "minimum": 0},
            "interval_s": {"type": ["number", "null"]},
            "gap_bound_s": {"type": "number", "description": "A pause longer than this between snapshots is a gap."},
            "gap_count": {"type": "integer", "minimum": 0},
            "gaps": {
                "type": "array",
                "items": _object({"from": _TIME, "to": _TIME, "seconds": {"type": "number"}}, ["from", "to"]),
            },
            "backfill": {"type": ["object", "null"], "description": "The upstream's own past: source, max_days."},
            "history": {"type": "string", "description": "The stream's /history path."},
        },
        ["stream", "earliest", "latest", "count", "gaps"],
    ),
    "LiveWindow": _WINDOW,
    "LiveFrame": _FRAME,
    "LiveTicket": _object(
        {
            "ticket": {"type": "string"},
            "session": {"type": "string"},
            "stream": {"type": "string"},
            "window_s": {"type": "number"},
            "expires_in_s": {"type": "number", "description": "Open `ws` or `events` within this long."},
            "ws": _URL,
            "events": _URL,
            "renew": {"type": ["string", "null"], "format": "uri"},
            "message": {"type": "string"},
        },
        ["ticket", "session", "stream", "window_s", "expires_in_s", "ws", "events"],
    ),
    "LiveRenewal": _object(
        {
            "session": {"type": "string"},
            "renewed": {"type": "boolean"},
            "window_end": _TIME,
            "error": {"type": "string", "description": "`renewal_not_applied`: booked, but not applied."},
        },
        ["session", "renewed"],
    ),
}
EVENTS = {  # what a live connection sends, SSE `event:` (or the WebSocket message's `event`) → its data
    "window": {"$ref": "#/components/schemas/LiveWindow"},
    "frame": {"$ref": "#/components/schemas/LiveFrame"},
    "lagged": _object({"skipped": {"type": "integer"}}, ["skipped"], "Frames skipped: this client fell behind."),
    "payment-required": {
        "type": "object",
        "description": "The window ends. `final: true`: the live route's 402 document (its `accepts` are the next "
        "window's quote) and `reconnect`; nothing follows. `final: false` (batch-settlement): the renewal `url` to "
        "GET with the channel's next voucher, `amount`, `channelId`, `acceptedCumulative`, `requiredCumulative`, "
        "`window_end` and `deadline`.",
    },
}
STREAM_FLOW = (
    "Events: `window` first, then the last frame and each refresh as `frame` (SSE `id:` the newest record's "
    "time; reconnect with `Last-Event-ID` to replay what was observed after it, from the last 48 h, at most 100), "
    "`lagged` when this client fell behind and frames were skipped, `: heartbeat` comments in silences, and "
    "`payment-required` as the window ends (`final: true`: the stream closes; batch-settlement: the renewal URL, "
    "the stream pauses unpaid past its grace and ends). A client too far behind is dropped."
)
