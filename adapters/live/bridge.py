"""Frames across replicas: Redis pub/sub on one channel, and the feeds' status shared in Redis.

A process hands a frame to its own hub first (its subscribers never wait for Redis), then publishes it; every
other process's listener hands it to its hub, and ignores its own (each process has an origin id). Control
messages (an operator's keep-alive change) ride the same channel. If Redis is down, frames still reach this
process's subscribers; the listener reconnects with a backoff and the other replicas catch up at the next
refresh (a new subscriber is always primed from the cache).

The feed status in Redis (`status:<fetch group>`) is the fleet's answer to "did anyone say so already": a
process that counts 3 failed refreshes swaps it to `unreachable` and publishes the transition only if it was
not already; every successful fetch sets it back to `ok`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable
from typing import Any

from redis import exceptions as redis_errors

from .frames import OK, Frame
from .hub import Hub

log = logging.getLogger("worldgate.live")
CONTROL = b"ctl\n"
RETRY_FIRST_S = 0.5
RETRY_MAX_S = 10.0
STATUS_TTL_S = 7 * 86_400  # long past any outage worth remembering; refreshed by every fetch
_ERRORS = (redis_errors.RedisError, OSError)


class Bridge:
    def __init__(
        self,
        redis: Any,
        hub: Hub,
        *,
        prefix: str = "wg:",
        on_control: Callable[[str], None] | None = None,
    ) -> None:
        self.redis = redis  # redis.asyncio.Redis
        self.hub = hub
        self.prefix = f"{prefix}live:"
        self.channel = f"{self.prefix}frames"
        self.origin = secrets.token_hex(6)  # this process
        self.on_control = on_control or (lambda _message: None)
        self.received = 0  # frames from other replicas, for tests and the dashboard
        self.connected = asyncio.Event()  # set once the listener is subscribed
        self._task: asyncio.Task[None] | None = None
        self._warned = False

    def status_key(self, group: str) -> str:
        return f"{self.prefix}status:{group}"

    # ---- sending ----

    async def publish(self, frames: list[Frame], *, ok_groups: tuple[str, ...] = ()) -> None:
        """Frames to this process's hub, then to the others; `ok_groups`: fetch groups that just fetched."""
        for frame in frames:
            self.hub.publish(frame)
        try:
            pipe = self.redis.pipeline(transaction=False)
            for frame in frames:
                pipe.publish(self.channel, frame.wire(self.origin))
            for group in ok_groups:
                pipe.set(self.status_key(group), OK, ex=STATUS_TTL_S)
            await pipe.execute()
            self._warned = False
        except _ERRORS as exc:
            if not self._warned:
                log.warning("live frames not shared with other replicas: Redis", extra={"error": type(exc).__name__})
                self._warned = True

    async def swap_status(self, group: str, status: str) -> bool | None:
        """Set the fleet's status of a fetch group; True if it changed, None if Redis could not say."""
        try:
            old = await self.redis.set(self.status_key(group), status, ex=STATUS_TTL_S, get=True)
        except _ERRORS:
            return None
        return (old.decode() if isinstance(old, bytes) else old) != status

    async def status(self, group: str) -> str | None:
        try:
            raw = await self.redis.get(self.status_key(group))
        except _ERRORS:
            return None
        return raw.decode() if isinstance(raw, bytes) else raw

    async def control(self, message: str) -> None:
        """A message to every process's `on_control` (this one's too)."""
        self.on_control(message)
        with contextlib.suppress(*_ERRORS):
            await self.redis.publish(self.channel, CONTROL + self.origin.encode() + b"\n" + message.encode())

    # ---- receiving ----

    def start(self) -> None:
        self._task = asyncio.create_task(self._listen(), name="live-bridge")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _listen(self) -> None:
        delay = RETRY_FIRST_S
        while True:
            pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                self.connected.set()
                delay = RETRY_FIRST_S
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is not None and message.get("type") == "message":
                        self._handle(message["data"])
            except _ERRORS as exc:
                self.connected.clear()
                log.warning("live bridge lost Redis; retrying", extra={"error": type(exc).__name__, "retry_s": delay})
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_S)

    def _handle(self, raw: bytes) -> None:
        if raw.startswith(CONTROL):
            origin, _, message = raw[len(CONTROL) :].partition(b"\n")
            if origin.decode() != self.origin:
                self.on_control(message.decode())
            return
        try:
            origin, frame = Frame.from_wire(raw)
        except (ValueError, UnicodeDecodeError):
            log.warning("unreadable message on the live channel: ignored")
            return
        if origin != self.origin:
            self.received += 1
            self.hub.publish(frame)
