"""Space: the ISS, geomagnetic activity, the solar wind, GOES X-rays and protons.

Freshness budgets are twice the refresh interval: every one of these is renewed on a clock.
"""

from __future__ import annotations

from dataclasses import replace

from ..stream import HOUR, MINUTE, QUARTER_HOUR, Sharing, Stream, StreamType

_PUBLIC_DOMAIN_US = "Public domain (US Government work)"

ISS = Stream(
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
)
KP = Stream(
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
)
SOLAR_WIND = replace(
    KP,
    id="space.solar_wind",
    name="Solar wind plasma",
    description="Solar wind density, speed and temperature at L1, recent readings from the spacecraft NOAA"
    " nominates (each record names it).",
    adapter="noaa-swpc.solar-wind",
)
XRAYS = replace(
    KP,
    id="solar.xray_flux",
    name="Solar X-ray flux",
    description="GOES X-ray flux (0.1-0.8 and 0.05-0.4 nm, W/m²) and the flare class, the last hour by minute.",
    category="solar",  # solar flares and energetic particles, beside `space` (the ISS, geomagnetism, solar wind)
    attribution="NOAA Space Weather Prediction Center (GOES)",
    adapter="noaa-swpc.xrays",
    sharing=Sharing.NOT_SHARED,
)
PROTONS = replace(
    XRAYS,
    id="solar.proton_flux",
    name="Solar proton flux",
    description="GOES integral proton flux (>=10, 50, 100 MeV, pfu) and the radiation storm level, by minute.",
    adapter="noaa-swpc.protons",
)
