"""Live feeds: one poll loop per feed, its frames fanned out in-process and across replicas.

The cache tier's fetches and the scheduler's refreshes make frames (`Watch`); a `Hub` fans each one out to
every subscriber of this process from one shared buffer, with bounded queues; a `Bridge` carries them to the
other replicas over Redis pub/sub. `missed` reads what a reconnecting client missed from the time machine's
hot layer. Imports nothing of worldgate's other domains.
"""

from .bridge import Bridge
from .frames import (
    DATA,
    OK,
    STATUS,
    UNREACHABLE,
    Frame,
    data_frame,
    live,
    records_frame,
    sse_block,
    status_frame,
    ws_text,
)
from .hub import DROP_FRAMES_DEFAULT, LAG_FRAMES_DEFAULT, Feed, FeedStats, Hub, Subscriber
from .resume import RESUME_FRAMES_MAX, missed, newer, parse_event_id
from .watch import UNREACHABLE_AFTER, Poller, Watch

__all__ = [
    "DATA",
    "DROP_FRAMES_DEFAULT",
    "LAG_FRAMES_DEFAULT",
    "OK",
    "RESUME_FRAMES_MAX",
    "STATUS",
    "UNREACHABLE",
    "UNREACHABLE_AFTER",
    "Bridge",
    "Feed",
    "FeedStats",
    "Frame",
    "Hub",
    "Poller",
    "Subscriber",
    "Watch",
    "data_frame",
    "live",
    "missed",
    "newer",
    "parse_event_id",
    "records_frame",
    "sse_block",
    "status_frame",
    "ws_text",
]
