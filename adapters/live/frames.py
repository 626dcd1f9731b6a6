"""A live frame: one stream's records as one refresh fetched them, or a change of the feed's status.

A frame is encoded once, when it is made (or arrives from another replica), and the same bytes go to every
subscriber: `sse` is the Server-Sent Events block, `ws` the WebSocket text. Data frames carry
`"feed_status": "ok"` and, as SSE `id:`, the observed time of the stream's newest record (ISO 8601 UTC), which a
reconnecting client sends back as `Last-Event-ID`; a status frame (`"feed_status": "unreachable"`, or `"ok"` on
a recovery that brought no records) has no id, so it never moves a client's resume point.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from ..history.snapshots import canonical_json, iso, unix, utc
from ..records import Record
from ..registry import Stream, StreamType

DATA = "data"
STATUS = "status"
OK = "ok"
UNREACHABLE = "unreachable"
_KINDS = (DATA, STATUS)
_STATUSES = (OK, UNREACHABLE)


def live(stream: Stream) -> bool:
    """A stream with a live feed: refreshed on a schedule for everyone (not per point, not bundled)."""
    return stream.type is not StreamType.STATIC and not stream.point and bool(stream.adapter and stream.interval_s)


def _compact(document: dict[str, Any]) -> bytes:
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


def sse_block(event: str, data: bytes, event_id: str | None = None) -> bytes:
    """One SSE event (the data is one line of JSON, so one `data:` field)."""
    head = b"event: " + event.encode() + b"\n"
    if event_id is not None:
        head += b"id: " + event_id.encode() + b"\n"
    return head + b"data: " + data + b"\n\n"


def ws_text(event: str, data: bytes, event_id: str | None = None) -> str:
    """One WebSocket message: {"event", "id"?, "data"} with the data's JSON as it is."""
    head = b'{"event":' + json.dumps(event).encode()
    if event_id is not None:
        head += b',"id":' + json.dumps(event_id).encode()
    return (head + b',"data":' + data + b"}").decode()


class Frame:
    __slots__ = ("at", "data", "id", "kind", "received", "sse", "status", "stream", "ws")

    def __init__(self, stream: str, kind: str, status: str, event_id: str | None, data: bytes, at: float) -> None:
        assert kind in _KINDS and status in _STATUSES
        self.stream = stream
        self.kind = kind
        self.status = status
        self.id = event_id
        self.data = data  # the JSON document
        self.at = at  # unix s: the fetch (data) or the change (status)
        self.sse = sse_block("frame", data, event_id)
        self.ws = ws_text("frame", data, event_id)
        self.received = 0.0  # loop time this process got it (set by the hub): how long subscribers lag

    def wire(self, origin: str) -> bytes:
        """As it crosses Redis pub/sub to the other replicas (no field holds a newline)."""
        fields = (origin, self.kind, self.status, self.stream, self.id or "", repr(self.at))
        return "\n".join(fields).encode() + b"\n" + self.data

    @classmethod
    def from_wire(cls, raw: bytes) -> tuple[str, Frame]:
        """(origin, frame); ValueError if it is not a frame's wire form."""
        parts = raw.split(b"\n", 6)
        if len(parts) != 7:
            raise ValueError("not a live frame")
        origin, kind, status, stream, event_id, at = (p.decode() for p in parts[:6])
        if kind not in _KINDS or status not in _STATUSES:
            raise ValueError("not a live frame")
        return origin, cls(stream, kind, status, event_id or None, parts[6], float(at))

    def __repr__(self) -> str:
        return f"Frame({self.stream}, {self.kind}, {self.status}, id={self.id})"


def observed_id(observed_at: float | None) -> str | None:
    return iso(utc(observed_at)) if observed_at is not None else None


def data_frame(stream: str, raw_records: bytes, count: int, observed_at: float | None, fetched_at: float) -> Frame:
    """A data frame from records as canonical JSON (a fetch's, or a snapshot the time machine kept)."""
    event_id = observed_id(observed_at)
    head = {"stream": stream, "feed_status": OK, "observed_at": event_id, "fetched_at": iso(utc(fetched_at))}
    data = _compact({**head, "count": count})[:-1] + b',"records":' + raw_records + b"}"
    return Frame(stream, DATA, OK, event_id, data, fetched_at)


def records_frame(stream: str, records: Iterable[Record], fetched_at: float) -> Frame:
    held = tuple(records)
    newest = max((r.observed_at for r in held), default=None)  # ISO 8601 UTC sorts as time
    return data_frame(stream, canonical_json(held), len(held), unix(newest) if newest else None, fetched_at)


def status_frame(stream: str, status: str, since: float, reason: str | None = None) -> Frame:
    document: dict[str, Any] = {"stream": stream, "feed_status": status, "since": iso(utc(since))}
    if reason:
        document["reason"] = reason[:300]
    return Frame(stream, STATUS, status, None, _compact(document), since)
