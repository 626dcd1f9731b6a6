"""Query filters over records: a bounding box or a radius around a point, and a limit.

Parsing takes a plain mapping of query parameters and raises FilterError with a message fit for a
422 answer; it knows nothing of HTTP frameworks.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .records import Record

LIMIT_DEFAULT = 100
LIMIT_MAX = 1000
RADIUS_KM_MAX = 20_000.0
EARTH_RADIUS_KM = 6371.0088


class FilterError(ValueError):
    """A query parameter is malformed or out of range."""


MAX_AGE_S_MIN, MAX_AGE_S_MAX = 1.0, 30 * 86400.0


def parse_max_age(params: Mapping[str, str]) -> float | None:
    """`max_age` in seconds: the oldest data the caller will pay for (None: no bound)."""
    return _number(params, "max_age", MAX_AGE_S_MIN, MAX_AGE_S_MAX)


@dataclass(frozen=True, slots=True)
class Filters:
    limit: int = LIMIT_DEFAULT
    bbox: tuple[float, float, float, float] | None = None  # min lon, min lat, max lon, max lat
    center: tuple[float, float] | None = None  # lat, lon
    radius_km: float | None = None


def _plain(value: float) -> str:
    """A bound as people write it: 2592000, not 2.592e+06; 0.5 stays 0.5."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _number(params: Mapping[str, str], name: str, low: float, high: float) -> float | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        raise FilterError(f"{name} must be a number") from None
    if not math.isfinite(value) or not low <= value <= high:
        raise FilterError(f"{name} must be between {_plain(low)} and {_plain(high)}")
    return value


def parse(params: Mapping[str, str]) -> Filters:
    limit_raw = params.get("limit")
    limit = LIMIT_DEFAULT
    if limit_raw not in (None, ""):
        text = str(limit_raw)  # ASCII digits only: "²" is a digit to isdigit() but not to int()
        if not (text.isascii() and text.isdigit()) or len(text) > 9 or not 1 <= int(text) <= LIMIT_MAX:
            raise FilterError(f"limit must be an integer from 1 to {LIMIT_MAX}")
        limit = int(limit_raw)
    bbox = None
    if params.get("bbox"):
        parts = params["bbox"].split(",")
        if len(parts) != 4:
            raise FilterError("bbox must be min_lon,min_lat,max_lon,max_lat")
        try:
            min_lon, min_lat, max_lon, max_lat = (float(p) for p in parts)
        except ValueError:
            raise FilterError("bbox must be four numbers") from None
        if not (-180 <= min_lon <= 180 and -180 <= max_lon <= 180 and -90 <= min_lat <= max_lat <= 90):
            raise FilterError("bbox is outside -180..180 / -90..90 or has min_lat > max_lat")
        bbox = (min_lon, min_lat, max_lon, max_lat)
    lat = _number(params, "lat", -90, 90)
    lon = _number(params, "lon", -180, 180)
    radius = _number(params, "radius_km", 0, RADIUS_KM_MAX)
    if (lat is None) != (lon is None):
        raise FilterError("lat and lon go together")
    if radius is not None and lat is None:
        raise FilterError("radius_km needs lat and lon")
    if bbox is not None and lat is not None:
        raise FilterError("use either bbox or lat/lon/radius_km, not both")
    center = (lat, lon) if lat is not None and lon is not None else None
    if center is not None and radius is None:
        radius = 100.0
    return Filters(limit=limit, bbox=bbox, center=center, radius_km=radius)


def distance_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance (haversine)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))


def _in_bbox(record: Record, bbox: tuple[float, float, float, float]) -> bool:
    if record.lat is None or record.lon is None:
        return False
    min_lon, min_lat, max_lon, max_lat = bbox
    in_lon = (
        min_lon <= record.lon <= max_lon if min_lon <= max_lon else (record.lon >= min_lon or record.lon <= max_lon)
    )
    return in_lon and min_lat <= record.lat <= max_lat  # min_lon > max_lon: the box crosses the antimeridian


def apply(records: Iterable[Record], filters: Filters) -> list[Record]:
    """Records inside the area, nearest first when a centre is given, at most `limit` of them."""
    selected = list(records)
    if filters.bbox is not None:
        selected = [r for r in selected if _in_bbox(r, filters.bbox)]
    if filters.center is not None and filters.radius_km is not None:
        lat, lon = filters.center
        near = [(distance_km(lat, lon, r.lat, r.lon), r) for r in selected if r.lat is not None and r.lon is not None]
        selected = [r for d, r in sorted(near, key=lambda pair: pair[0]) if d <= filters.radius_km]
    return selected[: filters.limit]
