"""The query rules of the time machine's paid routes, and what a history read costs.

`GET /v1/streams/{id}/history?from=&to=[&step=][&limit=][&format=]` with the live read's record filters
(bbox, or lat/lon/radius_km), and `GET /v1/streams/{id}/at?t=` (the snapshot in force at t). Like every
paid route's rules these run before any quote (a malformed or oversized ask is a 400 that costs nothing),
and the handler parses the same way. The price follows what is asked: the number of snapshots the range
holds at the stream's cadence (or at `step`), capped by `limit`, in started blocks, each block at the
stream's own price; the 402 states it before anything is paid.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from adapters import FilterError, Filters, Sharing, Stream, parse_filters
from app.usecases.params import _BBOX as BBOX
from app.usecases.params import _RADIUS as RADIUS
from app.usecases.params import LAT, LON, QueryParam
from app.usecases.queries import Problem

HISTORY_ROUTE = "GET /v1/streams/{id}/history"
AT_ROUTE = "GET /v1/streams/{id}/at"
HISTORY_SUFFIX, AT_SUFFIX, COVERAGE_SUFFIX = "/history", "/at", "/coverage"
FORMATS = ("json", "ndjson", "csv")
STEP_S_MIN = 60.0
EPOCH_MIN, EPOCH_MAX = datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC)
RECORDS_ALL = 10**9  # the live read's `limit` counts records; history's counts snapshots: records are not cut


@dataclass(frozen=True)
class HistoryBounds:
    """What one history read may ask, and its price unit (settings: WORLDGATE_HISTORY_*)."""

    range_days_max: float = 366.0
    snapshots_max: int = 1000
    block_snapshots: int = 24
    bytes_max: int = 4 * 1024 * 1024  # a paid answer's cap (WORLDGATE_RESPONSE_BYTES_MAX): larger is not sold


@dataclass(frozen=True)
class HistoryQuery:
    start: datetime
    end: datetime
    step_s: float | None
    limit: int  # snapshots served at most (the ask's `limit`, else the bound)
    asked: int  # snapshots the range holds at the cadence, capped by `limit`: what is priced
    format: str
    filters: Filters

    def blocks(self, block_snapshots: int) -> int:
        return max(1, math.ceil(self.asked / block_snapshots))


@dataclass(frozen=True)
class AtQuery:
    moment: datetime
    filters: Filters


def parse_time(text: str | None, name: str) -> datetime | Problem:
    """ISO 8601 (a Z or an offset; none means UTC) or unix seconds, between 2000 and 2100."""
    if text is None or not text.strip():
        return Problem(400, "invalid_query", f"give {name}: a time as ISO 8601 (2024-05-20T00:00:00Z) or unix seconds")
    raw = text.strip()
    try:
        if raw.replace(".", "", 1).isdigit():
            moment = datetime.fromtimestamp(float(raw), UTC)
        else:
            moment = datetime.fromisoformat(raw.replace("Z", "+00:00").replace("z", "+00:00"))
            moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except (ValueError, OverflowError, OSError):
        return Problem(400, "invalid_query", f"{name} must be ISO 8601 (2024-05-20T00:00:00Z) or unix seconds")
    if not EPOCH_MIN <= moment < EPOCH_MAX:
        return Problem(400, "invalid_query", f"{name} must be between 2000 and 2100")
    return moment


def iso(moment: datetime) -> str:
    spec = "seconds" if moment.microsecond == 0 else "microseconds"
    return moment.astimezone(UTC).isoformat(timespec=spec).replace("+00:00", "Z")


def _filters(params: Mapping[str, str]) -> Filters | Problem:
    try:
        parsed = parse_filters({k: v for k, v in params.items() if k in ("bbox", "lat", "lon", "radius_km")})
    except FilterError as exc:
        return Problem(400, "invalid_query", str(exc))
    return replace(parsed, limit=RECORDS_ALL)


def _sold(stream: Stream) -> Problem | None:
    if stream.sharing is Sharing.MAINTENANCE:
        return Problem(503, "stream_in_maintenance", f"{stream.id} is in maintenance and not sold right now")
    return None


def _whole(text: str, name: str, low: int, high: int) -> int | Problem:
    if not (text.isascii() and text.isdigit()) or len(text) > 9 or not low <= int(text) <= high:
        return Problem(400, "invalid_query", f"{name} must be an integer from {low} to {high}")
    return int(text)


def history_query(stream: Stream, params: Mapping[str, str], bounds: HistoryBounds) -> HistoryQuery | Problem:
    if problem := _sold(stream):
        return problem
    start, end = parse_time(params.get("from"), "from"), parse_time(params.get("to"), "to")
    if isinstance(start, Problem):
        return start
    if isinstance(end, Problem):
        return end
    if end <= start:
        return Problem(400, "invalid_query", "to must be after from")
    span_s = (end - start).total_seconds()
    if end - start > timedelta(days=bounds.range_days_max):
        return Problem(400, "invalid_query", f"from..to spans more than {bounds.range_days_max:g} days: ask less")
    step_s: float | None = None
    if params.get("step"):
        try:
            step_s = float(params["step"])
        except ValueError:
            return Problem(400, "invalid_query", "step must be a number of seconds")
        if not math.isfinite(step_s) or not STEP_S_MIN <= step_s <= span_s:
            return Problem(400, "invalid_query", f"step must be from {STEP_S_MIN:g} seconds to the range's length")
    limit: int | None = None
    if params.get("limit"):
        parsed = _whole(params["limit"], "limit", 1, bounds.snapshots_max)
        if isinstance(parsed, Problem):
            return parsed
        limit = parsed
    form = params.get("format") or "json"
    if form not in FORMATS:
        return Problem(400, "invalid_query", f"format must be one of {', '.join(FORMATS)}")
    filters = _filters(params)
    if isinstance(filters, Problem):
        return filters
    cadence_s = step_s or float(stream.interval_s or 3600)
    in_range = math.floor(span_s / cadence_s) + 1  # ticks from `from` through `to`
    if limit is None and in_range > bounds.snapshots_max:
        least = math.ceil(span_s / (bounds.snapshots_max - 1)) if bounds.snapshots_max > 1 else span_s
        return Problem(
            400,
            "invalid_query",
            f"from..to holds about {in_range} snapshots at {cadence_s:g} s each, more than {bounds.snapshots_max}: "
            f"shorten the range, give step={max(least, STEP_S_MIN):g} or more, or a limit",
        )
    asked = min(in_range, limit) if limit is not None else in_range
    return HistoryQuery(start, end, step_s, limit or bounds.snapshots_max, asked, form, filters)


def at_query(stream: Stream, params: Mapping[str, str]) -> AtQuery | Problem:
    if problem := _sold(stream):
        return problem
    moment = parse_time(params.get("t"), "t")
    if isinstance(moment, Problem):
        return moment
    filters = _filters(params)
    return filters if isinstance(filters, Problem) else AtQuery(moment, filters)


# ---- as declared to clients (the 402's bazaar, the MCP tool's schema) ----

_FROM = QueryParam(
    "from",
    "string",
    "Start of the range, inclusive: ISO 8601 UTC or unix seconds.",
    "2024-05-20T00:00:00Z",
    required=True,
)
_TO = QueryParam(
    "to", "string", "End of the range, inclusive: ISO 8601 UTC or unix seconds.", "2024-05-21T23:00:00Z", required=True
)
_STEP = QueryParam(
    "step", "number", "At most one snapshot per this many seconds (the first of each step).", 3600, minimum=STEP_S_MIN
)
_LIMIT = QueryParam(
    "limit", "integer", "At most this many snapshots, oldest first (also caps the price).", 24, minimum=1
)
_FORMAT = QueryParam(
    "format",
    "string",
    "json (default), ndjson (a snapshot a line) or csv (a record a row).",
    "json",
    pattern="^(json|ndjson|csv)$",
)
_T = QueryParam(
    "t",
    "string",
    "The moment: ISO 8601 UTC or unix seconds; the snapshot in force then is sold.",
    "2024-05-21T12:00:00Z",
    required=True,
)
_AREA = (BBOX, LAT, LON, RADIUS)


def history_params(bounds: HistoryBounds) -> tuple[QueryParam, ...]:
    return (_FROM, _TO, _STEP, replace(_LIMIT, maximum=bounds.snapshots_max), _FORMAT, *_AREA)


AT_PARAMS = (_T, *_AREA)
