"""One live connection within its paid window, in no transport's terms: what to send, when, and when to stop.

The writer waits on its subscriber (adapters/live/hub.py), takes what queued up, and hands the transport one
batch (`emit`): frames (encoded once for everyone), events (`lagged`, `window`, `payment-required`) and
heartbeats. The window is checked at its boundaries only (a timer wakes the writer):

- `exact` (or any session that cannot renew in-band): at the end, `payment-required` with the next quote, and
  the connection ends; nothing is sent past the window.
- `batch-settlement`: a little before the end, `payment-required` asks for the next voucher (the client pays
  the `url` it names, a paid GET its x402 client pays from its channel); renewed, the stream goes on and a
  `window` event gives the new end. Not renewed by the end, delivery pauses (frames held, heartbeats go on) for
  the grace period, then `payment-required` says it is final and the connection ends.
- A window that ends while the feed is unreachable is not charged for again: the stream goes on free, status
  frames only, and the next voucher is asked for when the feed is back (its first frame waits for it).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from adapters.live import DATA, UNREACHABLE, Frame, Subscriber
from app.usecases.live_sessions import Session

log = logging.getLogger("worldgate.live")
HEARTBEAT = "heartbeat"
POLL_S = 1.0  # while paused or free, how often the session is read back for a renewal
CONFIRM_POLL_S = 2.0  # after asking, how often (at most) a renewal is looked for before the end


@dataclass(frozen=True, slots=True)
class Event:
    name: str  # lagged | window | payment-required
    document: dict[str, Any]


Out = Frame | Event | str  # str: HEARTBEAT
Emit = Callable[[list[Out]], Awaitable[None]]


class Terms(Protocol):
    """What a stream needs of its session's terms (LiveFeeds provides them; a bench, trivial ones)."""

    renew_lead_s: float  # how long before its end a renewable window asks for the next voucher
    renew_grace_s: float  # how long a lapsed renewable window waits for it

    async def end_of(self, session: Session) -> float | None: ...

    async def ask(self, session: Session, ends: float, *, final: bool) -> dict[str, Any]: ...

    def window(self, session: Session, ends: float) -> dict[str, Any]: ...


class LiveStream:
    def __init__(self, subscriber: Subscriber, session: Session, terms: Terms, ends: float) -> None:
        self.sub = subscriber
        self.session = session
        self.terms = terms
        self.ends = ends  # unix s
        self.asked = False
        self.paused_at: float | None = None  # batch: the window lapsed unpaid; frames held
        self.free = False  # batch: the window lapsed while the feed was unreachable
        self.held: Frame | None = None
        self.reason = "open"
        self.check_at = 0.0  # unix s: when the window is looked at next
        self._timer: asyncio.TimerHandle | None = None

    # ---- the loop ----

    async def run(self, emit: Emit, opening: list[Out]) -> str:
        """Until the connection ends: why it did (closed, dropped, window_ended, unpaid)."""
        sub = self.sub
        if opening:
            await emit(opening)
            self._sent(opening)
        self._arm(time.time())
        try:
            while True:
                await sub.event.wait()
                if sub.closed or sub.dropped:
                    return "dropped" if sub.dropped else "closed"
                skipped, frames = sub.take()
                out: list[Out] = []
                if skipped:
                    sub.feed.stats.skipped += skipped
                    sub.feed.stats.lagged += 1
                    out.append(Event("lagged", {"skipped": skipped}))
                now = time.time()
                checked = now >= self.check_at
                ending = await self._boundary(now, out) if checked else False
                paused = self.paused_at
                self._pass(frames, now, out)
                if sub.beat:
                    sub.beat = False
                    if not out:
                        out.append(HEARTBEAT)
                if out:
                    await emit(out)
                    self._sent(out)
                if ending:
                    return self.reason
                if checked or self.paused_at != paused:
                    self._arm(now)
        finally:
            if self._timer is not None:
                self._timer.cancel()

    def _pass(self, frames: list[Frame], now: float, out: list[Out]) -> None:
        """What of the arrived frames may go out now (none past an unpaid window's end)."""
        for frame in frames:
            if self.free and frame.kind == DATA:  # the feed is back: the next window starts once paid
                self.free, self.paused_at = False, now
            if self.paused_at is not None:
                if frame.kind == DATA:
                    self.held = frame
                continue
            out.append(frame)

    def _sent(self, out: list[Out]) -> None:
        stats = self.sub.feed.stats
        oldest = 0.0
        for item in out:
            if isinstance(item, Frame):
                stats.sent += 1
                oldest = oldest or item.received
        if oldest:
            lag = asyncio.get_running_loop().time() - oldest
            if lag > stats.lag_max_s:
                stats.lag_max_s = lag

    # ---- the window ----

    def _arm(self, now: float) -> None:
        """Wake the writer at the window's next boundary (or soon, while a renewal is awaited)."""
        if self.paused_at is not None or self.free:
            at = now + POLL_S
        elif self.asked:
            at = min(self.ends, now + CONFIRM_POLL_S)
        elif self.session.renews_in_band:
            at = self.ends - self.terms.renew_lead_s
        else:
            at = self.ends
        if self._timer is not None:
            self._timer.cancel()
        self.check_at = at
        loop = asyncio.get_running_loop()
        self._timer = loop.call_at(loop.time() + max(0.0, at - now), self.sub.wake)

    async def _renewed(self) -> bool:
        """Whether the session's end moved (a renewal paid on any replica); if so, the stream goes on."""
        try:
            ends = await self.terms.end_of(self.session)
        except Exception as exc:  # Redis down: no renewal seen this time
            log.warning("live session unreadable", extra={"session": self.session.id, "error": type(exc).__name__})
            return False
        if ends is None or ends <= self.ends:
            return False
        self.ends, self.asked, self.free, self.paused_at = ends, False, False, None
        return True

    async def _boundary(self, now: float, out: list[Out]) -> bool:
        """The window's checks; True when the connection ends after this batch."""
        session = self.session
        if await self._renewed():
            out.append(Event("window", self.terms.window(session, self.ends)))
            if self.held is not None:
                out.append(self.held)
                self.held = None
            return False
        if not session.renews_in_band:
            if now < self.ends:
                return False
            out.append(Event("payment-required", await self.terms.ask(session, self.ends, final=True)))
            self.reason = "window_ended"
            return True
        unreachable = self.sub.feed.status == UNREACHABLE
        if now < self.ends:  # the lead before the end: ask once, unless the feed is down (then at its return)
            if not self.asked and not unreachable:
                out.append(Event("payment-required", await self.terms.ask(session, self.ends, final=False)))
                self.asked = True
            return False
        if self.paused_at is None and not self.free:
            if unreachable:
                self.free = True
                return False
            self.paused_at = now
        if self.paused_at is None:
            return False
        if not self.asked:
            out.append(Event("payment-required", await self.terms.ask(session, self.ends, final=False)))
            self.asked = True
        if now >= self.paused_at + self.terms.renew_grace_s:
            out.append(Event("payment-required", await self.terms.ask(session, self.ends, final=True)))
            self.reason = "unpaid"
            return True
        return False
