"""Curated static sets shipped with worldgate (adapters/data/): loaded once, never refetched."""

from __future__ import annotations

from ..stream import Stream, StreamType

_CURATED = (
    "Compiled by the worldgate maintainers from public reference facts; coordinates rounded to about 1 km "
    "and elevations approximate"
)

CAPITALS = Stream(
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
)
VOLCANOES = Stream(
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
)
