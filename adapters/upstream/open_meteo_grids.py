"""Open-Meteo global grids at 2, 5, 10 and 20 degrees, in as few upstream calls as Open-Meteo allows.

A multi-location request (comma-separated `latitude`/`longitude`, answered by a JSON array in request order,
open-meteo.com/en/docs) takes at most 1000 locations ("Currently, up to 1000 locations are supported per API
call", open-meteo/open-meteo#1295), and each location counts as one call against Open-Meteo's fair-use limits.
A grid at r degrees has its cell centres at -90 + r/2 + k·r (latitude) and -180 + r/2 + k·r (longitude):

    20°: 9 x 18 = 162 cells, 1 call      10°: 18 x 36 = 648 cells, 1 call
     5°: 36 x 72 = 2592 cells, 3 calls     2°: 90 x 180 = 16200 cells, 17 calls

Each call is a band: the cells in lattice order (south to north, west to east), cut every 1000. A band is a
fetch group of its own (one cache entry, one upstream call per refresh), and the three grid streams read it
together (field splitting); a read at a resolution gathers only the bands its area touches.

Requests ask `cell_selection=nearest` (documented values nearest | land | sea; the default, land, would move a
cell over the sea to the nearest coast). Open-Meteo answers the coordinates of the model cell it used; each
answer is matched to the requested centre within TOLERANCE_DEG, and its records carry that centre (the grid the
buyer asked for). An answer matching no requested centre is dropped, so a short or reordered answer never puts
one cell's values on another.
"""

from __future__ import annotations

import functools
import math

from ..errors import ParseError
from ..records import Record
from .base import Point, UpstreamRequest, load_json
from .open_meteo import (
    GRID_PRECIPITATION,
    GRID_TEMPERATURE,
    GRID_VARIABLES,
    GRID_WIND,
    HOST,
    SOURCE,
    current_location,
    grid_fields,
)

PARENT = "open-meteo.grid"  # the default (30-degree) grid's fetch group; bands are named after it
RESOLUTIONS = (2, 5, 10, 20)
LOCATIONS_PER_CALL = 1000
TOLERANCE_DEG = 0.3  # under a quarter of the finest spacing; Open-Meteo's cells (0.25 degrees or finer) lie well within
GRID_STREAMS = (GRID_TEMPERATURE, GRID_WIND, GRID_PRECIPITATION)


def grid_key(stream_id: str, resolution: int) -> str:
    """The key of a stream's records at a resolution in a band's cache entry. Not a stream id: the time machine
    and live feeds, which file a fetch's records by stream id, leave these alone (they follow the default grid)."""
    return f"{stream_id}@{resolution}deg"


def centres(resolution: int) -> tuple[list[float], list[float]]:
    """The latitudes and longitudes of the cell centres at this resolution."""
    lats = [-90 + resolution / 2 + k * resolution for k in range(180 // resolution)]
    lons = [-180 + resolution / 2 + k * resolution for k in range(360 // resolution)]
    return lats, lons


def cell_count(resolution: int) -> int:
    return (180 // resolution) * (360 // resolution)


def _nearest(value: float, first: float, step: int) -> float:
    """The lattice value (first + k·step) nearest `value`."""
    return first + round((value - first) / step) * step


class OpenMeteoGridBand:
    """One call's worth of a grid: up to 1000 cell centres, split into the three grid streams."""

    host = HOST
    point = False

    def __init__(self, resolution: int, index: int, cells: list[tuple[float, float]]) -> None:
        self.resolution = resolution
        self.index = index
        self.cells = cells
        self.name = f"{PARENT}.{resolution}deg.{index}"
        self.streams = tuple(grid_key(stream, resolution) for stream in GRID_STREAMS)
        self.lat_min = min(lat for lat, _ in cells)
        self.lat_max = max(lat for lat, _ in cells)
        self._asked = set(cells)

    def request(self, point: Point | None) -> UpstreamRequest:
        return UpstreamRequest(
            self.host,
            "/v1/gfs",
            (
                ("latitude", ",".join(f"{lat:g}" for lat, _ in self.cells)),
                ("longitude", ",".join(f"{lon:g}" for _, lon in self.cells)),
                ("current", ",".join(variable for variable, _, _ in GRID_VARIABLES)),
                ("timezone", "GMT"),
                ("cell_selection", "nearest"),
            ),
        )

    def cell_of(self, lat: float, lon: float) -> tuple[float, float] | None:
        """The requested centre an answered location stands for, or None."""
        r = self.resolution
        lats, lons = centres(r)
        lat_c = _nearest(lat, lats[0], r)
        lon_c = _nearest((lon - lons[0]) % 360 + lons[0], lons[0], r)  # either side of the antimeridian
        lon_c = (lon_c + 180) % 360 - 180
        near = abs(lat - lat_c) <= TOLERANCE_DEG and abs(((lon - lon_c) + 180) % 360 - 180) <= TOLERANCE_DEG
        return (lat_c, lon_c) if near and (lat_c, lon_c) in self._asked else None

    def parse(self, body: bytes, point: Point | None) -> dict[str, list[Record]]:
        document = load_json(body)
        if not isinstance(document, list):
            raise ParseError("not an array of Open-Meteo locations (the answer to a multi-coordinate request)")
        out: dict[str, list[Record]] = {key: [] for key in self.streams}
        seen: set[tuple[float, float]] = set()
        for location in document:
            observed_at, lat, lon, values = current_location(location, GRID_VARIABLES)
            if not (math.isfinite(lat) and math.isfinite(lon)):
                raise ParseError(f"an Open-Meteo location is at {lat},{lon}")
            cell = self.cell_of(lat, lon)
            if cell is None or cell in seen:
                continue
            seen.add(cell)
            for stream, fields in grid_fields(values).items():
                out[grid_key(stream, self.resolution)].append(
                    Record(stream, observed_at, cell[0], cell[1], fields, SOURCE)
                )
        return out


@functools.cache
def bands(resolution: int) -> tuple[OpenMeteoGridBand, ...]:
    """The bands of a resolution, in lattice order (their union is the whole grid)."""
    if resolution not in RESOLUTIONS:
        raise ValueError(f"no {resolution}-degree grid; resolutions: {RESOLUTIONS}")
    lats, lons = centres(resolution)
    cells = [(lat, lon) for lat in lats for lon in lons]
    chunks = [cells[i : i + LOCATIONS_PER_CALL] for i in range(0, len(cells), LOCATIONS_PER_CALL)]
    return tuple(OpenMeteoGridBand(resolution, i, chunk) for i, chunk in enumerate(chunks))


def bands_for(resolution: int, lat_span: tuple[float, float] | None) -> tuple[OpenMeteoGridBand, ...]:
    """The bands holding a cell between the two latitudes (all of them for None)."""
    if lat_span is None:
        return bands(resolution)
    low, high = lat_span
    return tuple(b for b in bands(resolution) if b.lat_max >= low and b.lat_min <= high)


def all_bands() -> list[OpenMeteoGridBand]:
    return [band for resolution in RESOLUTIONS for band in bands(resolution)]
