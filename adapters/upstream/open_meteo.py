"""Open-Meteo weather: current conditions at a point, and a coarse global grid (CC BY 4.0).

Documented at open-meteo.com/en/docs: `current=<variables>` answers an object carrying
`latitude/longitude` (the model grid cell used), `utc_offset_seconds`, `current_units` (one unit
per variable) and `current` (`time` as local ISO 8601 without a zone, `interval`, one value per
variable). With comma-separated `latitude`/`longitude` lists the answer is a JSON array holding
one such object per coordinate pair, in request order (elements after the first also carry a
`location_id`). Values may be null, and a variable the model lacks is absent.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from ..errors import ParseError
from ..records import Record
from .base import Point, UpstreamRequest, iso, load_json, optional_number, split

LICENSE = "CC-BY-4.0"
ATTRIBUTION = "Weather data by Open-Meteo.com"
SOURCE = "Open-Meteo"

HOST = "api.open-meteo.com"
CURRENT_STREAM = "weather.current"
GRID_TEMPERATURE = "weather.grid.temperature"
GRID_WIND = "weather.grid.wind"
GRID_PRECIPITATION = "weather.grid.precipitation"

# Field splitting of the point fetch: each child stream sells a share of weather.current's fields.
CURRENT_CHILDREN: dict[str, tuple[str, ...]] = {
    "weather.temperature": ("temperature_c", "apparent_temperature_c"),
    "weather.humidity": ("relative_humidity_pct",),
    "weather.wind": ("wind_speed_kmh", "wind_direction_deg", "wind_gusts_kmh"),
    "weather.precipitation": ("precipitation_mm",),
    "weather.conditions": ("weather_code", "cloud_cover_pct"),
}

GRID_LATITUDES = (-60, -30, 0, 30, 60)
GRID_LONGITUDES = tuple(range(-180, 180, 30))  # -180, -150, ..., 150

# Open-Meteo variable → (canonical field, the unit Open-Meteo must report for it).
CURRENT_VARIABLES: tuple[tuple[str, str, str], ...] = (
    ("temperature_2m", "temperature_c", "°C"),
    ("relative_humidity_2m", "relative_humidity_pct", "%"),
    ("apparent_temperature", "apparent_temperature_c", "°C"),
    ("precipitation", "precipitation_mm", "mm"),
    ("weather_code", "weather_code", "wmo code"),
    ("cloud_cover", "cloud_cover_pct", "%"),
    ("wind_speed_10m", "wind_speed_kmh", "km/h"),
    ("wind_direction_10m", "wind_direction_deg", "°"),
    ("wind_gusts_10m", "wind_gusts_kmh", "km/h"),
)
GRID_VARIABLES: tuple[tuple[str, str, str], ...] = (
    ("temperature_2m", "temperature_c", "°C"),
    ("precipitation", "precipitation_mm", "mm"),
    ("wind_speed_10m", "wind_speed_kmh", "km/h"),
    ("wind_direction_10m", "wind_direction_deg", "°"),
)


def at_point(name: str, point: Point | None) -> tuple[tuple[str, str], ...]:
    """The `latitude`/`longitude` pair every Open-Meteo API takes: the point rounded to the cache's 0.1° cell."""
    if point is None:
        raise ValueError(f"{name} needs a point")
    rounded = point.rounded()
    return (("latitude", f"{rounded.lat:.1f}"), ("longitude", f"{rounded.lon:.1f}"))


def current_request(
    name: str, host: str, path: str, point: Point | None, variables: tuple[tuple[str, str, str], ...]
) -> UpstreamRequest:
    """The forecast-shaped request of the current values of `variables` at a point, times in GMT (the forecast,
    marine and air-quality APIs share it)."""
    current = ("current", ",".join(variable for variable, _, _ in variables))
    return UpstreamRequest(host, path, (*at_point(name, point), current, ("timezone", "GMT")))


def current_location(
    location: Any, variables: tuple[tuple[str, str, str], ...], units_ok: dict[str, tuple[str, ...]] | None = None
) -> tuple[str, float, float, dict[str, Any]]:
    """One Open-Meteo location object with a `current` block: (observed_at, lat, lon, raw values by variable).

    Checks every mapped variable's unit when `current_units` names one; a variable absent from the
    body comes back as None. Shared with the air-quality adapter, whose body has the same shape.
    """
    if not isinstance(location, dict):
        raise ParseError("an Open-Meteo location is not an object")
    current, units = location.get("current"), location.get("current_units") or {}
    if not isinstance(current, dict) or not isinstance(units, dict):
        raise ParseError("an Open-Meteo location has no `current` block")
    lat, lon = optional_number(location.get("latitude")), optional_number(location.get("longitude"))
    if lat is None or lon is None:
        raise ParseError("an Open-Meteo location has no latitude/longitude")
    offset = location.get("utc_offset_seconds", 0)
    if isinstance(offset, bool) or not isinstance(offset, int):
        raise ParseError(f"utc_offset_seconds is {offset!r}, not whole seconds")
    observed_at = _utc(iso(current.get("time")), offset)
    values: dict[str, Any] = {}
    for variable, _field, unit in variables:
        accepted = (units_ok or {}).get(unit, (unit,))
        if variable in units and units[variable] not in accepted:
            raise ParseError(f"{variable} is in {units[variable]!r}, not {unit!r}")
        values[variable] = current.get(variable)
    return observed_at, lat, lon, values


