"""The stream registry: the single source of truth for what worldgate sells.

Catalog, pricing (by tier), routes and health all derive from these entries; adding a stream is
one entry here plus its adapter. Static streams are bundled curated datasets (adapters/data/);
the live upstream adapters and their cache tier come in their own issue.
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
    OK = "ok"
    MAINTENANCE = "maintenance"
    NOT_SHARED = "not_shared"


@dataclass(frozen=True)
class Stream:
    id: str
    name: str
    description: str
    category: str
    type: StreamType
    price_tier: str
    upstream: str  # a fixed host, or "bundled" for curated data shipped with worldgate
    license: str
    attribution: str
    interval_s: int | None = None  # None: never refreshed (static)
    parent: str | None = None  # one upstream fetch that feeds several streams
    sharing: Sharing = Sharing.OK
    dataset: str | None = None  # bundled file under adapters/data/, for static streams


_CURATED = (
    "Compiled by the worldgate maintainers from public reference facts; coordinates rounded to about 1 km "
    "and elevations approximate"
)

STREAMS: tuple[Stream, ...] = (
    Stream(
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
    ),
    Stream(
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
    ),
)


class Registry:
    """Streams by id. Tests build their own Registry to add an entry without touching this module."""

    def __init__(self, streams: tuple[Stream, ...] | list[Stream] = STREAMS) -> None:
        self._streams = {s.id: s for s in streams}
        assert len(self._streams) == len(streams), "two streams share an id"

    def get(self, stream_id: str) -> Stream | None:
        return self._streams.get(stream_id)

    def all(self) -> list[Stream]:
        return list(self._streams.values())

    def __len__(self) -> int:
        return len(self._streams)
