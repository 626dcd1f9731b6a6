"""`Last-Event-ID`: what a reconnecting client missed, read back from the time machine's hot layer.

A data frame's id is the observed time of the stream's newest record. The hot layer (Redis, the last 48 hours)
keeps each distinct state a fetch saw, scored by the fetch's time; a state observed after the client's id was
necessarily fetched after it, so one range read from that time on, filtered by observed time, is what it missed.
"""

from __future__ import annotations

import logging

from redis import exceptions as redis_errors

from ..history import HotLayer, Snapshot
from ..history.snapshots import unix
from .frames import Frame, data_frame

log = logging.getLogger("worldgate.live")
RESUME_FRAMES_MAX = 100  # the most missed frames replayed at a reconnect (the newest ones)


def parse_event_id(raw: str | None) -> float | None:
    """A Last-Event-ID as unix seconds; None if absent or not one of ours (then nothing is resumed)."""
    if not raw or len(raw) > 64:
        return None
    try:
        return unix(raw.strip())
    except ValueError:
        return None


def snapshot_frame(snapshot: Snapshot) -> Frame:
    return data_frame(snapshot.stream, snapshot.raw, snapshot.count, snapshot.observed_at, snapshot.fetched_at)


async def missed(hot: HotLayer | None, stream: str, after: float, limit: int = RESUME_FRAMES_MAX) -> list[Frame]:
    """The stream's states observed after `after`, oldest first (the newest `limit`); [] without a hot layer."""
    if hot is None:
        return []
    key = f"{hot.prefix}hot:{stream}"
    try:
        raws = await hot.redis.zrevrangebyscore(key, "+inf", f"({after!r}", start=0, num=limit)
    except (redis_errors.RedisError, OSError) as exc:
        log.warning("the hot layer could not be read for a resume", extra={"error": type(exc).__name__})
        return []
    frames = []
    for raw in reversed(raws):
        try:
            snapshot = Snapshot.from_wire(raw)
        except (ValueError, KeyError, TypeError):
            continue
        if snapshot.observed_at is not None and snapshot.observed_at > after:
            frames.append(snapshot_frame(snapshot))
    return frames


def newer(frames: list[Frame], last: Frame | None, after: float | None) -> list[Frame]:
    """The missed frames plus the feed's last frame when it is newer than both them and `after`."""
    if last is None or last.id is None:
        return frames
    seen = frames[-1].id if frames else None
    last_t = unix(last.id)
    if (after is None or last_t > after) and (seen is None or last_t > unix(seen)):
        return [*frames, last]
    return frames
