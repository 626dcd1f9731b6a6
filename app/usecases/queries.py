"""The query rules of the paid routes, checked before any payment is taken.

The gate runs these on every request to a paid path, before quoting and before decoding a payment,
so a malformed query costs the caller nothing (400 with a reason) and never reaches the ledger;
the handlers parse the same way, so gate and handler cannot disagree. With upstreams replayed, a point
read is sold only near a point that has a recording (`coverage`, which the app passes in replay mode;
live, the default, answers anywhere): elsewhere it is refused here, before any quote, naming the
recorded points.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from adapters import (
    STREAMS,
    Coverage,
    FilterError,
    Filters,
    Point,
    Sharing,
    Stream,
    distance_km,
    live_coverage,
    parse_filters,
    parse_max_age,
)

WORLD_RADIUS_KM_DEFAULT = 500.0
WORLD_RADIUS_KM_MAX = 5000.0
WORLD_CORE = next(s for s in STREAMS if s.id == "weather.current")  # /v1/world is not sold without it


@dataclass(frozen=True)
class Problem:
    status: int
    error: str
    message: str


@dataclass(frozen=True)
class StreamQuery:
    filters: Filters
    point: Point | None  # the location a per-point stream is read at
    max_age_s: float | None
    resolution: int | None = None  # a grid stream's finer grid, in degrees (None: its default grid)


def parse_resolution(stream: Stream, params: Mapping[str, str]) -> int | Problem | None:
    """`resolution=` of a grid stream that has finer grids: one of them, in whole degrees."""
    raw = params.get("resolution")
    if raw is None:
        return None
    offered = ", ".join(map(str, stream.resolutions))
    if not stream.resolutions:
        return Problem(400, "invalid_query", f"{stream.id} has no finer grids: resolution does not apply")
    if not (raw.isascii() and raw.isdigit()) or int(raw) not in stream.resolutions:
        return Problem(400, "invalid_query", f"resolution must be one of {offered} (degrees)")
    return int(raw)


@dataclass(frozen=True)
class WorldQuery:
    point: Point
    radius_km: float
    max_age_s: float | None


def uncovered(stream_id: str, within_km: float, point: Point, coverage: Coverage = live_coverage) -> Problem | None:
    """404 when the upstreams are replayed and nothing was recorded within `within_km` of the point."""
    recorded = coverage(stream_id)
    if recorded is None or any(distance_km(point.lat, point.lon, r.lat, r.lon) <= within_km for r in recorded):
        return None
    listed = "; ".join(f"{r.lat:g},{r.lon:g}" for r in recorded) or "none"
    return Problem(
        404,
        "no_recording",
        f"upstreams are replayed from recordings and {stream_id} has none within {within_km:g} km of "
        f"{point.lat:g},{point.lon:g}; recorded points: {listed}",
    )


def stream_query(
    stream: Stream, params: Mapping[str, str], coverage: Coverage = live_coverage
) -> StreamQuery | Problem:
    if stream.sharing is Sharing.MAINTENANCE:
        return Problem(503, "stream_in_maintenance", f"{stream.id} is in maintenance and not sold right now")
    try:
        filters = parse_filters(params)
        max_age_s = parse_max_age(params)
    except FilterError as exc:
        return Problem(400, "invalid_query", str(exc))
    if not stream.point:
        resolution = parse_resolution(stream, params)
        if isinstance(resolution, Problem):
            return resolution
        return StreamQuery(filters, None, max_age_s, resolution)
    if filters.center is None:
        return Problem(400, "invalid_query", f"{stream.id} is read at a point: give lat and lon")
    if filters.bbox is not None or "radius_km" in params:
        return Problem(400, "invalid_query", f"bbox and radius_km do not apply to {stream.id}: it is read at one point")
    point = Point(*filters.center)
    within_km = stream.point_within_km
    if within_km is not None and (problem := uncovered(stream.id, within_km, point, coverage)):
        return problem
    return StreamQuery(Filters(limit=filters.limit), point, max_age_s)


def world_query(params: Mapping[str, str], coverage: Coverage = live_coverage) -> WorldQuery | Problem:
    if "lat" not in params or "lon" not in params:
        return Problem(400, "invalid_query", "give lat and lon: the picture is of the world around that point")
    if "bbox" in params:
        return Problem(400, "invalid_query", "bbox does not apply to /v1/world; use radius_km")
    try:
        filters = parse_filters({**params, "radius_km": params.get("radius_km") or str(WORLD_RADIUS_KM_DEFAULT)})
        max_age_s = parse_max_age(params)
    except FilterError as exc:
        return Problem(400, "invalid_query", str(exc))
    assert filters.center is not None and filters.radius_km is not None
    if filters.radius_km > WORLD_RADIUS_KM_MAX:
        return Problem(400, "invalid_query", f"radius_km must be at most {WORLD_RADIUS_KM_MAX:g}")
    point = Point(*filters.center)
    assert WORLD_CORE.point_within_km is not None
    if problem := uncovered(WORLD_CORE.id, WORLD_CORE.point_within_km, point, coverage):
        return problem
    return WorldQuery(point, filters.radius_km, max_age_s)
