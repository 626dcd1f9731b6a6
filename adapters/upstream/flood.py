"""Open-Meteo flood: daily river discharge at a point, from GloFAS (CC BY 4.0).

Documented at open-meteo.com/en/docs/flood-api: GET flood-api.open-meteo.com/v1/flood with `latitude`,
`longitude`, `daily=river_discharge` and `past_days`/`forecast_days` answers `latitude/longitude` (the
5 km GloFAS river cell used), `daily_units` (`river_discharge`: "m³/s") and `daily`: `time` (dates,
"YYYY-MM-DD") and one array of values per variable, null where the model has none.

Asked for the past week and today (`past_days=7`, `forecast_days=1`): one record a day, the newest today, so
its freshness is a day old at most while the upstream renews it.
"""

from __future__ import annotations

from typing import Any

from ..errors import ParseError
from ..records import Record
from .base import Point, UpstreamRequest, iso, load_json, optional_number
from .open_meteo import at_point

LICENSE = "CC-BY-4.0"
ATTRIBUTION = "Flood data by Open-Meteo.com (CC BY 4.0), from GloFAS, Copernicus Emergency Management Service"
SOURCE = "Open-Meteo Flood (GloFAS)"
HOST = "flood-api.open-meteo.com"
STREAM = "flood.river_discharge"
UNITS_OK = ("m³/s", "m3/s")


class OpenMeteoFlood:
    name = "open-meteo.flood"
    host = HOST
    point = True
    streams = (STREAM,)

    def request(self, point: Point | None) -> UpstreamRequest:
        return UpstreamRequest(
            self.host,
            "/v1/flood",
            (
                *at_point(self.name, point),
                ("daily", "river_discharge"),
                ("past_days", "7"),
                ("forecast_days", "1"),
            ),
        )

    def parse(self, body: bytes, point: Point | None) -> dict[str, list[Record]]:
        document = load_json(body)
        if not isinstance(document, dict):
            raise ParseError("not an Open-Meteo flood object")
        lat, lon = optional_number(document.get("latitude")), optional_number(document.get("longitude"))
        daily: Any = document.get("daily")
        units: Any = document.get("daily_units") or {}
        if lat is None or lon is None or not isinstance(daily, dict) or not isinstance(units, dict):
            raise ParseError("an Open-Meteo flood answer has no location or `daily` block")
        if "river_discharge" in units and units["river_discharge"] not in UNITS_OK:
            raise ParseError(f"river_discharge is in {units['river_discharge']!r}, not m³/s")
        days, values = daily.get("time"), daily.get("river_discharge")
        if not isinstance(days, list) or not isinstance(values, list) or len(days) != len(values):
            raise ParseError("daily.time and daily.river_discharge are not arrays of one length")
        records = [
            Record(STREAM, iso(day), lat, lon, {"river_discharge_m3s": value, "date": day}, SOURCE)
            for day, raw in zip(days, values, strict=True)
            if (value := optional_number(raw)) is not None
        ]
        return {STREAM: records}
