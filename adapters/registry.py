"""The stream registry: the single source of truth for what worldgate sells.

Catalog, search, attribution, pricing (by tier), routes, the scheduler and health all derive from
these entries (adapters/streams/, the vocabulary in adapters/stream.py); adding a stream is one entry
there plus its adapter. One upstream fetch may feed several streams (field splitting): they name the
same `adapter`, their parent fetch.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import replace

from .stream import DAY, FIVE_MINUTES, HOUR, MINUTE, QUARTER_HOUR, SIX_HOURS, Sharing, Stream, StreamType
from .streams import DECLARED, SHIPPED_SHARING, STREAMS

__all__ = [
    "DAY",
    "DECLARED",
    "FIVE_MINUTES",
    "HOUR",
    "MINUTE",
    "QUARTER_HOUR",
    "SHIPPED_SHARING",
    "SIX_HOURS",
    "STREAMS",
    "Registry",
    "Sharing",
    "Stream",
    "StreamType",
    "with_intervals",
]
INTERVAL_S_MIN = 10  # a configured refresh interval below this would hammer an upstream


def with_intervals(streams: Iterable[Stream], intervals: Mapping[str, float]) -> tuple[Stream, ...]:
    """The streams with their fetch groups' refresh intervals overridden (WORLDGATE_SOURCE_INTERVALS: fetch group
    -> seconds). A stream without a stated freshness budget keeps its old interval as its budget: what counts as
    fresh is the upstream's cadence, not how often worldgate asks. Unknown groups and static data are refused."""
    streams = tuple(streams)
    groups = {s.adapter for s in streams if s.adapter and s.interval_s}
    unknown = sorted(set(intervals) - groups)
    if unknown:
        raise ValueError(f"intervals name fetch groups that do not exist: {', '.join(unknown)}")
    for group, seconds in intervals.items():
        if not seconds >= INTERVAL_S_MIN:
            raise ValueError(f"the interval of {group} must be at least {INTERVAL_S_MIN} s, not {seconds}")
    return tuple(
        replace(s, interval_s=int(intervals[s.adapter]), freshness_budget_s=s.budget_s) if s.adapter in intervals else s
        for s in streams
    )


class Registry:
    """Streams by id. Tests build their own Registry to add an entry without touching this module."""

    def __init__(
        self,
        streams: Iterable[Stream] = STREAMS,
        sharing: dict[str, Sharing] | None = None,
        intervals: Mapping[str, float] | None = None,
    ) -> None:
        streams = tuple(streams)
        if intervals:
            streams = with_intervals(streams, intervals)
        unknown = sorted(set(sharing or {}) - {s.id for s in streams})
        if unknown:  # a typo must not leave a stream shared that its operator meant to hide
            raise ValueError(f"sharing names streams that do not exist: {', '.join(unknown)}")
        overridden = [replace(s, sharing=sharing[s.id]) if sharing and s.id in sharing else s for s in streams]
        self._streams = {s.id: s for s in overridden}
        assert len(self._streams) == len(overridden), "two streams share an id"
        self._fanout = Counter(s.adapter for s in overridden if s.adapter)

    def with_sharing(self, overrides: dict[str, Sharing]) -> Registry:
        """This registry with some streams' sharing changed (the operator's, at run time); ids that do not
        exist are ignored here: they were validated when set, and a stream may since have been removed."""
        known = {k: v for k, v in overrides.items() if k in self._streams}
        return Registry(self._streams.values(), sharing=known)

    def exists(self, stream_id: str) -> bool:
        """Whether the stream exists at all, shared or not (for the operator, who may re-share it)."""
        return stream_id in self._streams

    def every(self) -> list[Stream]:
        """Every stream, the unshared ones too (for the operator's views)."""
        return list(self._streams.values())

    def get(self, stream_id: str) -> Stream | None:
        """A stream the public may see (unshared streams do not exist to it)."""
        stream = self._streams.get(stream_id)
        return stream if stream is not None and stream.sharing is not Sharing.NOT_SHARED else None

    def all(self) -> list[Stream]:
        """Every stream the public may see."""
        return [s for s in self._streams.values() if s.sharing is not Sharing.NOT_SHARED]

    def categories(self) -> set[str]:
        return {s.category for s in self.all()}

    def fanout(self, group: str | None) -> int:
        """How many streams one fetch group feeds, shared or not (field splitting when more than one)."""
        return self._fanout[group] if group is not None else 0

    def parent(self, stream: Stream) -> str | None:
        """The fetch a field-split stream shares with its siblings; None when it has a fetch of its own."""
        return stream.adapter if self.fanout(stream.adapter) > 1 else None

    def by_adapter(self) -> dict[str, list[Stream]]:
        """Fetch group → the visible streams it feeds."""
        groups: dict[str, list[Stream]] = {}
        for stream in self.all():
            if stream.adapter:
                groups.setdefault(stream.adapter, []).append(stream)
        return groups

    def __len__(self) -> int:
        return len(self.all())
