"""Every upstream adapter worldgate has, by fetch-group name (what registry streams point at).

The finer grids' bands (adapters/upstream/open_meteo_grids.py) are not here: no stream names them as its fetch
group; the data tier reads them for a read with `resolution=`.
"""

from __future__ import annotations

from .upstream.air_quality import OpenMeteoAirQuality
from .upstream.base import Adapter
from .upstream.carbon import CarbonIntensityRegional
from .upstream.eonet import EonetEvents
from .upstream.flood import OpenMeteoFlood
from .upstream.gdacs import GdacsEvents
from .upstream.iss import IssPosition
from .upstream.marine import OpenMeteoMarine
from .upstream.ndbc import NdbcLatestObs
from .upstream.nhc import NhcActiveStorms
from .upstream.noaa_goes import GoesProtons, GoesXrays
from .upstream.noaa_swpc import NoaaKp, NoaaSolarWind
from .upstream.nws import NwsAlerts
from .upstream.open_meteo import OpenMeteoCurrent, OpenMeteoGrid
from .upstream.usgs import UsgsEarthquakes
from .upstream.usgs_water import UsgsWater


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
        OpenMeteoMarine(),
        OpenMeteoFlood(),
        NwsAlerts(),
        NhcActiveStorms(),
        GoesXrays(),
        GoesProtons(),
        NdbcLatestObs(),
        UsgsWater(),
        CarbonIntensityRegional(),
    ]
    return {adapter.name: adapter for adapter in adapters}
