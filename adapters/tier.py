"""The data tier: one read API over bundled datasets and live adapters behind the cache.

`read(stream, point=..., max_age_s=...)` answers with records and how fresh they are, or raises
`Unavailable` when nothing can be served within `max_age` (or at all): the paid handler turns that
into a 503, and the payment is not settled (no charge without data).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .cache import CacheTier, Unavailable, freshness
from .records import Record
from .registry import Registry, Stream, StreamType
from .upstream.base import Adapter, Point

DATA_DIR = Path(__file__).with_name("data")


@dataclass(frozen=True)
class StreamRead:
    stream: Stream
    records: tuple[Record, ...]
    fetched_at_unix_s: float
    cache: str  # the X-Cache value

    def age_s(self, now: float | None = None) -> float:
        return max(0.0, (time.time() if now is None else now) - self.fetched_at_unix_s)

    @property
    def stale(self) -> bool:
        # Served because upstream failed, or simply older than the stream's interval.
        return self.cache == "STALE" or (self.stream.interval_s is not None and self.age_s() > self.stream.interval_s)

    @property
    def freshness(self) -> str:
        return freshness(self.age_s(), self.stream.interval_s)


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

    async def read(self, stream: Stream, *, point: Point | None = None, max_age_s: float | None = None) -> StreamRead:
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
        read = StreamRead(
            stream, result.entry.records.get(stream.id, ()), result.entry.fetched_at_unix_s, result.status
        )
        # A value fetched for this very read is as fresh as can be, however long the upstream took.
        if max_age_s is not None and read.cache != "MISS" and read.age_s() > max_age_s:
            raise Unavailable(
                stream.adapter, f"the freshest data is {read.age_s():.0f} s old, more than max_age={max_age_s:g}"
            )
        return read
