"""NOAA Space Weather Prediction Center: the planetary K index and real-time solar wind plasma (US public domain).

Documented at services.swpc.noaa.gov (the JSON products listed at /json/ and /products/):
- /json/planetary_k_index_1m.json: an array of objects, oldest first, one a minute for about six
  hours: `{"time_tag": "2026-07-09T10:00:00" (UTC, no zone), "kp_index": 2 (Kp rounded to the
  nearest whole), "estimated_kp": 1.67 (Kp in thirds), "kp": "2M" (2-)}`.
- /json/rtsw/rtsw_wind_1m.json (Real-Time Solar Wind, 1-minute plasma): an array of objects, newest
  first, about a day of them, from every spacecraft SWPC receives at L1 interleaved in one file:
  `{"time_tag": "2026-09-06T17:59:00" (UTC, no zone), "active": true, "source": "SOLAR1",
  "proton_speed": 346.2 (km/s), "proton_temperature": 88931 (K), "proton_density": 5.66 (1/cm³),
  ...}`; values are JSON numbers or null. `source` names the spacecraft (SOLAR1, ACE, IMAP, DSCOVR
  ...) and `active: true` marks the one SWPC nominates as its real-time source; the others ride
  along with `active: false` (in the recorded sample, ACE on the minute and IMAP six seconds past
  it). Each record also carries proton velocity components (`proton_vx_gse` ... `proton_vz_gsm`),
  `proton_sample_size`, alpha particle moments (`alpha_*`, all null in the sample), processing
  flags (`max_*_flag`) and `overall_quality` (0 = no objection); none of those are used here.

It replaces /products/solar-wind/plasma-1-day.json (an array of string rows under a
["time_tag","density","speed","temperature"] header), which SWPC retired on 2026-06-30.

The time machine's backfill reads SWPC's 7-day products, tables in that older layout (an array of rows,
the first a header; values are strings, or null for a missing one):
- /products/noaa-planetary-k-index.json: ["time_tag","Kp","a_running","station_count"], 3-hourly, rows like
  ["2024-05-14 00:00:00.000","2.33","9","8"] (Kp in thirds, as a decimal);
- /products/solar-wind/plasma-7-day.json: ["time_tag","density","speed","temperature"], 1-minute, rows like
  ["2024-05-14 00:00:00.000","4.12","402.5","71234"]. It names no spacecraft.
Both parse into the live streams' records (same fields, same units), so history looks like live.
"""

from __future__ import annotations

import math
from typing import Any

from ..errors import ParseError
from ..records import Record
from .base import Point, UpstreamRequest, iso, load_json, optional_number

LICENSE = "US-Government-Public-Domain"
ATTRIBUTION = "NOAA Space Weather Prediction Center"
SOURCE = "NOAA SWPC"

HOST = "services.swpc.noaa.gov"
KP_STREAM = "space.kp"
SOLAR_WIND_STREAM = "space.solar_wind"
KP_KEEP = 24
SOLAR_WIND_KEEP = 60
# canonical field: the rtsw_wind_1m key it is read from
WIND_FIELDS = {"density_cm3": "proton_density", "speed_km_s": "proton_speed", "temperature_k": "proton_temperature"}
KP_7_DAY_PATH = "/products/noaa-planetary-k-index.json"
PLASMA_7_DAY_PATH = "/products/solar-wind/plasma-7-day.json"
# canonical field: the plasma-7-day column it is read from
PLASMA_COLUMNS = {"density_cm3": "density", "speed_km_s": "speed", "temperature_k": "temperature"}


def storm_level(kp: float) -> str | None:
    """NOAA's geomagnetic storm scale: G1 at Kp 5 ... G5 at Kp 9.

    Kp is judged rounded to the nearest whole, as SWPC labels it: 4.67 (5-) is printed "(G1)" in
    its 3-day forecast and carried as kp_index 5 in the 1-minute product.
    """
    whole = int(kp + 0.5)
    return f"G{min(whole, 9) - 4}" if whole >= 5 else None


