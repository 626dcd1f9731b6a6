"""The data tier: one read API over bundled datasets and live adapters behind the cache.

`read(stream, point=..., max_age_s=...)` answers with records and how fresh they are, or raises
`Unavailable` when nothing can be served within `max_age` (or at all): the paid handler turns that
into a 503, and the payment is not settled (no charge without data). A point read whose upstream
answered for a place farther than the stream's `point_within_km` raises `NoDataAtPoint` (a 404,
not charged). Freshness is the age of what the upstream says its newest record is for
(`observed_at`), against the stream's budget; `max_age` bounds how long ago it was fetched.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from pathlib import Path

from .cache import CacheTier, Unavailable
from .filters import Filters, distance_km
from .grid_reads import lat_span, read_bands
from .records import Record
from .registry import Registry, Stream, StreamType
from .upstream.base import Adapter, Point

DATA_DIR = Path(__file__).with_name("data")


class NoDataAtPoint(Exception):
    """The upstream's answer is for a place too far from the asked point to be sold as its answer."""

    def __init__(self, stream_id: str, reason: str) -> None:
        super().__init__(f"{stream_id}: {reason}")
        self.stream_id = stream_id
        self.reason = reason


def unix_s(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


@dataclass(frozen=True)
class StreamRead:
    stream: Stream
    records: tuple[Record, ...]
    fetched_at_unix_s: float
    cache: str  # the X-Cache value

    def fetch_age_s(self, now: float | None = None) -> float:
        return max(0.0, (time.time() if now is None else now) - self.fetched_at_unix_s)

    @cached_property  # asked three or four times per answer, over every record
    def observed_at(self) -> str | None:
        """When the newest record is for, as the upstream says (ISO 8601 UTC sorts as time)."""
        return max((r.observed_at for r in self.records), default=None)

    def age_s(self, now: float | None = None) -> float | None:
        """now - observed_at of the newest record (None: no record); a recording keeps its age."""
        if self.observed_at is None:
            return None
        return max(0.0, (time.time() if now is None else now) - unix_s(self.observed_at))

    @property
    def freshness(self) -> str:
        """fresh within the stream's budget, else stale; static data does not age."""
        budget, age = self.stream.budget_s, self.age_s()
        if budget is None:
            return "fresh"
        if age is None:
            return "unknown"
        return "fresh" if age <= budget else "stale"

    @property
    def stale(self) -> bool:
        # Served because upstream failed, or older than the stream's freshness budget.
        return self.cache == "STALE" or self.freshness == "stale"


class DataTier:
    def __init__(
        self, registry: Registry, adapters: Mapping[str, Adapter], cache: CacheTier, data_dir: Path = DATA_DIR
    ) -> None:
        self.registry = registry
        self.adapters = adapters
        self.cache = cache
        self._data_dir = data_dir
        self._bundled: dict[str, tuple[tuple[Record, ...], float]] = {}
        missing = {s.adapter for s in registry.all() if s.adapter and s.adapter not in adapters}
        assert not missing, f"streams name adapters that do not exist: {missing}"

    def _load_bundled(self, stream: Stream) -> tuple[tuple[Record, ...], float]:
        if stream.id not in self._bundled:
            assert stream.dataset, f"{stream.id} has no dataset"
            try:
                records = self._parse_bundled(stream, stream.dataset)
            except (OSError, ValueError, KeyError, TypeError) as exc:
                # A broken deploy, not the caller's fault: nothing is sold (503), nothing charged.
                raise Unavailable(stream.id, f"the bundled dataset cannot be read ({type(exc).__name__})") from None
            self._bundled[stream.id] = (records, time.time())
        return self._bundled[stream.id]

    def _parse_bundled(self, stream: Stream, dataset: str) -> tuple[Record, ...]:
        document = json.loads((self._data_dir / dataset).read_text())
        return tuple(
            Record(
                stream=stream.id,
                observed_at=document["compiled_at"],
                lat=float(item["lat"]),
                lon=float(item["lon"]),
                fields=dict(item["fields"]),
                source=f"worldgate:{dataset}",
            )
            for item in document["records"]
        )

    async def read(
        self,
        stream: Stream,
        *,
        point: Point | None = None,
        max_age_s: float | None = None,
        resolution: int | None = None,
        area: Filters | None = None,
    ) -> StreamRead:
        """`resolution`: a finer grid of a grid stream (adapters/grid_reads.py), read over `area` (None: the globe)."""
        if resolution is not None:
            if resolution not in stream.resolutions:
                raise ValueError(f"{stream.id} has no {resolution}-degree grid")
            records, fetched_at, status = await read_bands(
                self.cache, stream, resolution, max_age_s=max_age_s, span=lat_span(area)
            )
            return StreamRead(stream, records, fetched_at, status)
        if stream.type is StreamType.STATIC:
            records, loaded_at = self._load_bundled(stream)
            return StreamRead(stream, records, loaded_at, "HIT")
        assert stream.adapter and stream.interval_s and stream.stale_cap_s is not None
        if stream.point and point is None:
            raise ValueError(f"{stream.id} is read at a point: lat and lon are required")
        adapter = self.adapters[stream.adapter]
        result = await self.cache.read(
            adapter,
            point.rounded() if point else None,
            interval_s=stream.interval_s,
            stale_cap_s=stream.stale_cap_s,
            max_age_s=max_age_s,
        )
        records = result.entry.records.get(stream.id, ())
        if point is not None and stream.point_within_km is not None:
            records = _near(stream, records, point)
        read = StreamRead(stream, records, result.entry.fetched_at_unix_s, result.status)
        # A value fetched for this very read is as fresh as can be, however long the upstream took.
        if max_age_s is not None and read.cache != "MISS" and read.fetch_age_s() > max_age_s:
            raise Unavailable(
                stream.adapter,
                f"the freshest data was fetched {read.fetch_age_s():.0f} s ago, more than max_age={max_age_s:g}",
            )
        return read


def _near(stream: Stream, records: tuple[Record, ...], point: Point) -> tuple[Record, ...]:
    """The records within the stream's bound of the asked point, or NoDataAtPoint naming the nearest."""
    assert stream.point_within_km is not None
    located = [
        (distance_km(point.lat, point.lon, r.lat, r.lon), r) for r in records if r.lat is not None and r.lon is not None
    ]
    near = tuple(r for d, r in located if d <= stream.point_within_km)
    if near or not records:
        return near
    far = min(located, key=lambda pair: pair[0], default=None)
    where = f"; the upstream answered for {far[1].lat:g},{far[1].lon:g}, {far[0]:.0f} km away" if far else ""
    raise NoDataAtPoint(
        stream.id, f"no data for {point.lat:g},{point.lon:g} within {stream.point_within_km:g} km{where}"
    )
