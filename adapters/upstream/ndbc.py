"""NOAA National Data Buoy Center: the latest observation of every reporting buoy and coastal station
(US public domain).

Documented at www.ndbc.noaa.gov/measdes.shtml (the measurement descriptions) and served as
/data/latest_obs/latest_obs.txt: plain text, two header lines starting with `#` (names, then units), then one
whitespace-separated row per station:

    #STN     LAT      LON  YYYY MM DD hh mm WDIR WSPD  GST WVHT  DPD  APD MWD   PRES  PTDY  ATMP  WTMP  DEWP  VIS  TIDE
    #text    deg      deg   yr mo day hr mn degT  m/s  m/s    m  sec  sec degT   hPa   hPa  degC  degC  degC  nmi    ft

with the time in UTC and `MM` for a value the station did not report. Columns are found by their header name,
so a column NDBC adds or moves does not shift the others.

One fetch, five streams (field splitting): wind, waves, pressure, air temperature, water temperature; a
station has a record in a stream when it reported at least one of that stream's values.
"""

from __future__ import annotations

from datetime import UTC, datetime

from ..errors import ParseError
from ..records import Record
from .base import Point, UpstreamRequest, split

LICENSE = "Public domain (US Government work)"
ATTRIBUTION = "NOAA National Data Buoy Center"
SOURCE = "NOAA NDBC"
HOST = "www.ndbc.noaa.gov"
MISSING = "MM"
TIME_COLUMNS = ("YYYY", "MM", "DD", "hh", "mm")

# NDBC column → (canonical field, the unit the header must give)
COLUMNS: dict[str, tuple[str, str]] = {
    "WDIR": ("wind_direction_deg", "degT"),
    "WSPD": ("wind_speed_ms", "m/s"),
    "GST": ("wind_gust_ms", "m/s"),
    "WVHT": ("wave_height_m", "m"),
    "DPD": ("dominant_period_s", "sec"),
    "APD": ("average_period_s", "sec"),
    "MWD": ("wave_direction_deg", "degT"),
    "PRES": ("pressure_hpa", "hPa"),
    "PTDY": ("pressure_tendency_hpa", "hPa"),
    "ATMP": ("air_temperature_c", "degC"),
    "DEWP": ("dew_point_c", "degC"),
    "WTMP": ("water_temperature_c", "degC"),
}
CHILDREN: dict[str, tuple[str, ...]] = {
    "buoys.wind": ("wind_direction_deg", "wind_speed_ms", "wind_gust_ms"),
    "buoys.waves": ("wave_height_m", "dominant_period_s", "average_period_s", "wave_direction_deg"),
    "buoys.pressure": ("pressure_hpa", "pressure_tendency_hpa"),
    "buoys.air_temperature": ("air_temperature_c", "dew_point_c"),
    "buoys.water_temperature": ("water_temperature_c",),
}


def _value(text: str, column: str) -> float | None:
    if text == MISSING:
        return None
    try:
        return float(text)  # "+1.2" and "-0.3" (pressure tendency) read as numbers too
    except ValueError:
        raise ParseError(f"{column} is {text!r}, not a number or MM") from None


class NdbcLatestObs:
    name = "ndbc.latest-obs"
    host = HOST
    point = False
    streams = tuple(CHILDREN)

    def request(self, point: Point | None) -> UpstreamRequest:
        return UpstreamRequest(self.host, "/data/latest_obs/latest_obs.txt")

    def parse(self, body: bytes, point: Point | None) -> dict[str, list[Record]]:
        try:
            lines = body.decode("ascii").splitlines()
        except UnicodeDecodeError:
            raise ParseError("the observations are not ASCII text") from None
        headers = [line.lstrip("#").split() for line in lines[:2] if line.startswith("#")]
        if len(headers) != 2 or len(headers[0]) != len(headers[1]):
            raise ParseError("no `#` header of column names and units")
        names, units = headers
        where = {name: i for i, name in enumerate(names)}
        needed = ("STN", "LAT", "LON", *TIME_COLUMNS)
        if any(name not in where for name in needed):
            raise ParseError(f"the header lacks one of {', '.join(needed)}")
        for column, (_field, unit) in COLUMNS.items():
            if column in where and units[where[column]] != unit:
                raise ParseError(f"{column} is in {units[where[column]]!r}, not {unit!r}")
        out: dict[str, list[Record]] = {child: [] for child in CHILDREN}
        for line in lines[2:]:
            if not line.strip() or line.startswith("#"):
                continue
            row = line.split()
            if len(row) != len(names):
                raise ParseError(f"a row has {len(row)} columns, not {len(names)}")
            try:
                when = datetime(
                    int(row[where["YYYY"]]),
                    int(row[where["MM"]]),  # the month (a header name; in a row, MM is a missing value)
                    int(row[where["DD"]]),
                    int(row[where["hh"]]),
                    int(row[where["mm"]]),
                    tzinfo=UTC,
                )
                lat, lon = float(row[where["LAT"]]), float(row[where["LON"]])
            except (ValueError, IndexError):
                raise ParseError(f"station {row[0]} has no readable time or position") from None
            fields = {field: _value(row[where[c]], c) for c, (field, _) in COLUMNS.items() if c in where}
            observed_at = when.isoformat(timespec="seconds").replace("+00:00", "Z")
            for child, share in split(fields, CHILDREN).items():
                out[child].append(Record(child, observed_at, lat, lon, {"station": row[where["STN"]], **share}, SOURCE))
        return out
