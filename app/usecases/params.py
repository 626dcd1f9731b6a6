"""The query parameters of the paid routes, as declared to clients: the 402's `bazaar` extension,
/openapi.json, /llms.txt and the MCP tools' input schemas are all built from these. The rules
themselves are app/usecases/queries.py's and adapters/filters.py's; the bounds here are read from there.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from adapters.filters import LIMIT_DEFAULT, LIMIT_MAX, MAX_AGE_S_MAX, MAX_AGE_S_MIN, RADIUS_KM_MAX
from app.usecases.queries import WORLD_RADIUS_KM_DEFAULT, WORLD_RADIUS_KM_MAX

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
_AT_POINT = "; required: this stream is read at that point"
STREAM_PARAMS = (_BBOX, LAT, LON, _RADIUS, _LIMIT, _MAX_AGE)
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


def query_schema(params: tuple[QueryParam, ...], refused: tuple[str, ...] = ()) -> dict[str, Any]:
    """A route's query parameters as one JSON Schema object, with the rules that tie them together and the
    parameters it refuses (other unknown ones are ignored by the route, so the schema allows them)."""
    schema: dict[str, Any] = {"type": "object", "properties": {p.name: p.schema() for p in params}}
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
    if refused:
        schema["propertyNames"] = {"not": {"enum": list(refused)}}
    return schema
