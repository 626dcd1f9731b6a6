"""The time machine: every fetch of a recorded stream kept as a snapshot, hot in Redis and cold in Postgres
month partitions, read back by time, and filled from the upstreams' own past by the backfill.

Imports nothing of worldgate's other domains; the app passes in the Postgres pool and the Redis client.
"""

from .backfill import DayDone, Result, run
from .backfillers import BACKFILLERS, Backfiller, for_stream
from .hot import HotLayer
from .recorder import Recorder, recorded
from .snapshots import Snapshot, records_from_json
from .store import ColdStore, Coverage, Stored

__all__ = [
    "BACKFILLERS",
    "Backfiller",
    "ColdStore",
    "Coverage",
    "DayDone",
    "HotLayer",
    "Recorder",
    "Result",
    "Snapshot",
    "Stored",
    "for_stream",
    "recorded",
    "records_from_json",
    "run",
]
