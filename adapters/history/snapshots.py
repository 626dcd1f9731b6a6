"""A snapshot: one stream's records as one fetch (or one backfilled hour) saw them, packed for storage.

The records are kept as the canonical JSON array of `Record.as_dict()` (sorted keys, no spaces), so the
same records always give the same bytes: their sha256 is the checksum that finds repeats, and an answer
can carry the stored bytes as they are, without parsing them. Postgres compresses them in the cold layer
(lz4, migrations/0013_history.sql); the hot layer keeps them zlib-compressed.
"""

from __future__ import annotations

import base64
import hashlib
import json
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..records import Record

COMPRESSION_LEVEL = 6  # the hot layer's zlib: within 2% of level 9's size on these payloads, a third of its time


def canonical_json(records: Iterable[Record]) -> bytes:
    return json.dumps(
        [r.as_dict() for r in records], separators=(",", ":"), sort_keys=True, ensure_ascii=False
    ).encode()


def records_from_json(raw: bytes) -> tuple[Record, ...]:
    return tuple(Record(**item) for item in json.loads(raw))


def utc(unix_s: float) -> datetime:
    return datetime.fromtimestamp(unix_s, UTC)


def iso(moment: datetime | None) -> str | None:
    """ISO 8601 UTC with a Z, to the second when whole (as records say times), else to the microsecond."""
    if moment is None:
        return None
    spec = "seconds" if moment.microsecond == 0 else "microseconds"
    return moment.astimezone(UTC).isoformat(timespec=spec).replace("+00:00", "Z")


def unix(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@dataclass(frozen=True, slots=True)
class Snapshot:
    stream: str
    t: float  # unix seconds: when this state took effect (the fetch, or the backfilled hour)
    fetched_at: float
    observed_at: float | None  # the newest record's own time
    checksum: bytes  # sha256 of `raw`
    count: int
    raw: bytes  # the records' canonical JSON
    origin: str = "recorded"  # or "backfill"

    @classmethod
    def of(
        cls, stream: str, records: tuple[Record, ...], *, t: float, fetched_at: float, origin: str = "recorded"
    ) -> Snapshot:
        raw = canonical_json(records)
        newest = max((r.observed_at for r in records), default=None)  # ISO 8601 UTC sorts as time
        return cls(
            stream=stream,
            t=t,
            fetched_at=fetched_at,
            observed_at=unix(newest) if newest else None,
            checksum=hashlib.sha256(raw).digest(),
            count=len(records),
            raw=raw,
            origin=origin,
        )

    def records(self) -> tuple[Record, ...]:
        return records_from_json(self.raw)

    def row(self) -> tuple[Any, ...]:
        """The arguments of history_record() (migrations/0013_history.sql), in its order."""
        observed = utc(self.observed_at) if self.observed_at is not None else None
        return (
            self.stream,
            utc(self.t),
            observed,
            utc(self.fetched_at),
            self.checksum,
            self.origin,
            self.count,
            len(self.raw),
            self.raw,
        )

    def to_wire(self) -> bytes:
        """As the hot layer keeps it: JSON, the records zlib-compressed in base64."""
        document = {
            "stream": self.stream,
            "t": self.t,
            "fetched_at": self.fetched_at,
            "observed_at": self.observed_at,
            "checksum": self.checksum.hex(),
            "count": self.count,
            "packed": base64.b64encode(zlib.compress(self.raw, COMPRESSION_LEVEL)).decode("ascii"),
            "origin": self.origin,
        }
        return json.dumps(document, separators=(",", ":")).encode()

    @classmethod
    def from_wire(cls, raw: bytes | str) -> Snapshot:
        document = json.loads(raw)
        return cls(
            stream=document["stream"],
            t=float(document["t"]),
            fetched_at=float(document["fetched_at"]),
            observed_at=None if document["observed_at"] is None else float(document["observed_at"]),
            checksum=bytes.fromhex(document["checksum"]),
            count=int(document["count"]),
            raw=zlib.decompress(base64.b64decode(document["packed"])),
            origin=document.get("origin", "recorded"),
        )
