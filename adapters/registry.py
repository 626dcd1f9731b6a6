"""The stream registry: the single source of truth for what worldgate sells.

Catalog, search, attribution, pricing (by tier), routes, the scheduler and health all derive from
these entries; adding a stream is one entry here plus its adapter. One upstream fetch may feed
several streams (field splitting): they name the same `adapter`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from enum import StrEnum


class StreamType(StrEnum):
    REALTIME = "realtime"
    GRID = "grid"
    SNAPSHOT = "snapshot"
    STATIC = "static"


class Sharing(StrEnum):
    OK = "ok"  # listed and sold
    MAINTENANCE = "maintenance"  # listed, not sold for now
    NOT_SHARED = "not_shared"  # invisible to the public API


# Refresh tiers (seconds): how often the scheduler refetches, and how long a value counts as fresh.
MINUTE, FIVE_MINUTES, QUARTER_HOUR, HOUR, SIX_HOURS, DAY = 60, 300, 900, 3600, 21600, 86400


@dataclass(frozen=True)
class Stream:
    id: str
    name: str
    description: str
    category: str
    type: StreamType
    price_tier: str
    upstream: str  # the fixed host its adapter calls, or "bundled" for curated data shipped with worldgate
    license: str
    attribution: str
    interval_s: int | None = None  # None: never refreshed (static)
    stale_cap_s: int | None = None  # serve a stale value on upstream failure up to this age
    adapter: str | None = None  # the fetch group (adapter name) that feeds it; None for bundled data
    point: bool = False  # its data is per location: reads need lat and lon
    sharing: Sharing = Sharing.OK
    dataset: str | None = None  # bundled file under adapters/data/, for static streams
    # Point streams: how far from the asked point the upstream's record may lie (its grid cell, plus the
    # 0.1-degree rounding of the request); a farther record is never sold as the answer for that point.
    point_within_km: float | None = None
    # How old a record may be (now - observed_at, newest record) and still be called fresh; None: static.
    freshness_budget_s: int | None = None

    @property
    def budget_s(self) -> int | None:
        """The freshness budget: the stated one, else the refresh interval (None: static, never ages)."""
        return self.freshness_budget_s if self.freshness_budget_s is not None else self.interval_s

    @property
    def parent(self) -> str | None:
        """The fetch several streams share, when one upstream call feeds more than this stream."""
        return self.adapter


_CURATED = (
    "Compiled by the worldgate maintainers from public reference facts; coordinates rounded to about 1 km "
    "and elevations approximate"
)
_OPEN_METEO = ("CC-BY-4.0", "Weather data by Open-Meteo.com (CC BY 4.0)")
_PUBLIC_DOMAIN_US = "Public domain (US Government work)"

# Freshness budgets are the refresh interval times a stated multiple: 2x for values the upstream renews on
# a clock (weather, air, ISS, Kp, solar wind); for event feeds, the age of their newest event: an hour for
# quakes (the world has one every few minutes), 2 days for GDACS (an alert dates from its event's start),
# 7 days for EONET (open events' last track point). Point bounds: Open-Meteo answers its nearest grid
# point (0.25 degrees for global weather, 0.4 for CAMS global air quality), asked at a 0.1-degree point.
STREAMS: tuple[Stream, ...] = (
    Stream(
        id="weather.current",
        name="Current weather at a point",
        description="Temperature, humidity, wind, gusts, cloud cover and precipitation now at a given lat/lon.",
        category="weather",
        type=StreamType.REALTIME,
        price_tier="basic",
        upstream="api.open-meteo.com",
        license=_OPEN_METEO[0],
        attribution=_OPEN_METEO[1],
        interval_s=QUARTER_HOUR,
        stale_cap_s=3 * HOUR,
        adapter="open-meteo.current",
        point=True,
        freshness_budget_s=2 * QUARTER_HOUR,
        point_within_km=30.0,
    ),
    Stream(
        id="weather.grid.temperature",
        name="Global temperature grid",
        description="Air temperature at 2 m on a coarse 30-degree global grid.",
        category="weather",
        type=StreamType.GRID,
        price_tier="basic",
        upstream="api.open-meteo.com",
        license=_OPEN_METEO[0],
        attribution=_OPEN_METEO[1],
        interval_s=HOUR,
        stale_cap_s=6 * HOUR,
        adapter="open-meteo.grid",
        freshness_budget_s=2 * HOUR,
    ),
    Stream(
        id="weather.grid.wind",
        name="Global wind grid",
        description="Wind speed and direction at 10 m on a coarse 30-degree global grid.",
        category="weather",
        type=StreamType.GRID,
        price_tier="basic",
        upstream="api.open-meteo.com",
        license=_OPEN_METEO[0],
        attribution=_OPEN_METEO[1],
        interval_s=HOUR,
        stale_cap_s=6 * HOUR,
        adapter="open-meteo.grid",
        freshness_budget_s=2 * HOUR,
    ),
    Stream(
        id="weather.grid.precipitation",
        name="Global precipitation grid",
        description="Precipitation on a coarse 30-degree global grid.",
        category="weather",
        type=StreamType.GRID,
        price_tier="basic",
        upstream="api.open-meteo.com",
        license=_OPEN_METEO[0],
        attribution=_OPEN_METEO[1],
        interval_s=HOUR,
        stale_cap_s=6 * HOUR,
        adapter="open-meteo.grid",
        freshness_budget_s=2 * HOUR,
    ),
    Stream(
        id="air.quality",
        name="Air quality at a point",
        description="US and European AQI, PM10, PM2.5, CO, NO2, O3 and SO2 now at a given lat/lon.",
        category="environment",
        type=StreamType.REALTIME,
        price_tier="basic",
        upstream="air-quality-api.open-meteo.com",
        license=_OPEN_METEO[0],
        attribution="Air quality data by Open-Meteo.com (CC BY 4.0), from CAMS (Copernicus)",
        interval_s=HOUR,
        stale_cap_s=6 * HOUR,
        adapter="open-meteo.air-quality",
        point=True,
        freshness_budget_s=2 * HOUR,
        point_within_km=40.0,
    ),
    Stream(
        id="quakes.usgs",
        name="Earthquakes, past day",
        description="Every earthquake the USGS recorded in the past day: magnitude, depth, place, tsunami flag.",
        category="hazards",
        type=StreamType.REALTIME,
        price_tier="standard",
        upstream="earthquake.usgs.gov",
        license=_PUBLIC_DOMAIN_US,
        attribution="U.S. Geological Survey, Earthquake Hazards Program",
        interval_s=FIVE_MINUTES,
        stale_cap_s=HOUR,
        adapter="usgs.earthquakes",
        freshness_budget_s=HOUR,
    ),
    Stream(
        id="iss.position",
        name="International Space Station position",
        description="Where the ISS is now: latitude, longitude, altitude, velocity and visibility.",
        category="space",
        type=StreamType.REALTIME,
        price_tier="basic",
        upstream="api.wheretheiss.at",
        license="No licence published (a free public API); verify its terms before resale",
        attribution="Position by wheretheiss.at",
        interval_s=MINUTE,
        stale_cap_s=10 * MINUTE,
        adapter="iss.position",
        freshness_budget_s=2 * MINUTE,
    ),
    Stream(
        id="space.kp",
        name="Planetary K index",
        description="Geomagnetic activity (Kp) and its NOAA storm level, recent readings.",
        category="space",
        type=StreamType.REALTIME,
        price_tier="basic",
        upstream="services.swpc.noaa.gov",
        license=_PUBLIC_DOMAIN_US,
        attribution="NOAA Space Weather Prediction Center",
        interval_s=QUARTER_HOUR,
        stale_cap_s=3 * HOUR,
        adapter="noaa-swpc.kp",
        freshness_budget_s=2 * QUARTER_HOUR,
    ),
    Stream(
        id="space.solar_wind",
        name="Solar wind plasma",
        description="Solar wind density, speed and temperature at L1, recent readings from the spacecraft NOAA"
        " nominates (each record names it).",
        category="space",
        type=StreamType.REALTIME,
        price_tier="basic",
        upstream="services.swpc.noaa.gov",
        license=_PUBLIC_DOMAIN_US,
        attribution="NOAA Space Weather Prediction Center",
        interval_s=QUARTER_HOUR,
        stale_cap_s=3 * HOUR,
        adapter="noaa-swpc.solar-wind",
        freshness_budget_s=2 * QUARTER_HOUR,
    ),
    Stream(
        id="disasters.gdacs",
        name="Disaster alerts",
        description="Current GDACS alerts: earthquakes, cyclones, floods, volcanoes, droughts, wildfires.",
        category="hazards",
        type=StreamType.REALTIME,
        price_tier="standard",
        upstream="www.gdacs.org",
        license="No licence published (a free public API); verify its terms before resale",
        attribution="GDACS, a cooperation framework of the United Nations and the European Commission",
        interval_s=QUARTER_HOUR,
        stale_cap_s=6 * HOUR,
        adapter="gdacs.events",
        freshness_budget_s=2 * DAY,
    ),
    Stream(
        id="events.eonet",
        name="Natural events",
        description="Open natural events curated by NASA EONET: wildfires, storms, volcanoes, sea ice and more.",
        category="hazards",
        type=StreamType.SNAPSHOT,
        price_tier="standard",
        upstream="eonet.gsfc.nasa.gov",
        license=_PUBLIC_DOMAIN_US,
        attribution="NASA Earth Observatory Natural Event Tracker (EONET)",
        interval_s=SIX_HOURS,
        stale_cap_s=48 * HOUR,
        adapter="nasa-eonet.events",
        freshness_budget_s=7 * DAY,
    ),
    Stream(
        id="static.capitals",
        name="World capitals",
        description="National capital cities of 55 countries with their coordinates.",
        category="geography",
        type=StreamType.STATIC,
        price_tier="basic",
        upstream="bundled",
        license="CC0-1.0",
        attribution=_CURATED,
        dataset="capitals.json",
    ),
    Stream(
        id="static.volcanoes",
        name="Notable volcanoes",
        description="Thirty well-known volcanoes: location, country, type and summit elevation in metres.",
        category="hazards",
        type=StreamType.STATIC,
        price_tier="standard",
        upstream="bundled",
        license="CC0-1.0",
        attribution=_CURATED,
        dataset="volcanoes.json",
    ),
)


class Registry:
    """Streams by id. Tests build their own Registry to add an entry without touching this module."""

    def __init__(self, streams: Iterable[Stream] = STREAMS, sharing: dict[str, Sharing] | None = None) -> None:
        streams = tuple(streams)
        unknown = sorted(set(sharing or {}) - {s.id for s in streams})
        if unknown:  # a typo must not leave a stream shared that its operator meant to hide
            raise ValueError(f"sharing names streams that do not exist: {', '.join(unknown)}")
        overridden = [replace(s, sharing=sharing[s.id]) if sharing and s.id in sharing else s for s in streams]
        self._streams = {s.id: s for s in overridden}
        assert len(self._streams) == len(overridden), "two streams share an id"

    def with_sharing(self, overrides: dict[str, Sharing]) -> Registry:
        """This registry with some streams' sharing changed (the operator's, at run time); ids that do not
        exist are ignored here: they were validated when set, and a stream may since have been removed."""
        known = {k: v for k, v in overrides.items() if k in self._streams}
        return Registry(self._streams.values(), sharing=known)

    def exists(self, stream_id: str) -> bool:
        """Whether the stream exists at all, shared or not (for the operator, who may re-share it)."""
        return stream_id in self._streams

    def every(self) -> list[Stream]:
        """Every stream, the unshared ones too (for the operator's views)."""
        return list(self._streams.values())

    def get(self, stream_id: str) -> Stream | None:
        """A stream the public may see (unshared streams do not exist to it)."""
        stream = self._streams.get(stream_id)
        return stream if stream is not None and stream.sharing is not Sharing.NOT_SHARED else None

    def all(self) -> list[Stream]:
        """Every stream the public may see."""
        return [s for s in self._streams.values() if s.sharing is not Sharing.NOT_SHARED]

    def categories(self) -> set[str]:
        return {s.category for s in self.all()}

    def by_adapter(self) -> dict[str, list[Stream]]:
        """Fetch group → the visible streams it feeds."""
        groups: dict[str, list[Stream]] = {}
        for stream in self.all():
            if stream.adapter:
                groups.setdefault(stream.adapter, []).append(stream)
        return groups

    def __len__(self) -> int:
        return len(self.all())
