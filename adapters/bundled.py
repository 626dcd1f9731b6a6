"""The bundled (static) datasets: curated JSON files under adapters/data/, read once per process."""

from __future__ import annotations

import json
import time
from pathlib import Path

from .records import Record, Snapshot
from .registry import Registry, Stream, StreamType

DATA_DIR = Path(__file__).with_name("data")


def load(stream: Stream, data_dir: Path = DATA_DIR) -> Snapshot:
    assert stream.type is StreamType.STATIC and stream.dataset, f"{stream.id} is not a bundled dataset"
    document = json.loads((data_dir / stream.dataset).read_text())
    records = tuple(
        Record(
            stream=stream.id,
            observed_at=document["compiled_at"],
            lat=float(item["lat"]),
            lon=float(item["lon"]),
            fields=dict(item["fields"]),
            source=f"worldgate:{stream.dataset}",
        )
        for item in document["records"]
    )
    return Snapshot(stream=stream.id, records=records, fetched_at_unix_s=time.time())


class StreamReader:
    """Reads a stream's current snapshot. Static streams come from bundled files, loaded once."""

    def __init__(self, registry: Registry, data_dir: Path = DATA_DIR) -> None:
        self._registry = registry
        self._data_dir = data_dir
        self._static: dict[str, Snapshot] = {}

    async def read(self, stream_id: str) -> Snapshot:
        stream = self._registry.get(stream_id)
        if stream is None:
            raise KeyError(stream_id)
        if stream.type is not StreamType.STATIC:
            raise NotImplementedError(f"{stream_id}: live upstream adapters are not built yet")
        snapshot = self._static.get(stream_id)
        if snapshot is None:
            snapshot = self._static[stream_id] = load(stream, self._data_dir)
        return snapshot
