"""The query parameters of the paid routes, as declared to clients: the 402's `bazaar` extension,
/openapi.json, /llms.txt and the MCP tools' input schemas are all built from these. The rules
themselves are app/usecases/queries.py's and adapters/filters.py's; the bounds here are read from there.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from adapters.filters import LIMIT_DEFAULT, LIMIT_MAX, MAX_AGE_S_MAX, MAX_AGE_S_MIN, RADIUS_KM_MAX
from app.usecases.queries import WORLD_RADIUS_KM_DEFAULT, WORLD_RADIUS_KM_MAX, Problem

STREAM_RADIUS_KM_DEFAULT = 100.0  # adapters.filters.parse's radius when lat/lon come without one
BBOX_PATTERN = r"^-?\d+(\.\d+)?(,-?\d+(\.\d+)?){3}$"


def _compact(value: float | int) -> float | int:
    """-90.0 → -90: the same JSON number, fewer bytes in a header."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


@dataclass(frozen=True)
class QueryParam:
    """One query parameter of a paid route: what its 402 (`bazaar`), /openapi.json and /llms.txt declare.
    The rules themselves are in app/usecases/queries.py and adapters/filters.py; these values are read from there."""

    name: str
    type: str  # JSON Schema type of the value: "number", "integer" or "string"
    description: str
    example: float | int | str
    required: bool = False
    minimum: float | None = None
    maximum: float | None = None
    default: float | int | None = None
    pattern: str | None = None
    in_example: bool = True  # part of the route's example query (bbox is not: it excludes lat/lon)
    enum: tuple[int, ...] | None = None  # the only values accepted (a grid's resolutions)

    def schema(self, *, full: bool = False) -> dict[str, Any]:
        """Its JSON Schema; `full` adds the default, the description and the example (OpenAPI), the
        short form (the 402 header, where bytes count) keeps the type and the bounds."""
        schema: dict[str, Any] = {"type": self.type}
        if self.minimum is not None:
            schema["minimum"] = _compact(self.minimum)
        if self.maximum is not None:
            schema["maximum"] = _compact(self.maximum)
        if self.pattern is not None:
            schema["pattern"] = self.pattern
        if self.enum is not None:
            schema["enum"] = list(self.enum)
        if full:
            if self.default is not None:
                schema["default"] = _compact(self.default)
            schema["description"] = self.description
            schema["examples"] = [self.example]
        return schema


