"""Open-Meteo air quality: current pollutant concentrations and AQIs at a point (CC BY 4.0).

Documented at open-meteo.com/en/docs/air-quality-api: the same shape as the forecast API, an
object with `latitude/longitude`, `utc_offset_seconds`, `current_units` and `current` (`time`,
`interval`, one value per variable). Concentrations are in μg/m³, `us_aqi` in "USAQI" and
`european_aqi` in "EAQI"; values may be null and a variable a domain lacks is absent.
"""

from __future__ import annotations

from ..errors import ParseError
from ..records import Record
from .base import Point, UpstreamRequest, load_json, optional_number, split
from .open_meteo import current_location, current_request

LICENSE = "CC-BY-4.0"
ATTRIBUTION = "Air quality data by Open-Meteo.com (CAMS, Copernicus Atmosphere Monitoring Service)"
SOURCE = "Open-Meteo Air Quality"

STREAM = "air.quality"
UGM3 = "μg/m³"  # GREEK SMALL LETTER MU, as the API writes it
UNITS_OK = {UGM3: (UGM3, "µg/m³")}  # and MICRO SIGN, which some copies of the API's answers carry

VARIABLES: tuple[tuple[str, str, str], ...] = (
    ("us_aqi", "us_aqi", "USAQI"),
    ("european_aqi", "european_aqi", "EAQI"),
    ("pm10", "pm10_ugm3", UGM3),
    ("pm2_5", "pm2_5_ugm3", UGM3),
    ("carbon_monoxide", "carbon_monoxide_ugm3", UGM3),
    ("nitrogen_dioxide", "nitrogen_dioxide_ugm3", UGM3),
    ("ozone", "ozone_ugm3", UGM3),
    ("sulphur_dioxide", "sulphur_dioxide_ugm3", UGM3),
)

# Field splitting: each child stream sells a share of air.quality's fields, from the same fetch.
CHILDREN: dict[str, tuple[str, ...]] = {
    "air.aqi": ("us_aqi", "european_aqi"),
    "air.pm2_5": ("pm2_5_ugm3",),
    "air.pm10": ("pm10_ugm3",),
    "air.ozone": ("ozone_ugm3",),
    "air.no2": ("nitrogen_dioxide_ugm3",),
}


class OpenMeteoAirQuality:
    name = "open-meteo.air-quality"
    host = "air-quality-api.open-meteo.com"
    point = True
    streams = (STREAM, *CHILDREN)

    def request(self, point: Point | None) -> UpstreamRequest:
        return current_request(self.name, self.host, "/v1/air-quality", point, VARIABLES)

    def parse(self, body: bytes, point: Point | None) -> dict[str, list[Record]]:
        document = load_json(body)
        if not isinstance(document, dict):
            raise ParseError("not an Open-Meteo air-quality object")
        observed_at, lat, lon, values = current_location(document, VARIABLES, UNITS_OK)
        fields = {field: optional_number(values[variable]) for variable, field, _ in VARIABLES}
        out = {STREAM: [Record(STREAM, observed_at, lat, lon, fields, SOURCE)]}
        shares = split(fields, CHILDREN)
        for child in CHILDREN:
            share = shares.get(child)
            out[child] = [Record(child, observed_at, lat, lon, share, SOURCE)] if share else []
        return out
