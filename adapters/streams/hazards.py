"""Hazards: earthquakes, disaster alerts, natural events, US weather alerts, tropical cyclones.

Freshness budgets of event feeds are the age of their newest event: an hour for quakes (the world has one every
few minutes), 2 days for GDACS (an alert dates from its event's start), 7 days for EONET (open events' last
track point), 6 hours for NWS alerts (sent as conditions change), 12 hours for NHC (advisories every 3 to 6 hours).
"""

from __future__ import annotations

from ..stream import DAY, FIVE_MINUTES, HOUR, QUARTER_HOUR, SIX_HOURS, Sharing, Stream, StreamType

PUBLIC_DOMAIN_US = "Public domain (US Government work)"

QUAKES = Stream(
    id="quakes.usgs",
    name="Earthquakes, past day",
    description="Every earthquake the USGS recorded in the past day: magnitude, depth, place, tsunami flag.",
    category="hazards",
    type=StreamType.REALTIME,
    price_tier="standard",
    upstream="earthquake.usgs.gov",
    license=PUBLIC_DOMAIN_US,
    attribution="U.S. Geological Survey, Earthquake Hazards Program",
    interval_s=FIVE_MINUTES,
    stale_cap_s=HOUR,
    adapter="usgs.earthquakes",
    freshness_budget_s=HOUR,
)
GDACS = Stream(
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
)
EONET = Stream(
    id="events.eonet",
    name="Natural events",
    description="Open natural events curated by NASA EONET: wildfires, storms, volcanoes, sea ice and more.",
    category="hazards",
    type=StreamType.SNAPSHOT,
    price_tier="standard",
    upstream="eonet.gsfc.nasa.gov",
    license=PUBLIC_DOMAIN_US,
    attribution="NASA Earth Observatory Natural Event Tracker (EONET)",
    interval_s=SIX_HOURS,
    stale_cap_s=48 * HOUR,
    adapter="nasa-eonet.events",
    freshness_budget_s=7 * DAY,
)
NWS_ALERTS = Stream(
    id="alerts.nws",
    name="US weather alerts",
    description="Active NWS watches, warnings and advisories: event, severity, urgency, area, expiry.",
    category="hazards",
    type=StreamType.REALTIME,
    price_tier="standard",
    upstream="api.weather.gov",
    license=PUBLIC_DOMAIN_US,
    attribution="NOAA National Weather Service",
    interval_s=QUARTER_HOUR,
    stale_cap_s=2 * HOUR,
    adapter="nws.alerts",
    sharing=Sharing.NOT_SHARED,
    freshness_budget_s=6 * HOUR,
)
TROPICAL_STORMS = Stream(
    id="storms.tropical",
    name="Tropical cyclones",
    description="Active Atlantic and Pacific tropical cyclones from NHC: position, wind (kt), pressure, motion.",
    category="hazards",
    type=StreamType.REALTIME,
    price_tier="standard",
    upstream="www.nhc.noaa.gov",
    license=PUBLIC_DOMAIN_US,
    attribution="NOAA National Hurricane Center",
    interval_s=HOUR,
    stale_cap_s=6 * HOUR,
    adapter="nhc.storms",
    sharing=Sharing.NOT_SHARED,
    freshness_budget_s=12 * HOUR,
)