LAT = QueryParam("lat", "number", "Latitude in degrees (WGS 84).", 48.85, minimum=-90, maximum=90)
LON = QueryParam("lon", "number", "Longitude in degrees (WGS 84).", 2.35, minimum=-180, maximum=180)
_BBOX = QueryParam(
    "bbox",
    "string",
    "Bounding box min_lon,min_lat,max_lon,max_lat in degrees; min_lon > max_lon crosses the antimeridian. "
    "Not with lat/lon/radius_km.",
    "-10,35,30,60",
    pattern=BBOX_PATTERN,
    in_example=False,
)
_RADIUS = QueryParam(
    "radius_km",
    "number",
    f"Radius around lat/lon in km (needs lat and lon; default {STREAM_RADIUS_KM_DEFAULT:g}).",
    1000,
    minimum=0,
    maximum=RADIUS_KM_MAX,
    default=STREAM_RADIUS_KM_DEFAULT,
)
_LIMIT = QueryParam(
    "limit",
    "integer",
    f"At most this many records, nearest first around a point (default {LIMIT_DEFAULT}).",
    10,
    minimum=1,
    maximum=LIMIT_MAX,
    default=LIMIT_DEFAULT,
)
_MAX_AGE = QueryParam(
    "max_age",
    "number",
    "The oldest data you will pay for, in seconds: older cached data is refetched, and if that fails the "
    "answer is a 503 and nothing is charged.",
    600,
    minimum=MAX_AGE_S_MIN,
    maximum=MAX_AGE_S_MAX,
)
_RESOLUTION = QueryParam(
    "resolution",
    "integer",
    "A finer global grid, in degrees: 2, 5, 10 or 20 (without it, the 30-degree grid). Priced by size: the "
    "stream's price per started 100 cells the answer can hold (the grid's cells in bbox or radius, at most limit).",
    10,
    minimum=2,
    maximum=20,
    in_example=False,
    enum=(2, 5, 10, 20),  # adapters/upstream/open_meteo_grids.py RESOLUTIONS
)
_AT_POINT = "; required: this stream is read at that point"
STREAM_PARAMS = (_BBOX, LAT, LON, _RADIUS, _LIMIT, _MAX_AGE)
GRID_STREAM_PARAMS = (*STREAM_PARAMS, _RESOLUTION)  # grid streams with finer grids (Stream.resolutions)
POINT_STREAM_PARAMS = (  # bbox and radius_km are refused: the stream is read at one point
    replace(LAT, required=True, description=LAT.description[:-1] + _AT_POINT + "."),
    replace(LON, required=True, description=LON.description[:-1] + _AT_POINT + "."),
    _LIMIT,
    _MAX_AGE,
)
POINT_STREAM_REFUSED = ("bbox", "radius_km")
WORLD_REFUSED = ("bbox",)
WORLD_PARAMS = (
    replace(LAT, required=True, description="Latitude of the point the picture is of, in degrees (WGS 84)."),
    replace(LON, required=True, description="Longitude of the point the picture is of, in degrees (WGS 84)."),
    replace(
        _RADIUS,
        description=f"Radius for earthquakes, disaster alerts and natural events, in km "
        f"(default {WORLD_RADIUS_KM_DEFAULT:g}; the nearest 20 of each).",
        maximum=WORLD_RADIUS_KM_MAX,
        default=WORLD_RADIUS_KM_DEFAULT,
    ),
    replace(_MAX_AGE, description="The oldest data you will pay for, in seconds, for every part of the picture."),
)


def query_schema(params: tuple[QueryParam, ...]) -> dict[str, Any]:
    """A route's query parameters as one JSON Schema object, with the rules that tie them together; any
    other parameter is refused (`strict_query`), so the schema allows no other property."""
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {p.name: p.schema() for p in params},
        "additionalProperties": False,
    }
    required = [p.name for p in params if p.required]
    if required:
        schema["required"] = required
    optional = {p.name for p in params if not p.required}
    if {"lat", "lon"} <= optional:  # lat and lon go together; radius_km needs them
        schema["dependentRequired"] = {
            "lat": ["lon"],
            "lon": ["lat"],
            **({"radius_km": ["lat", "lon"]} if "radius_km" in optional else {}),
        }
    if "bbox" in optional:  # either a box or a circle
        schema["dependentSchemas"] = {"bbox": {"not": {"anyOf": [{"required": ["lat"]}, {"required": ["lon"]}]}}}
    return schema


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """' (did you mean X?)' when `name` is close to one of `known` (case aside), else ''."""
    by_lower = {k.lower(): k for k in known}
    close = difflib.get_close_matches(name.lower(), list(by_lower), n=1, cutoff=0.6)
    return f" (did you mean {by_lower[close[0]]!r}?)" if close else ""


def strict_query(
    pairs: Iterable[tuple[str, str]], accepted: tuple[str, ...], known: tuple[str, ...] = ()
) -> dict[str, str] | Problem:
    """The query as one value per name, or a 400 naming the first unknown or repeated parameter.
    `accepted` are the route's parameters; `known` ones are let through for the route's rules to refuse
    with their own words (bbox on a point stream). A repeat is refused rather than collapsed: which
    value would be served, and which one was paid for, would be a guess."""
    params: dict[str, str] = {}
    listed = ", ".join(accepted) or "no query parameters"
    for name, value in pairs:
        if name not in accepted and name not in known:
            hint = did_you_mean(name, accepted)
            message = f"unknown query parameter {name!r}{hint}; this route accepts {listed}"
            return Problem(400, "invalid_query", message)
        if name in params:
            message = f"query parameter {name!r} is given more than once; give it once (this route accepts {listed})"
            return Problem(400, "invalid_query", message)
        params[name] = value
    return params
