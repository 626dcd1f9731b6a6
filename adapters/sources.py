"""Every upstream adapter worldgate has, by fetch-group name (what registry streams point at)."""

from __future__ import annotations

from .upstream.air_quality import OpenMeteoAirQuality
from .upstream.base import Adapter
from .upstream.eonet import EonetEvents
from .upstream.gdacs import GdacsEvents
from .upstream.iss import IssPosition
from .upstream.noaa_swpc import NoaaKp, NoaaSolarWind
from .upstream.open_meteo import OpenMeteoCurrent, OpenMeteoGrid
from .upstream.usgs import UsgsEarthquakes


def all_adapters() -> dict[str, Adapter]:
    adapters: list[Adapter] = [
        OpenMeteoCurrent(),
        OpenMeteoGrid(),
        OpenMeteoAirQuality(),
        UsgsEarthquakes(),
        IssPosition(),
        NoaaKp(),
        NoaaSolarWind(),
        GdacsEvents(),
        EonetEvents(),
    ]
    return {adapter.name: adapter for adapter in adapters}
