"""Live feeds' paid routes as the pricing table holds them, per live stream (adapters.live.live):

- `GET /v1/streams/{id}/live`: an SSE stream for one window (WORLDGATE_LIVE_WINDOW_S), paid on connect;
- `GET /v1/streams/{id}/live/ticket`: the same window as a short-lived ticket, for a browser's WebSocket or
  EventSource (which cannot send a payment header);
- `GET /v1/streams/{id}/live/renew?session=`: one more window for an open session, by batch-settlement voucher
  only (the in-band renewal; an `exact` session ends with its window and is bought again by reconnecting).

A window's price is the stream's tier's live price (WORLDGATE_LIVE_PRICE_TIERS), else LIVE_PRICE_MULTIPLE times
its per-request price. Built here as plain terms; Pricing adds the offers and the extensions.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from adapters import Sharing, Stream
from app.usecases.params import QueryParam
from app.usecases.paths import STREAM_PREFIX
from app.usecases.queries import Problem

LIVE_SUFFIX = "/live"
TICKET_SUFFIX = "/live/ticket"
RENEW_SUFFIX = "/live/renew"
EVENTS_SUFFIX = "/live/events"  # SSE by ticket (free: the ticket was paid)
WS_SUFFIX = "/ws"  # WebSocket by ticket
LIVE_ROUTE = "GET /v1/streams/{id}/live"
TICKET_ROUTE = "GET /v1/streams/{id}/live/ticket"
RENEW_ROUTE = "GET /v1/streams/{id}/live/renew"
BATCH_SCHEME = "batch-settlement"
SESSION_PATTERN = r"^s_[A-Za-z0-9_-]{16,64}$"
_SESSION = re.compile(SESSION_PATTERN)
SESSION_PARAM = QueryParam(
    "session",
    "string",
    "The live session to renew (its `window` event names it).",
    "s_3q2Yk8Vt0aQm1xLr",
    required=True,
    pattern=SESSION_PATTERN,
)


@dataclass(frozen=True)
class LiveTerms:
    """What live feeds cost: a window's length, and its price per tier (atomic units, parsed by Pricing)."""

    window_s: float
    tier_prices: Mapping[str, str | int] = field(default_factory=dict)
    multiple: int = 10  # a tier without a live price: this many per-request prices


def live_path(stream_id: str, suffix: str = LIVE_SUFFIX) -> str:
    return STREAM_PREFIX + stream_id + suffix


def window_text(window_s: float) -> str:
    minutes = window_s / 60
    return f"{minutes:g} minute{'s' if minutes != 1 else ''}" if window_s >= 60 else f"{window_s:g} s"


def _on_sale(stream: Stream) -> Problem | None:
    if stream.sharing is Sharing.MAINTENANCE:
        return Problem(503, "stream_in_maintenance", f"{stream.id} is in maintenance and not sold right now")
    return None


def _no_query(stream: Stream) -> Callable[[Mapping[str, str]], Problem | None]:
    return lambda _params: _on_sale(stream)


def _session_query(stream: Stream) -> Callable[[Mapping[str, str]], Problem | None]:
    def check(params: Mapping[str, str]) -> Problem | None:
        if not _SESSION.match(params.get("session", "")):
            return Problem(400, "invalid_query", "session must be the id a live stream's `window` event names")
        return _on_sale(stream)

    return check


def live_terms(stream: Stream, amount: int, tier: str | None, window_s: float) -> list[dict[str, Any]]:
    """The PaidRoute fields (all but offers) of a live stream's three paid routes; `scheme` (popped by Pricing)
    keeps a route's offers to one scheme."""
    window = window_text(window_s)
    common = {"stream": stream, "amount_atomic": amount, "price_tier": tier}
    return [
        {
            **common,
            "route": LIVE_ROUTE,
            "path": live_path(stream.id),
            "description": f"{stream.name}, live (Server-Sent Events): every refresh for {window}",
            "check": _no_query(stream),
            "mime_type": "text/event-stream",
        },
        {
            **common,
            "route": TICKET_ROUTE,
            "path": live_path(stream.id, TICKET_SUFFIX),
            "description": f"{stream.name}, live: a ticket for {window} of its WebSocket or EventSource",
            "check": _no_query(stream),
        },
        {
            **common,
            "route": RENEW_ROUTE,
            "path": live_path(stream.id, RENEW_SUFFIX),
            "description": f"{stream.name}, live: {window} more of an open session",
            "check": _session_query(stream),
            "params": (SESSION_PARAM,),
            "scheme": BATCH_SCHEME,
        },
    ]
