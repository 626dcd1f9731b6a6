"""Finer grids priced by size: a read with `resolution=` costs the stream's price once per started block of
CELLS_PER_UNIT cells its answer can hold: the cells of that grid inside its bbox or radius (the whole globe with
neither), at most its `limit`. Counted from the lattice before any quote, with no upstream call; the answer may
hold fewer (a cell the upstream did not answer), never more.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

from adapters import FilterError, Stream, parse_filters
from adapters.filters import EARTH_RADIUS_KM, Filters
from adapters.upstream.open_meteo_grids import centres

CELLS_PER_UNIT = 100  # the default `limit`: a read that keeps the default costs the stream's price


def _in_lon_range(lon: float, low: float, high: float) -> bool:
    return low <= lon <= high if low <= high else lon >= low or lon <= high  # low > high: across the antimeridian


def _row_reach_deg(lat: float, centre_lat: float, radius_km: float) -> float:
    """How far in longitude (degrees) from the centre a point on this latitude can be and stay in the circle."""
    d = radius_km / EARTH_RADIUS_KM
    p1, p2 = math.radians(centre_lat), math.radians(lat)
    denominator = math.cos(p1) * math.cos(p2)
    if denominator <= 1e-12:  # a pole: the row is one point, in or out as a whole
        return 360.0 if abs(p2 - p1) <= d else -1.0
    c = (math.cos(d) - math.sin(p1) * math.sin(p2)) / denominator
    return 360.0 if c <= -1 else -1.0 if c > 1 else math.degrees(math.acos(c))


def cells_in_area(resolution: int, filters: Filters) -> int:
    """The cells of the grid at `resolution` that the filters' area holds (no limit applied)."""
    lats, lons = centres(resolution)
    if filters.bbox is not None:
        min_lon, min_lat, max_lon, max_lat = filters.bbox
        rows = sum(1 for lat in lats if min_lat <= lat <= max_lat)
        return rows * sum(1 for lon in lons if _in_lon_range(lon, min_lon, max_lon))
    if filters.center is not None and filters.radius_km is not None:
        centre_lat, centre_lon = filters.center
        count = 0
        for lat in lats:
            reach = _row_reach_deg(lat, centre_lat, filters.radius_km)
            if reach >= 180:
                count += len(lons)
            elif reach >= 0:
                count += sum(1 for lon in lons if abs((lon - centre_lon + 180) % 360 - 180) <= reach)
        return count
    return len(lats) * len(lons)


def grid_units(resolution: int, filters: Filters) -> tuple[int, int]:
    """(cells the answer can hold, price units) of a read at `resolution` with these filters."""
    cells = min(cells_in_area(resolution, filters), filters.limit)
    return cells, max(1, math.ceil(cells / CELLS_PER_UNIT))


def grid_price(
    stream: Stream, amount: int, description: str, display: Callable[[int], str]
) -> Callable[[Mapping[str, str]], tuple[int, str]]:
    """A grid route's `price_for`: its own price without `resolution`, else by size (the query is already checked)."""

    def price(params: Mapping[str, str]) -> tuple[int, str]:
        raw = params.get("resolution")
        if raw is None:
            return amount, description
        try:
            filters = parse_filters(params)
        except FilterError:  # refused before any quote by the route's rules; priced as the whole grid meanwhile
            filters = Filters()
        resolution = int(raw)
        cells, units = grid_units(resolution, filters)
        total = amount * units
        text = (
            f"{stream.name} at {resolution} degrees: up to {cells} cells, {units} x {display(amount)} USDC "
            f"(per started {CELLS_PER_UNIT} cells) = {display(total)} USDC"
        )
        return total, text

    return price
