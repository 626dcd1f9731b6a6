"""The time machine's settings (adapters/history): recording, its two layers, and the bounds of a history read."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from .fields import From, Frozen


class HistorySettings(Frozen):
    # record every upstream fetch of a shared realtime, grid or snapshot stream
    record: Annotated[bool, From("WORLDGATE_HISTORY_RECORD", "history.record")] = True
    # how long the hot layer (Redis) keeps snapshots
    hot_window_s: Annotated[float, From("WORLDGATE_HISTORY_HOT_WINDOW_S", "history.hot_window_s"), Field(ge=60)] = (
        172_800.0
    )
    # how often what could not be written through is flushed to the cold layer (also at shutdown)
    flush_s: Annotated[float, From("WORLDGATE_HISTORY_FLUSH_S", "history.flush_s"), Field(gt=0)] = 60.0
    # month partitions wholly older than this are dropped
    retention_days: Annotated[
        float, From("WORLDGATE_HISTORY_RETENTION_DAYS", "history.retention_days"), Field(gt=0)
    ] = 1826.0
    # the longest from..to one history read may ask
    range_days_max: Annotated[
        float, From("WORLDGATE_HISTORY_RANGE_DAYS_MAX", "history.range_days_max"), Field(gt=0)
    ] = 366.0
    # the most snapshots one history read may ask (at the stream's cadence, or its step)
    snapshots_max: Annotated[
        int, From("WORLDGATE_HISTORY_SNAPSHOTS_MAX", "history.snapshots_max"), Field(ge=1, le=100_000)
    ] = 1000
    # a history read costs the stream's price once per started block of this many snapshots
    block_snapshots: Annotated[
        int, From("WORLDGATE_HISTORY_BLOCK_SNAPSHOTS", "history.block_snapshots"), Field(ge=1)
    ] = 24