def _finite(value: Any) -> float | None:
    number = optional_number(value)
    return number if number is not None and math.isfinite(number) else None


def _reading(value: Any, what: str) -> float | None:
    """A plasma value: a JSON number; null (or NaN/Infinity, which json.loads lets through) is a missing reading."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ParseError(f"{what} is {value!r}, not a number")
    try:
        parsed = float(value)
    except OverflowError:  # an integer too long for a float
        return None
    return parsed if math.isfinite(parsed) else None


def _kp_record(observed_at: str, kp: float, rounded: float | None) -> Record:
    """A `space.kp` record: Kp in thirds, the whole Kp SWPC rounds it to, and the storm level that implies."""
    return Record(
        stream=KP_STREAM,
        observed_at=observed_at,
        lat=None,
        lon=None,
        fields={
            "kp": kp,
            "kp_index": int(rounded) if rounded is not None else None,
            "storm_level": storm_level(rounded if rounded is not None else kp),
        },
        source=SOURCE,
    )


class NoaaKp:
    name = "noaa-swpc.kp"
    host = HOST
    point = False
    streams = (KP_STREAM,)

    def request(self, point: Point | None) -> UpstreamRequest:
        return UpstreamRequest(self.host, "/json/planetary_k_index_1m.json")

    def parse(self, body: bytes, point: Point | None) -> dict[str, list[Record]]:
        return self.readings(body, keep=KP_KEEP)

    def readings(self, body: bytes, *, keep: int | None = None) -> dict[str, list[Record]]:
        """The newest `keep` readings (None: every one the product holds, as a backfill reads it), oldest first."""
        document = load_json(body)
        if not isinstance(document, list):
            raise ParseError("not an array of K-index readings")
        readings: list[tuple[str, float, float | None]] = []
        for row in document:
            if not isinstance(row, dict):
                raise ParseError("a K-index reading is not an object")
            estimated, rounded = _finite(row.get("estimated_kp")), _finite(row.get("kp_index"))
            kp = estimated if estimated is not None else rounded
            if kp is None:
                continue  # a minute with no value yet
            readings.append((iso(row.get("time_tag")), kp, rounded))
        readings.sort(key=lambda reading: reading[0])
        chosen = readings[-keep:] if keep else readings
        return {KP_STREAM: [_kp_record(observed_at, kp, rounded) for observed_at, kp, rounded in chosen]}


class NoaaSolarWind:
    name = "noaa-swpc.solar-wind"
    host = HOST
    point = False
    streams = (SOLAR_WIND_STREAM,)

    def request(self, point: Point | None) -> UpstreamRequest:
        return UpstreamRequest(self.host, "/json/rtsw/rtsw_wind_1m.json")

    def parse(self, body: bytes, point: Point | None) -> dict[str, list[Record]]:
        return self.readings(body, keep=SOLAR_WIND_KEEP)

    def readings(self, body: bytes, *, keep: int | None = None) -> dict[str, list[Record]]:
        """The nominated spacecraft's newest `keep` readings (None: all the product holds), oldest first.

        Only records flagged `active: true` are kept, so the series is the one SWPC nominates rather than
        several spacecraft interleaved; if no record is active (or the flag is absent), every record is
        kept. A record whose three values are all null is a minute with no data and is skipped.
        """
        document = load_json(body)
        if not isinstance(document, list):
            raise ParseError("not an array of solar wind records")
        rows: list[tuple[str, str | None, bool, dict[str, Any]]] = []
        any_active = False
        for row in document:
            if not isinstance(row, dict):
                raise ParseError("a solar wind record is not an object")
            active = row.get("active")
            if active is not None and not isinstance(active, bool):
                raise ParseError(f"active is {active!r}, not true or false")
            spacecraft = row.get("source")
            if spacecraft is not None and not isinstance(spacecraft, str):
                raise ParseError(f"source is {spacecraft!r}, not a spacecraft name")
            any_active = any_active or active is True
            fields: dict[str, Any] = {field: _reading(row.get(key), key) for field, key in WIND_FIELDS.items()}
            if all(value is None for value in fields.values()):
                continue  # a minute with no data
            fields["spacecraft"] = spacecraft
            rows.append((iso(row.get("time_tag")), spacecraft, active is True, fields))
        if any_active:
            rows = [row for row in rows if row[2]]
        rows.sort(key=lambda row: (row[0], row[1] or ""))
        records = [
            Record(SOLAR_WIND_STREAM, observed_at, None, None, fields, SOURCE)
            for observed_at, _, _, fields in (rows[-keep:] if keep else rows)
        ]
        return {SOLAR_WIND_STREAM: records}


# ---- the 7-day products, for the backfill ----


def _table(body: bytes, columns: tuple[str, ...], what: str) -> list[dict[str, Any]]:
    """A /products/ table (an array of rows under a header row) as one dict per row, keyed by the header."""
    document = load_json(body)
    if not isinstance(document, list) or not document or not isinstance(document[0], list):
        raise ParseError(f"not a table of {what} under a header row")
    header = document[0]
    missing = [column for column in columns if column not in header]
    if missing:
        raise ParseError(f"the {what} header {header!r} lacks {missing!r}")
    rows = []
    for row in document[1:]:
        if not isinstance(row, list) or len(row) != len(header):
            raise ParseError(f"a {what} row does not match its header")
        rows.append(dict(zip(header, row, strict=True)))
    return rows


def _cell(value: Any, what: str) -> float | None:
    """A table value: a number written as a string (or a bare number); null, "" or NaN is a missing one."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            parsed = float(value)
        except ValueError:
            raise ParseError(f"{what} is {value!r}, not a number") from None
        return parsed if math.isfinite(parsed) else None
    return _reading(value, what)


