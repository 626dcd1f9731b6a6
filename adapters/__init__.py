"""World-state streams: the registry, canonical records, filters and readers.

Imports nothing of worldgate's other domains.
"""

from .bundled import StreamReader
from .filters import FilterError, Filters
from .filters import apply as apply_filters
from .filters import parse as parse_filters
from .records import Record, Snapshot
from .registry import STREAMS, Registry, Sharing, Stream, StreamType

__all__ = [
    "STREAMS",
    "FilterError",
    "Filters",
    "Record",
    "Registry",
    "Sharing",
    "Snapshot",
    "Stream",
    "StreamReader",
    "StreamType",
    "apply_filters",
    "parse_filters",
]
