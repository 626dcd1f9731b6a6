"""What each upstream keeps of its past, and how to ask for one UTC day of it.

A `Backfiller` turns a day into one upstream request and its answer into records (the live adapter's
parser wherever the history endpoint answers the live shape), then picks each snapshot's records at
ticks through the day:
- "series": the records observed exactly at the tick (an hourly grid: every cell at that hour);
- "trailing": what the live feed would have shown at the tick: the records observed in
  (tick - lookback, tick], the newest `keep` of them (past-day quakes, the last 24 Kp readings).

Reach, as the upstreams document it: Open-Meteo's forecast APIs serve about 92 past days (`past_days`, or
`start_date`/`end_date` inside that reach); USGS FDSN any time range; EONET and GDACS by date range; SWPC's
7-day products (the 3-hourly Kp, the 1-minute plasma) hold their own past week, whatever day is asked.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from ..errors import ParseError
from ..records import Record
from ..upstream import open_meteo
from ..upstream.base import UpstreamRequest, iso, load_json, optional_number
from ..upstream.eonet import EonetEvents
from ..upstream.gdacs import GdacsEvents
from ..upstream.noaa_swpc import (
    KP_KEEP,
    SOLAR_WIND_KEEP,
    kp_7_day_request,
    parse_kp_7_day,
    parse_plasma_7_day,
    plasma_7_day_request,
)
from ..upstream.usgs import UsgsEarthquakes

HOUR, DAY = 3600, 86400


@dataclass(frozen=True)
class Backfiller:
    source: str  # the fetch group (adapter name) whose streams it fills
    streams: tuple[str, ...]
    max_days: int  # how far back the upstream answers
    tick_s: int  # one snapshot per tick
    request: Callable[[datetime, datetime], UpstreamRequest]  # the records observed in [start, end)
    parse: Callable[[bytes], dict[str, list[Record]]]
    select: str = "series"  # or "trailing"
    lookback_s: int = 0  # trailing: how far back a tick's snapshot reaches (also asked of the upstream)
    keep: int | None = None  # trailing: at most this many records, the newest

    def pick(self, records: list[Record], tick_iso: str, tick_from_iso: str) -> tuple[Record, ...]:
        """The records of the snapshot at the tick (`tick_from_iso`: tick - lookback); sorted by time."""
        if self.select == "series":
            return tuple(r for r in records if r.observed_at == tick_iso)
        window = [r for r in records if tick_from_iso < r.observed_at <= tick_iso]
        return tuple(window[-self.keep :] if self.keep else window)


def _day(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d")


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S")


# ---- Open-Meteo: the live grid's cells, hourly, from the same GFS endpoint ----

_GRID_CELLS = [(lat, lon) for lat in open_meteo.GRID_LATITUDES for lon in open_meteo.GRID_LONGITUDES]


def _grid_request(start: datetime, end: datetime) -> UpstreamRequest:
    last = end - timedelta(seconds=1)
    return UpstreamRequest(
        open_meteo.HOST,
        "/v1/gfs",
        (
            ("latitude", ",".join(str(lat) for lat, _ in _GRID_CELLS)),
            ("longitude", ",".join(str(lon) for _, lon in _GRID_CELLS)),
            ("hourly", ",".join(variable for variable, _, _ in open_meteo.GRID_VARIABLES)),
            ("start_date", _day(start)),
            ("end_date", _day(last)),
            ("timezone", "GMT"),
        ),
    )


def parse_hourly_grid(body: bytes) -> dict[str, list[Record]]:
    """An Open-Meteo `hourly=` answer (one location object, or an array of them) as the grid streams' records:
    one per cell and hour, with the fields the live grid has."""
    document = load_json(body)
    locations = document if isinstance(document, list) else [document]
    out: dict[str, list[Record]] = {
        stream: [] for stream in (open_meteo.GRID_TEMPERATURE, open_meteo.GRID_WIND, open_meteo.GRID_PRECIPITATION)
    }
    for location in locations:
        if not isinstance(location, dict) or not isinstance(location.get("hourly"), dict):
            raise ParseError("an Open-Meteo location has no `hourly` block")
        hourly, units = location["hourly"], location.get("hourly_units") or {}
        lat, lon = optional_number(location.get("latitude")), optional_number(location.get("longitude"))
        offset = location.get("utc_offset_seconds", 0)
        if lat is None or lon is None or isinstance(offset, bool) or not isinstance(offset, int):
            raise ParseError("an Open-Meteo location has no latitude/longitude or offset")
        times = hourly.get("time")
        if not isinstance(times, list):
            raise ParseError("`hourly.time` is not an array")
        columns: dict[str, list[Any]] = {}
        for variable, _field, unit in open_meteo.GRID_VARIABLES:
            if isinstance(units, dict) and variable in units and units[variable] != unit:
                raise ParseError(f"{variable} is in {units[variable]!r}, not {unit!r}")
            column = hourly.get(variable, [None] * len(times))
            if not isinstance(column, list) or len(column) != len(times):
                raise ParseError(f"`hourly.{variable}` does not match `hourly.time`")
            columns[variable] = column
        for index, local in enumerate(times):
            observed_at = open_meteo._utc(iso(local), offset)
            value = {variable: columns[variable][index] for variable in columns}
            split = {
                open_meteo.GRID_TEMPERATURE: {"temperature_c": optional_number(value["temperature_2m"])},
                open_meteo.GRID_WIND: {
                    "wind_speed_kmh": optional_number(value["wind_speed_10m"]),
                    "wind_direction_deg": optional_number(value["wind_direction_10m"]),
                },
                open_meteo.GRID_PRECIPITATION: {"precipitation_mm": optional_number(value["precipitation"])},
            }
            for stream, fields in split.items():
                out[stream].append(Record(stream, observed_at, lat, lon, fields, open_meteo.SOURCE))
    return out


# ---- the event feeds and SWPC: the live parsers over the history endpoints' answers ----


def _usgs_request(start: datetime, end: datetime) -> UpstreamRequest:
    params = (("format", "geojson"), ("starttime", _stamp(start)), ("endtime", _stamp(end)), ("orderby", "time-asc"))
    return UpstreamRequest("earthquake.usgs.gov", "/fdsnws/event/1/query", params)


def _eonet_request(start: datetime, end: datetime) -> UpstreamRequest:
    params = (("status", "all"), ("start", _day(start)), ("end", _day(end)), ("limit", "1000"))
    return UpstreamRequest("eonet.gsfc.nasa.gov", "/api/v3/events", params)


def _gdacs_request(start: datetime, end: datetime) -> UpstreamRequest:
    params = (("fromDate", _day(start)), ("toDate", _day(end)))
    return UpstreamRequest("www.gdacs.org", "/gdacsapi/api/events/geteventlist/SEARCH", params)


def _fixed(request: UpstreamRequest) -> Callable[[datetime, datetime], UpstreamRequest]:
    """A product that always answers its own recent past (SWPC's 7-day products), whatever day is asked."""
    return lambda start, end: request


def _sorted(parse: Callable[[bytes, None], dict[str, list[Record]]]) -> Callable[[bytes], dict[str, list[Record]]]:
    def parsed(body: bytes) -> dict[str, list[Record]]:
        return {stream: sorted(records, key=lambda r: r.observed_at) for stream, records in parse(body, None).items()}

    return parsed


BACKFILLERS: dict[str, Backfiller] = {
    b.source: b
    for b in (
        Backfiller(
            "open-meteo.grid",
            (open_meteo.GRID_TEMPERATURE, open_meteo.GRID_WIND, open_meteo.GRID_PRECIPITATION),
            max_days=90,
            tick_s=HOUR,
            request=_grid_request,
            parse=parse_hourly_grid,
        ),
        Backfiller(
            "usgs.earthquakes",
            ("quakes.usgs",),
            max_days=3650,
            tick_s=HOUR,
            request=_usgs_request,
            parse=_sorted(UsgsEarthquakes().parse),
            select="trailing",
            lookback_s=DAY,  # the live feed is the past day's quakes
        ),
        Backfiller(
            "nasa-eonet.events",
            ("events.eonet",),
            max_days=3650,
            tick_s=6 * HOUR,
            request=_eonet_request,
            parse=_sorted(EonetEvents().parse),
            select="trailing",
            lookback_s=30 * DAY,
        ),
        Backfiller(
            "gdacs.events",
            ("disasters.gdacs",),
            max_days=3650,
            tick_s=6 * HOUR,
            request=_gdacs_request,
            parse=_sorted(GdacsEvents().parse),
            select="trailing",
            lookback_s=7 * DAY,
        ),
        Backfiller(
            "noaa-swpc.kp",
            ("space.kp",),
            max_days=7,
            tick_s=15 * 60,  # the live feed's cadence; a snapshot is the live feed's last readings at the tick
            request=_fixed(kp_7_day_request()),
            parse=parse_kp_7_day,
            select="trailing",
            lookback_s=DAY,
            keep=KP_KEEP,
        ),
        Backfiller(
            "noaa-swpc.solar-wind",
            ("space.solar_wind",),
            max_days=7,
            tick_s=15 * 60,
            request=_fixed(plasma_7_day_request()),
            parse=parse_plasma_7_day,
            select="trailing",
            lookback_s=DAY,
            keep=SOLAR_WIND_KEEP,
        ),
    )
}


def for_stream(stream_id: str) -> Backfiller | None:
    return next((b for b in BACKFILLERS.values() if stream_id in b.streams), None)
