"""The adapter contract, and helpers every adapter uses."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from ..errors import ParseError
from ..records import Record

POINT_DECIMALS = 1  # cache key resolution of a point: 0.1 degree, about 11 km


@dataclass(frozen=True, slots=True)
class Point:
    lat: float
    lon: float

    def rounded(self) -> Point:
        """The point as cached: nearby requests share one upstream call and one cache entry."""
        return Point(round(self.lat, POINT_DECIMALS), round(self.lon, POINT_DECIMALS))

    def key(self) -> str:
        rounded = self.rounded()
        return f"{rounded.lat:.{POINT_DECIMALS}f},{rounded.lon:.{POINT_DECIMALS}f}"


@dataclass(frozen=True, slots=True)
class UpstreamRequest:
    host: str  # e.g. "earthquake.usgs.gov"; the fetcher maps it to https://host or to the replay server
    path: str  # starts with "/"
    params: tuple[tuple[str, str], ...] = ()


class Adapter(Protocol):
    """One upstream fetch. `name` is the fetch group the registry's streams point at."""

    name: str  # e.g. "usgs.earthquakes"
    host: str  # fixed; the only host this adapter ever calls
    point: bool  # True if the request needs a point (lat/lon), so the cache key carries it
    streams: tuple[str, ...]  # the stream ids one fetch feeds

    def request(self, point: Point | None) -> UpstreamRequest: ...

    def parse(self, body: bytes, point: Point | None) -> dict[str, list[Record]]:
        """Records per stream id (every id in `streams` present, possibly empty). Raises ParseError."""
        ...


def load_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ParseError(f"the body is not JSON: {str(exc)[:80]}") from None


def iso_from_ms(milliseconds: Any) -> str:
    """An epoch in milliseconds as an ISO 8601 UTC string (seconds precision)."""
    if not isinstance(milliseconds, int | float) or isinstance(milliseconds, bool):
        raise ParseError(f"{milliseconds!r} is not an epoch in milliseconds")
    return iso_from_s(milliseconds / 1000)


def iso_from_s(seconds: float) -> str:
    try:
        return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    except (OverflowError, OSError, ValueError):
        raise ParseError(f"{seconds!r} is not a time worldgate can represent") from None


def iso(text: Any) -> str:
    """A provider's timestamp ("2026-11-22 14:00:00.000", "2026-11-22T14:00Z", ...) as ISO 8601 UTC."""
    if not isinstance(text, str) or not text:
        raise ParseError(f"{text!r} is not a timestamp")
    cleaned = text.strip().replace(" ", "T").replace("Z", "+00:00")
    try:
        parsed = datetime.fromisoformat(cleaned)
    except ValueError:
        raise ParseError(f"{text!r} is not an ISO timestamp") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    except OverflowError:  # e.g. year 1 at +01:00: before the calendar once in UTC
        raise ParseError(f"{text!r} is outside the calendar in UTC") from None


def number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ParseError(f"{what} is {value!r}, not a number")
    return float(value)


def optional_number(value: Any) -> float | None:
    return None if value is None or isinstance(value, bool) or not isinstance(value, int | float) else float(value)


def split(fields: dict[str, Any], children: dict[str, tuple[str, ...]]) -> dict[str, dict[str, Any]]:
    """Field splitting: each child stream's share of one fetch's fields, for the children that got a value
    (a child whose fields are all missing from the answer has no record, rather than a record of nulls)."""
    out: dict[str, dict[str, Any]] = {}
    for child, names in children.items():
        share = {name: fields.get(name) for name in names}
        if any(value is not None for value in share.values()):
            out[child] = share
    return out