def _utc(local_iso: str, offset_s: int) -> str:
    """`current.time` is local to the response's timezone; `iso` read it as UTC, so take the offset off."""
    if offset_s == 0:
        return local_iso
    try:
        moment = datetime.fromisoformat(local_iso.replace("Z", "+00:00")) - timedelta(seconds=offset_s)
    except OverflowError:
        raise ParseError(f"{local_iso} shifted by {offset_s} s is out of range") from None
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def _field(variable: str, value: Any) -> Any:
    number = optional_number(value)
    if variable == "weather_code" and number is not None and number.is_integer():
        return int(number)
    return number


def grid_fields(values: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """One grid cell's values split into the grid streams (field splitting: one fetch, three streams)."""
    return {
        GRID_TEMPERATURE: {"temperature_c": _field("temperature_2m", values["temperature_2m"])},
        GRID_WIND: {
            "wind_speed_kmh": _field("wind_speed_10m", values["wind_speed_10m"]),
            "wind_direction_deg": _field("wind_direction_10m", values["wind_direction_10m"]),
        },
        GRID_PRECIPITATION: {"precipitation_mm": _field("precipitation", values["precipitation"])},
    }


class OpenMeteoCurrent:
    name = "open-meteo.current"
    host = HOST
    point = True
    streams = (CURRENT_STREAM, *CURRENT_CHILDREN)

    def request(self, point: Point | None) -> UpstreamRequest:
        return current_request(self.name, self.host, "/v1/forecast", point, CURRENT_VARIABLES)

    def parse(self, body: bytes, point: Point | None) -> dict[str, list[Record]]:
        document = load_json(body)
        if not isinstance(document, dict):
            raise ParseError("not an Open-Meteo forecast object")
        observed_at, lat, lon, values = current_location(document, CURRENT_VARIABLES)
        fields = {field: _field(variable, values[variable]) for variable, field, _ in CURRENT_VARIABLES}
        out = {CURRENT_STREAM: [Record(CURRENT_STREAM, observed_at, lat, lon, fields, SOURCE)]}
        shares = split(fields, CURRENT_CHILDREN)
        for child in CURRENT_CHILDREN:
            share = shares.get(child)
            out[child] = [Record(child, observed_at, lat, lon, share, SOURCE)] if share else []
        return out


class OpenMeteoGrid:
    """One call for the whole coarse grid; its answer is split into three streams (field splitting).

    Served from the GFS endpoint rather than /v1/forecast: same variables and response shape, one
    global model for every cell, and a request path of its own (the replay fixtures are keyed by
    host and path, and /v1/forecast belongs to `OpenMeteoCurrent`).
    """

    name = "open-meteo.grid"
    host = HOST
    point = False
    streams = (GRID_TEMPERATURE, GRID_WIND, GRID_PRECIPITATION)

    def request(self, point: Point | None) -> UpstreamRequest:
        cells = [(lat, lon) for lat in GRID_LATITUDES for lon in GRID_LONGITUDES]
        return UpstreamRequest(
            self.host,
            "/v1/gfs",
            (
                ("latitude", ",".join(str(lat) for lat, _ in cells)),
                ("longitude", ",".join(str(lon) for _, lon in cells)),
                ("current", ",".join(variable for variable, _, _ in GRID_VARIABLES)),
                ("timezone", "GMT"),
            ),
        )

    def parse(self, body: bytes, point: Point | None) -> dict[str, list[Record]]:
        document = load_json(body)
        if not isinstance(document, list):
            raise ParseError("not an array of Open-Meteo locations (the answer to a multi-coordinate request)")
        out: dict[str, list[Record]] = {stream: [] for stream in self.streams}
        for location in document:
            observed_at, lat, lon, values = current_location(location, GRID_VARIABLES)
            for stream, fields in grid_fields(values).items():
                out[stream].append(Record(stream, observed_at, lat, lon, fields, SOURCE))
        return out
