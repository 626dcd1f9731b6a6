"""USGS water data: streamflow and gage height at major river gauges in the United States (public domain).

Documented at waterservices.usgs.gov/docs/instantaneous-values/ (Instantaneous Values service, WaterML 1.1 as
JSON): GET /nwis/iv/?format=json&sites=...&parameterCd=00060,00065 answers
`{"value": {"timeSeries": [...]}}`, one series per site and parameter: `sourceInfo` (`siteName`,
`siteCode[0].value`, `geoLocation.geogLocation.latitude/longitude`), `variable` (`variableCode[0].value`:
00060 discharge, 00065 gage height; `unit.unitCode`: "ft3/s", "ft"; `noDataValue`: -999999.0) and
`values[0].value`: readings `{"value": "4520" (a string), "qualifiers": ["P"], "dateTime": ISO 8601 with the
site's offset}`, oldest first. "P" marks provisional data, subject to revision.

USGS is moving these services to api.waterdata.usgs.gov; the legacy service answers until it is retired.
One fetch (every site, both parameters), two streams (field splitting): the newest reading of each series.
"""

from __future__ import annotations

from typing import Any

from ..errors import ParseError
from ..records import Record
from .base import Point, UpstreamRequest, iso, load_json, number

LICENSE = "Public domain (US Government work)"
ATTRIBUTION = "U.S. Geological Survey, National Water Information System (provisional data subject to revision)"
SOURCE = "USGS NWIS"
HOST = "waterservices.usgs.gov"
DISCHARGE, GAGE_HEIGHT = "water.discharge", "water.gage_height"
CUBIC_FEET_M3 = 0.028316846592

# Major river gauges: Potomac at Little Falls, Delaware at Trenton, Ohio at Louisville, Mississippi at St. Paul,
# Missouri at Hermann, Mississippi at Baton Rouge, Rio Grande at Albuquerque, Colorado at Lees Ferry,
# Sacramento at Freeport, Columbia at The Dalles.
SITES = (
    "01646500",
    "01463500",
    "03294500",
    "05331000",
    "06934500",
    "07374000",
    "08330000",
    "09380000",
    "11447650",
    "14105700",
)
# parameter code → (stream, unit the series must be in)
PARAMETERS = {"00060": (DISCHARGE, "ft3/s"), "00065": (GAGE_HEIGHT, "ft")}


def _series(series: Any) -> tuple[str, dict[str, Any], float, float, str, float] | None:
    """(stream, site fields, lat, lon, observed_at, value) of a series' newest reading, or None."""
    try:
        source, variable = series["sourceInfo"], series["variable"]
        code = variable["variableCode"][0]["value"]
        site = source["siteCode"][0]["value"]
        location = source["geoLocation"]["geogLocation"]
        readings = series["values"][0]["value"]
    except (KeyError, IndexError, TypeError):
        raise ParseError("a time series lacks its site, variable or values") from None
    if code not in PARAMETERS:
        return None
    stream, unit = PARAMETERS[code]
    if variable.get("unit", {}).get("unitCode") != unit:
        raise ParseError(f"parameter {code} is in {variable.get('unit')!r}, not {unit}")
    no_data = variable.get("noDataValue")
    for reading in reversed(readings if isinstance(readings, list) else []):
        try:
            value = float(reading["value"])
        except (KeyError, TypeError, ValueError):
            raise ParseError(f"a reading at site {site} is not a number") from None
        if no_data is not None and value == no_data:
            continue
        qualifiers = reading.get("qualifiers") or []
        fields = {"site": site, "site_name": source.get("siteName"), "provisional": "P" in qualifiers}
        lat, lon = number(location.get("latitude"), "latitude"), number(location.get("longitude"), "longitude")
        return stream, fields, lat, lon, iso(reading.get("dateTime")), value
    return None


class UsgsWater:
    name = "usgs.water"
    host = HOST
    point = False
    streams = (DISCHARGE, GAGE_HEIGHT)

    def request(self, point: Point | None) -> UpstreamRequest:
        return UpstreamRequest(
            self.host,
            "/nwis/iv/",
            (
                ("format", "json"),
                ("sites", ",".join(SITES)),
                ("parameterCd", ",".join(PARAMETERS)),
                ("siteStatus", "active"),
            ),
        )

    def parse(self, body: bytes, point: Point | None) -> dict[str, list[Record]]:
        document = load_json(body)
        value = document.get("value") if isinstance(document, dict) else None
        series_list = value.get("timeSeries") if isinstance(value, dict) else None
        if not isinstance(series_list, list):
            raise ParseError("not a WaterML time series response (value.timeSeries)")
        out: dict[str, list[Record]] = {DISCHARGE: [], GAGE_HEIGHT: []}
        for series in series_list:
            newest = _series(series)
            if newest is None:
                continue
            stream, fields, lat, lon, observed_at, reading = newest
            if stream == DISCHARGE:
                fields |= {"discharge_cfs": reading, "discharge_m3s": round(reading * CUBIC_FEET_M3, 3)}
            else:
                fields |= {"gage_height_ft": reading, "gage_height_m": round(reading * 0.3048, 3)}
            out[stream].append(Record(stream, observed_at, lat, lon, fields, SOURCE))
        return out
