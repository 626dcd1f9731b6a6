"""The canonical record every adapter produces, and a stream's snapshot of them."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Record:
    stream: str
    observed_at: str  # ISO 8601, UTC
    lat: float | None
    lon: float | None
    fields: dict[str, Any]
    source: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "stream": self.stream,
            "observed_at": self.observed_at,
            "lat": self.lat,
            "lon": self.lon,
            "fields": self.fields,
            "source": self.source,
        }


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What one read of a stream returned, and how old it is."""

    stream: str
    records: tuple[Record, ...]
    fetched_at_unix_s: float
    stale: bool = False
    cache: str = "HIT"  # how the read was served; the X-Cache header

    def age_s(self, now_unix_s: float | None = None) -> float:
        return max(0.0, (time.time() if now_unix_s is None else now_unix_s) - self.fetched_at_unix_s)
