"""Open-Meteo marine: waves, swell, sea surface temperature and ocean currents at a point (CC BY 4.0).

Documented at open-meteo.com/en/docs/marine-weather-api: GET marine-api.open-meteo.com/v1/marine with
`latitude`, `longitude` and `current=<variables>` answers the forecast API's shape (`latitude/longitude` of the
model cell used, `utc_offset_seconds`, `current_units`, `current` with `time` and one value per variable).
Heights are in m, periods in s, directions in ° (where the waves come from), sea surface temperature in °C and
ocean current velocity in km/h (direction: where the current goes). Over land the values are null.

One fetch, five streams (field splitting): the parent is the fetch, each child sells a share of its fields.
"""

from __future__ import annotations

from ..errors import ParseError
from ..records import Record
from .base import Point, UpstreamRequest, load_json, optional_number, split
from .open_meteo import current_location, current_request

LICENSE = "CC-BY-4.0"
ATTRIBUTION = "Marine data by Open-Meteo.com (CC BY 4.0)"
SOURCE = "Open-Meteo Marine"
HOST = "marine-api.open-meteo.com"

VARIABLES: tuple[tuple[str, str, str], ...] = (
    ("wave_height", "wave_height_m", "m"),
    ("wave_direction", "wave_direction_deg", "°"),
    ("wave_period", "wave_period_s", "s"),
    ("swell_wave_height", "swell_height_m", "m"),
    ("swell_wave_direction", "swell_direction_deg", "°"),
    ("swell_wave_period", "swell_period_s", "s"),
    ("wind_wave_height", "wind_wave_height_m", "m"),
    ("sea_surface_temperature", "sea_surface_temperature_c", "°C"),
    ("ocean_current_velocity", "current_velocity_kmh", "km/h"),
    ("ocean_current_direction", "current_direction_deg", "°"),
)
CHILDREN: dict[str, tuple[str, ...]] = {
    "marine.waves": ("wave_height_m", "wave_direction_deg", "wave_period_s"),
    "marine.swell": ("swell_height_m", "swell_direction_deg", "swell_period_s"),
    "marine.wind_waves": ("wind_wave_height_m",),
    "marine.sea_temperature": ("sea_surface_temperature_c",),
    "marine.currents": ("current_velocity_kmh", "current_direction_deg"),
}


class OpenMeteoMarine:
    name = "open-meteo.marine"
    host = HOST
    point = True
    streams = tuple(CHILDREN)

    def request(self, point: Point | None) -> UpstreamRequest:
        return current_request(self.name, self.host, "/v1/marine", point, VARIABLES)

    def parse(self, body: bytes, point: Point | None) -> dict[str, list[Record]]:
        document = load_json(body)
        if not isinstance(document, dict):
            raise ParseError("not an Open-Meteo marine object")
        observed_at, lat, lon, values = current_location(document, VARIABLES)
        fields = {field: optional_number(values[variable]) for variable, field, _ in VARIABLES}
        shares = split(fields, CHILDREN)
        return {
            child: [Record(child, observed_at, lat, lon, shares[child], SOURCE)] if child in shares else []
            for child in CHILDREN
        }
