"""A small bounded cache whose entries expire: what a process may keep of the database's
slowly changing rows (client keys) without asking for them on every use."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable


class TtlCache:
    """At most `entries_max` entries, each kept `ttl_s` seconds; least recently used out."""

    def __init__(self, ttl_s: float, entries_max: int, clock: Callable[[], float] = time.monotonic):
        assert ttl_s >= 0 and entries_max > 0, (ttl_s, entries_max)
        self._ttl_s = ttl_s
        self._entries_max = entries_max
        self._clock = clock
        self._entries: OrderedDict[Hashable, tuple[float, object]] = OrderedDict()

    def get(self, key: Hashable):
        """The cached value, or None when absent or expired."""
        hit = self._entries.get(key)
        if hit is None:
            return None
        if hit[0] <= self._clock():
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return hit[1]

    def put(self, key: Hashable, value: object) -> None:
        assert value is not None, "None means absent"
        self._entries[key] = (self._clock() + self._ttl_s, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self._entries_max:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)
