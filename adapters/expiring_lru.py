"""A per-key map with a size cap (the least recently used go first) whose entries expire."""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Generic, TypeVar

V = TypeVar("V")


class ExpiringLRU(Generic[V]):
    """Whatever the traffic, at most `max_entries` stay in memory; an entry past its time is dropped when read."""

    def __init__(self, max_entries: int) -> None:
        self._items: OrderedDict[str, tuple[float, V]] = OrderedDict()  # key → (monotonic expiry, value)
        self._max = max_entries

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: str) -> V | None:
        item = self._items.get(key)
        if item is None:
            return None
        if item[0] <= time.monotonic():
            del self._items[key]
            return None
        self._items.move_to_end(key)
        return item[1]

    def put(self, key: str, value: V, ttl_s: float) -> None:
        self._items[key] = (time.monotonic() + ttl_s, value)
        self._items.move_to_end(key)
        while len(self._items) > self._max:
            self._items.popitem(last=False)

    def clear(self) -> None:
        self._items.clear()
