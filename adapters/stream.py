"""One stream: what worldgate sells under /v1/streams/{id}, and the vocabulary its entries use.

The entries themselves are in adapters/streams/ (one module per domain); adapters/registry.py holds them.
"""

from __future__ import annotations

from dataclasses import dataclass
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


# Refresh intervals (seconds): how often the scheduler refetches, and how long a value counts as fresh.
# The scheduler's tiers (adapters/scheduler.py) group them: about a minute, up to hourly, 6-hourly, static.
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
    # Grid streams: the finer global grids (degrees) a read may ask for with `resolution=`, each fetched apart
    # from the default grid (adapters/upstream/open_meteo_grids.py) and priced by the cells it answers.
    resolutions: tuple[int, ...] = ()

    @property
    def budget_s(self) -> int | None:
        """The freshness budget: the stated one, else the refresh interval (None: static, never ages)."""
        return self.freshness_budget_s if self.freshness_budget_s is not None else self.interval_s

    @property
    def parent(self) -> str | None:
        """The fetch this stream reads (its fetch group); field-split streams share one (`Registry.fanout`)."""
        return self.adapter
