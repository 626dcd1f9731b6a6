"""Single-flight: at most one run of a coroutine per key at a time, its outcome shared by every caller."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class SingleFlight(Generic[T]):
    """The run is a task of its own that callers await through a shield, so a caller that is cancelled (its
    client hung up) only stops waiting: the run goes on for the others, and still stores what it fetched.
    Its result or its exception reaches every caller still waiting; the task is dropped when it ends."""

    def __init__(self) -> None:
        self._runs: dict[str, asyncio.Task[T]] = {}  # also the strong reference that keeps a run alive

    def __len__(self) -> int:
        return len(self._runs)

    async def run(self, key: str, start: Callable[[], Coroutine[Any, Any, T]]) -> tuple[T, bool]:
        """The outcome of the run for `key`, starting one if there is none; and whether this call started it."""
        task = self._runs.get(key)
        started = task is None
        if task is None:
            task = asyncio.create_task(start(), name=f"single-flight {key}")
            self._runs[key] = task
            task.add_done_callback(lambda done: self._runs.pop(key) if self._runs.get(key) is done else None)
        return await asyncio.shield(task), started