def kp_7_day_request() -> UpstreamRequest:
    return UpstreamRequest(HOST, KP_7_DAY_PATH)


def parse_kp_7_day(body: bytes) -> dict[str, list[Record]]:
    """Every 3-hourly Kp of the 7-day product as `space.kp` records, oldest first; kp_index is Kp rounded to the
    nearest whole, as SWPC rounds it in the live product (2.33 → 2, 4.67 → 5)."""
    readings = []
    for row in _table(body, ("time_tag", "Kp"), "K-index"):
        kp = _cell(row["Kp"], "Kp")
        if kp is not None:
            readings.append((iso(row["time_tag"]), kp))
    readings.sort(key=lambda reading: reading[0])
    return {KP_STREAM: [_kp_record(observed_at, kp, float(int(kp + 0.5))) for observed_at, kp in readings]}


def plasma_7_day_request() -> UpstreamRequest:
    return UpstreamRequest(HOST, PLASMA_7_DAY_PATH)


def parse_plasma_7_day(body: bytes) -> dict[str, list[Record]]:
    """Every minute of the 7-day plasma product as `space.solar_wind` records, oldest first. The product is
    SWPC's chosen real-time series and names no spacecraft, so `spacecraft` is null; a minute whose three
    values are all missing is skipped, as in the live parser."""
    rows = []
    for row in _table(body, ("time_tag", *PLASMA_COLUMNS.values()), "plasma"):
        fields: dict[str, Any] = {field: _cell(row[column], column) for field, column in PLASMA_COLUMNS.items()}
        if all(value is None for value in fields.values()):
            continue
        fields["spacecraft"] = None
        rows.append((iso(row["time_tag"]), fields))
    rows.sort(key=lambda row: row[0])
    return {SOLAR_WIND_STREAM: [Record(SOLAR_WIND_STREAM, at, None, None, fields, SOURCE) for at, fields in rows]}
