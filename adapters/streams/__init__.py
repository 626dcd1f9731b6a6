"""Every stream worldgate has, in catalog order, and the sharing it ships with.

The sharing model: a new source's streams are declared `not_shared` (nothing is sold before someone has read
its licence); `SHIPPED_SHARING` is the shipped configuration, the reviewed list of those it shares. The
operator's settings (WORLDGATE_STREAM_SHARING) and console change either at run time.
"""

from __future__ import annotations

from dataclasses import replace

from ..stream import Sharing, Stream
from . import bundled, earth, hazards, space, weather

# Every stream as declared: the first thirteen as they were, then the field-split children and new sources.
DECLARED: tuple[Stream, ...] = (
    weather.WEATHER_CURRENT,
    *weather.GRIDS,
    weather.AIR_QUALITY,
    hazards.QUAKES,
    space.ISS,
    space.KP,
    space.SOLAR_WIND,
    hazards.GDACS,
    hazards.EONET,
    bundled.CAPITALS,
    bundled.VOLCANOES,
    *weather.WEATHER_CHILDREN,
    *weather.AIR_CHILDREN,
    *weather.MARINE,
    weather.FLOOD,
    hazards.NWS_ALERTS,
    hazards.TROPICAL_STORMS,
    space.XRAYS,
    space.PROTONS,
    *earth.BUOYS,
    *earth.WATER,
    *earth.CARBON,
)

# Reviewed for resale: US Government works (public domain) and CC BY 4.0 data, attributed in each entry.
SHIPPED_SHARING: dict[str, Sharing] = {
    s.id: Sharing.OK
    for s in (
        *weather.WEATHER_CHILDREN,
        *weather.AIR_CHILDREN,
        *weather.MARINE,
        weather.FLOOD,
        hazards.NWS_ALERTS,
        hazards.TROPICAL_STORMS,
        space.XRAYS,
        space.PROTONS,
        *earth.BUOYS,
        *earth.WATER,
        *earth.CARBON,
    )
}

STREAMS: tuple[Stream, ...] = tuple(
    replace(s, sharing=SHIPPED_SHARING[s.id]) if s.id in SHIPPED_SHARING else s for s in DECLARED
)
