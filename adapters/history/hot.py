"""The hot layer: the last 48 hours of snapshots in Redis, deduplicated by checksum across every replica.

`offer` runs one Lua script, so two replicas offering the same payload cannot both see it as new: the
first one records it (hot sorted set, trimmed to the window, and a pending entry); the others only move
the stream's "seen" time. A pending entry stays until the cold layer holds the snapshot, so a gateway
killed between the two writes loses nothing: the next flush, by any replica, writes it.
"""

from __future__ import annotations

import time
from typing import Any

from .snapshots import Snapshot

WINDOW_S_DEFAULT = 48 * 3600
PENDING_BATCH = 200

# KEYS: last checksum, seen time, hot set, pending hash. ARGV: checksum, t, snapshot, trim below, ttl, pending id.
_OFFER = """
local last = redis.call('GET', KEYS[1])
redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[5])
if last == ARGV[1] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[5])
redis.call('ZADD', KEYS[3], ARGV[2], ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. ARGV[4])
redis.call('EXPIRE', KEYS[3], ARGV[5])
redis.call('HSET', KEYS[4], ARGV[6], ARGV[3])
return 1
"""


def pending_id(snapshot: Snapshot) -> str:
    return f"{snapshot.stream}@{snapshot.t!r}"


class HotLayer:
    def __init__(self, redis: Any, *, prefix: str = "wg:hist:", window_s: float = WINDOW_S_DEFAULT) -> None:
        self.redis = redis  # redis.asyncio.Redis
        self.prefix = prefix
        self.window_s = window_s
        self._offer = redis.register_script(_OFFER)

    def _k(self, kind: str, stream: str | None = None) -> str:
        return f"{self.prefix}{kind}" + (f":{stream}" if stream else "")

    async def offer(self, snapshot: Snapshot) -> bool:
        """True: a new state, now hot and pending for the cold layer; False: the stream's last state again."""
        keys = [
            self._k("last", snapshot.stream),
            self._k("seen", snapshot.stream),
            self._k("hot", snapshot.stream),
            self._k("pending"),
        ]
        trim_below = time.time() - self.window_s
        args = [snapshot.checksum.hex(), repr(snapshot.t), snapshot.to_wire(), repr(trim_below), int(self.window_s)]
        return bool(await self._offer(keys=keys, args=[*args, pending_id(snapshot)]))

    async def flushed(self, snapshots: list[Snapshot]) -> None:
        """The cold layer holds these now: no longer pending."""
        if snapshots:
            await self.redis.hdel(self._k("pending"), *(pending_id(s) for s in snapshots))

    async def pending(self, count: int = PENDING_BATCH) -> list[Snapshot]:
        """Up to `count` snapshots not yet in the cold layer (unreadable entries are dropped, and said so)."""
        found: list[Snapshot] = []
        cursor = 0
        while True:
            cursor, batch = await self.redis.hscan(self._k("pending"), cursor, count=count)
            for field, raw in batch.items():
                try:
                    found.append(Snapshot.from_wire(raw))
                except (ValueError, KeyError, TypeError):
                    await self.redis.hdel(self._k("pending"), field)
            if cursor == 0 or len(found) >= count:
                return found

    async def seen(self, stream: str) -> float | None:
        """When this stream's state was last fetched (new or unchanged), as far as the hot layer knows."""
        raw = await self.redis.get(self._k("seen", stream))
        return None if raw is None else float(raw)

    async def count(self, stream: str) -> int:
        """How many snapshots of the stream the window holds."""
        return int(await self.redis.zcount(self._k("hot", stream), time.time() - self.window_s, "+inf"))
