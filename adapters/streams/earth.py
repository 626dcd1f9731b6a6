"""Ocean buoys, rivers and electricity: NOAA NDBC, USGS water data, Great Britain's carbon intensity.

Budgets: buoys report hourly (2 h), USGS gauges every 15 minutes and are refreshed hourly (2 h), the carbon
intensity is per half hour (2 h).
"""

from __future__ import annotations

from dataclasses import replace

from ..stream import HOUR, Sharing, Stream, StreamType

_BUOY = Stream(
    id="buoys",
    name="",
    description="",
    category="ocean",
    type=StreamType.REALTIME,
    price_tier="basic",
    upstream="www.ndbc.noaa.gov",
    license="Public domain (US Government work)",
    attribution="NOAA National Data Buoy Center",
    interval_s=HOUR,
    stale_cap_s=6 * HOUR,
    adapter="ndbc.latest-obs",
    sharing=Sharing.NOT_SHARED,
    freshness_budget_s=2 * HOUR,
)
BUOYS = (
    replace(_BUOY, id="buoys.wind", name="Buoy winds", description="Wind direction, speed and gusts at NDBC buoys."),
    replace(
        _BUOY, id="buoys.waves", name="Buoy waves", description="Wave height, periods and direction at NDBC buoys."
    ),
    replace(_BUOY, id="buoys.pressure", name="Buoy pressure", description="Sea-level pressure and its 3 h tendency."),
    replace(
        _BUOY, id="buoys.air_temperature", name="Buoy air temperature", description="Air temperature and dew point."
    ),
    replace(_BUOY, id="buoys.water_temperature", name="Buoy water temperature", description="Sea surface temperature."),
)
_WATER = Stream(
    id="water",
    name="",
    description="",
    category="water",
    type=StreamType.REALTIME,
    price_tier="basic",
    upstream="waterservices.usgs.gov",
    license="Public domain (US Government work)",
    attribution="U.S. Geological Survey, National Water Information System (provisional data subject to revision)",
    interval_s=HOUR,
    stale_cap_s=6 * HOUR,
    adapter="usgs.water",
    sharing=Sharing.NOT_SHARED,
    freshness_budget_s=2 * HOUR,
)
WATER = (
    replace(
        _WATER,
        id="water.discharge",
        name="River discharge, US gauges",
        description="Streamflow (ft³/s and m³/s) at ten major USGS river gauges, newest reading.",
    ),
    replace(
        _WATER,
        id="water.gage_height",
        name="River stage, US gauges",
        description="Gage height (ft and m) at ten major USGS river gauges, newest reading.",
    ),
)
_CARBON = Stream(
    id="energy",
    name="",
    description="",
    category="energy",
    type=StreamType.REALTIME,
    price_tier="basic",
    upstream="api.carbonintensity.org.uk",
    license="CC-BY-4.0",
    attribution="Carbon Intensity API (carbonintensity.org.uk), National Energy System Operator, CC BY 4.0",
    interval_s=HOUR,
    stale_cap_s=6 * HOUR,
    adapter="carbon-intensity.regional",
    sharing=Sharing.NOT_SHARED,
    freshness_budget_s=2 * HOUR,
)
CARBON = (
    replace(
        _CARBON,
        id="energy.carbon_intensity",
        name="Carbon intensity, Great Britain",
        description="Forecast carbon intensity (gCO2/kWh) of electricity by GB region, this half hour.",
    ),
    replace(
        _CARBON,
        id="energy.generation_mix",
        name="Generation mix, Great Britain",
        description="Share of each fuel (gas, wind, nuclear, solar ...) in electricity by GB region.",
    ),
)
