"""Weather, air, sea and rivers from Open-Meteo (CC BY 4.0): point reads, the global grids, field-split children.

Freshness budgets are twice the refresh interval (values the upstream renews on a clock). Point bounds: Open-Meteo
answers its nearest model cell (0.25 degrees for global weather and waves, 0.4 for CAMS global air quality,
0.05 for GloFAS rivers), asked at a 0.1-degree point.
"""

from __future__ import annotations

from dataclasses import replace

from ..stream import HOUR, QUARTER_HOUR, SIX_HOURS, Sharing, Stream, StreamType

_OPEN_METEO = ("CC-BY-4.0", "Weather data by Open-Meteo.com (CC BY 4.0)")
_AIR = "Air quality data by Open-Meteo.com (CC BY 4.0), from CAMS (Copernicus)"
GRID_RESOLUTIONS = (2, 5, 10, 20)  # adapters/upstream/open_meteo_grids.py fetches them


def _grid(id_: str, name: str, description: str) -> Stream:
    return Stream(
        id=id_,
        name=name,
        description=description + " Finer global grids with resolution=2, 5, 10 or 20 (degrees), priced by cells.",
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
        resolutions=GRID_RESOLUTIONS,
    )


WEATHER_CURRENT = Stream(
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
)
GRIDS = (
    _grid("weather.grid.temperature", "Global temperature grid", "Air temperature at 2 m on a 30-degree global grid."),
    _grid("weather.grid.wind", "Global wind grid", "Wind speed and direction at 10 m on a 30-degree global grid."),
    _grid("weather.grid.precipitation", "Global precipitation grid", "Precipitation on a 30-degree global grid."),
)
AIR_QUALITY = Stream(
    id="air.quality",
    name="Air quality at a point",
    description="US and European AQI, PM10, PM2.5, CO, NO2, O3 and SO2 now at a given lat/lon.",
    category="environment",
    type=StreamType.REALTIME,
    price_tier="basic",
    upstream="air-quality-api.open-meteo.com",
    license=_OPEN_METEO[0],
    attribution=_AIR,
    interval_s=HOUR,
    stale_cap_s=6 * HOUR,
    adapter="open-meteo.air-quality",
    point=True,
    freshness_budget_s=2 * HOUR,
    point_within_km=40.0,
)


def _child(parent: Stream, id_: str, name: str, description: str) -> Stream:
    """A field-split child: the parent's fetch and terms, a share of its fields (a new source's start: unshared)."""
    return replace(parent, id=id_, name=name, description=description, sharing=Sharing.NOT_SHARED)


WEATHER_CHILDREN = (
    _child(WEATHER_CURRENT, "weather.temperature", "Temperature at a point", "Air and feels-like temperature now."),
    _child(WEATHER_CURRENT, "weather.humidity", "Humidity at a point", "Relative humidity at 2 m now."),
    _child(WEATHER_CURRENT, "weather.wind", "Wind at a point", "Wind speed, direction and gusts at 10 m now."),
    _child(WEATHER_CURRENT, "weather.precipitation", "Precipitation at a point", "Precipitation now (mm)."),
    _child(WEATHER_CURRENT, "weather.conditions", "Sky at a point", "WMO weather code and cloud cover now."),
)
AIR_CHILDREN = (
    _child(AIR_QUALITY, "air.aqi", "Air quality index at a point", "US and European AQI now."),
    _child(AIR_QUALITY, "air.pm2_5", "PM2.5 at a point", "Fine particulate matter (PM2.5, μg/m³) now."),
    _child(AIR_QUALITY, "air.pm10", "PM10 at a point", "Particulate matter (PM10, μg/m³) now."),
    _child(AIR_QUALITY, "air.ozone", "Ozone at a point", "Ozone (O3, μg/m³) now."),
    _child(AIR_QUALITY, "air.no2", "Nitrogen dioxide at a point", "Nitrogen dioxide (NO2, μg/m³) now."),
)

_MARINE = Stream(
    id="marine",
    name="",
    description="",
    category="ocean",
    type=StreamType.REALTIME,
    price_tier="basic",
    upstream="marine-api.open-meteo.com",
    license="CC-BY-4.0",
    attribution="Marine data by Open-Meteo.com (CC BY 4.0)",
    interval_s=HOUR,
    stale_cap_s=6 * HOUR,
    adapter="open-meteo.marine",
    point=True,
    sharing=Sharing.NOT_SHARED,
    freshness_budget_s=2 * HOUR,
    point_within_km=30.0,
)
MARINE = (
    replace(_MARINE, id="marine.waves", name="Waves at a point", description="Wave height, direction and period now."),
    replace(_MARINE, id="marine.swell", name="Swell at a point", description="Swell height, direction and period now."),
    replace(_MARINE, id="marine.wind_waves", name="Wind waves at a point", description="Wind wave height now."),
    replace(
        _MARINE, id="marine.sea_temperature", name="Sea temperature at a point", description="Sea surface temperature."
    ),
    replace(_MARINE, id="marine.currents", name="Ocean currents at a point", description="Current velocity, heading."),
)
FLOOD = Stream(
    id="flood.river_discharge",
    name="River discharge at a point",
    description="Daily river discharge (m³/s) of the nearest GloFAS river cell, the past week and today.",
    category="water",
    type=StreamType.SNAPSHOT,
    price_tier="basic",
    upstream="flood-api.open-meteo.com",
    license="CC-BY-4.0",
    attribution="Flood data by Open-Meteo.com (CC BY 4.0), from GloFAS, Copernicus Emergency Management Service",
    interval_s=SIX_HOURS,
    stale_cap_s=48 * HOUR,
    adapter="open-meteo.flood",
    point=True,
    sharing=Sharing.NOT_SHARED,
    freshness_budget_s=2 * 86400,
    point_within_km=15.0,
)
