"""A grid stream read at a finer resolution: the bands its area touches, each one cached fetch, gathered.

Each band (adapters/upstream/open_meteo_grids.py) goes through the cache tier like any fetch group: one
upstream call per band per refresh however many streams or buyers read it, stale-on-error, its circuit. A read
is sold only whole: if one band it needs cannot be served, the read is `Unavailable` (a 503, not charged)
rather than a grid with a hole in it. Its `fetched_at` is the oldest band's and its X-Cache the worst band's.
"""

from __future__ import annotations

import asyncio
import math

from .cache import CacheTier, Read, Unavailable
from .filters import EARTH_RADIUS_KM, Filters
from .records import Record
from .stream import Stream
from .upstream.open_meteo_grids import OpenMeteoGridBand, bands_for, grid_key

# X-Cache of a read made of several fetches: the one that says least about its freshness wins (NEG, a band
# with no cell answered, carries no data to be stale about).
_WORST_FIRST = ("STALE", "MISS", "DEDUP", "REDIS-HIT", "HIT", "NEG")


def lat_span(filters: Filters | None) -> tuple[float, float] | None:
    """The latitudes an area reaches (None: the whole globe), to read only the bands holding its cells."""
    if filters is None:
        return None
    if filters.bbox is not None:
        return filters.bbox[1], filters.bbox[3]
    if filters.center is not None and filters.radius_km is not None:
        reach = math.degrees(filters.radius_km / EARTH_RADIUS_KM)
        return max(-90.0, filters.center[0] - reach), min(90.0, filters.center[0] + reach)
    return None


def worst(statuses: list[str]) -> str:
    return min(statuses, key=lambda s: _WORST_FIRST.index(s) if s in _WORST_FIRST else len(_WORST_FIRST))


async def read_bands(
    cache: CacheTier,
    stream: Stream,
    resolution: int,
    *,
    max_age_s: float | None,
    span: tuple[float, float] | None,
) -> tuple[tuple[Record, ...], float, str]:
    """(records of `stream` at `resolution` in lattice order, fetched_at of the oldest band, X-Cache)."""
    assert stream.interval_s and stream.stale_cap_s is not None
    chosen = bands_for(resolution, span)

    async def one(band: OpenMeteoGridBand) -> Read:
        assert stream.interval_s and stream.stale_cap_s is not None
        read = await cache.read(
            band, None, interval_s=stream.interval_s, stale_cap_s=stream.stale_cap_s, max_age_s=max_age_s
        )
        if max_age_s is not None and read.status != "MISS" and read.entry.age_s() > max_age_s:
            raise Unavailable(band.name, f"the freshest data was fetched {read.entry.age_s():.0f} s ago")
        return read

    reads = await asyncio.gather(*(one(band) for band in chosen))
    key = grid_key(stream.id, resolution)
    records = tuple(record for read in reads for record in read.entry.records.get(key, ()))
    fetched_at = min((read.entry.fetched_at_unix_s for read in reads), default=0.0)
    return records, fetched_at, worst([read.status for read in reads])
