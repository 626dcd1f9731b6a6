"""What a live connection tells its client about its session: the `window` event, and `payment-required`.

- `window`: the session's id, when its window ends, its ticket (to reopen it after a dropped connection, or
  from a browser), the ticketed EventSource and WebSocket URLs, and the renewal URL (batch-settlement).
- `payment-required`, asking in-band: the renewal URL (a paid GET: an x402 client pays it from its channel),
  the amount, the channel and its cumulative amounts (accepted so far, required by the next voucher), the
  window's end and the deadline after which the stream ends. MPP's `payment-need-voucher` carries the same.
- `payment-required`, final (an `exact` window's end, or a renewal never paid): the live route's 402 document
  (its `accepts` are the next quote) with `final: true`, and the URL to reconnect to. Nothing follows it.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import ledger
from adapters.history.snapshots import iso, utc
from app.usecases.live_feeds import LiveFeeds
from app.usecases.live_pricing import EVENTS_SUFFIX, RENEW_SUFFIX, WS_SUFFIX, live_path
from app.usecases.live_sessions import Session
from app.usecases.services import Services
from ledger import channels

log = logging.getLogger("worldgate.live")
RENEW_LEAD_S_MAX = 30.0  # a renewable window asks this long before its end (a fifth of a short window)


def when(unix_s: float) -> str | None:
    return iso(utc(unix_s)) if unix_s else None


class SessionTerms:
    """The terms of one connection's session, as its URLs name them (`base_url`: this request's public URL)."""

    def __init__(self, feeds: LiveFeeds, services: Services, base_url: str) -> None:
        self.feeds = feeds
        self.services = services
        self.base_url = base_url
        window_s = feeds.settings.window_s
        self.renew_lead_s = min(RENEW_LEAD_S_MAX, window_s / 5)
        self.renew_grace_s = feeds.settings.renew_grace_s

    async def end_of(self, session: Session) -> float | None:
        assert self.feeds.sessions is not None
        return await self.feeds.sessions.end_of(session.id)

    def renew_url(self, session: Session) -> str | None:
        pricing = self.services.pricing
        path = live_path(session.stream, RENEW_SUFFIX)
        if pricing is None or pricing.lookup(path) is None:
            return None  # no batch-settlement offered: a window is bought again by reconnecting
        return f"{self.base_url}{path}?session={session.id}"

    def window(self, session: Session, ends: float) -> dict[str, Any]:
        base, ticket = self.base_url, session.ticket
        ws_base = "ws" + base[len("http") :] if base.startswith("http") else base
        return {
            "session": session.id,
            "stream": session.stream,
            "scheme": session.scheme,
            "window_s": session.window_s,
            "window_end": when(ends),
            "ticket": ticket,
            "events": f"{base}{live_path(session.stream, EVENTS_SUFFIX)}?ticket={ticket}",
            "ws": f"{ws_base}{live_path(session.stream, WS_SUFFIX)}?ticket={ticket}",
            "renew": self.renew_url(session) if session.renews_in_band else None,
        }

    async def ask(self, session: Session, ends: float, *, final: bool) -> dict[str, Any]:
        if final or not session.renews_in_band:
            return self._quote(session, ends)
        pool = self.services.pool
        accepted: int | None = None
        try:
            held = await channels.channel(pool, session.channel) if pool is not None else None
            accepted = held.charged_atomic if held is not None else None
        except ledger.LedgerError:
            log.warning("the channel could not be read for a renewal", extra={"session": session.id})
        return {
            "session": session.id,
            "final": False,
            "scheme": session.scheme,
            "network": session.network,
            "url": self.renew_url(session),
            "amount": str(session.price),
            "channelId": session.channel,
            "acceptedCumulative": None if accepted is None else str(accepted),
            "requiredCumulative": None if accepted is None else str(accepted + session.price),
            "window_end": when(ends),
            "deadline": when(max(ends, time.time()) + self.renew_grace_s),
        }

    def _quote(self, session: Session, ends: float) -> dict[str, Any]:
        """The live route's 402 document: its `accepts` are what the next window costs."""
        path = live_path(session.stream)
        pricing = self.services.pricing
        paid = pricing.lookup(path) if pricing is not None else None
        document: dict[str, Any] = json.loads(pricing.quote(paid, self.base_url).body) if paid and pricing else {}
        document.pop("extensions", None)  # the route's declarations: the quote's header carries them, not needed here
        document["error"] = "the paid window ended; pay again to go on"
        return {
            **document,
            "session": session.id,
            "final": True,
            "window_end": when(ends),
            "reconnect": self.base_url + path,
        }
