"""The canonical record every adapter produces, and a stream's snapshot of them."""

from __future__ import annotations

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
