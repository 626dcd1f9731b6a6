"""World-state streams: the registry, adapters, the cache tier, the scheduler and the data tier.

Imports nothing of worldgate's other domains.
"""

from .cache import CacheTier, Entry, Read, Unavailable, freshness
from .fetcher import Fetcher
from .filters import FilterError, Filters, distance_km, parse_max_age
from .filters import apply as apply_filters
from .filters import parse as parse_filters
from .records import Record
from .registry import STREAMS, Registry, Sharing, Stream, StreamType
from .replay import Coverage, ReplayServer, live_coverage, recorded_coverage, recorded_points
from .scheduler import Scheduler
from .tier import DATA_DIR, DataTier, NoDataAtPoint, StreamRead
from .upstream.base import Adapter, Point

__all__ = [
    "DATA_DIR",
    "STREAMS",
    "Adapter",
    "CacheTier",
    "Coverage",
    "DataTier",
    "Entry",
    "Fetcher",
    "FilterError",
    "Filters",
    "NoDataAtPoint",
    "Point",
    "Read",
    "Record",
    "Registry",
    "ReplayServer",
    "Scheduler",
    "Sharing",
    "Stream",
    "StreamRead",
    "StreamType",
    "Unavailable",
    "apply_filters",
    "distance_km",
    "freshness",
    "live_coverage",
    "parse_filters",
    "parse_max_age",
    "recorded_coverage",
    "recorded_points",
]
