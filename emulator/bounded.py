"""Records kept as WeChat keeps them, in constant memory: by key in arrival order, the
oldest forgotten beyond a bound (a later query for it answers 404), with an optional
second index by the id WeChat handed out (transaction_id, order_id) that forgets too."""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class Bounded(Generic[K, V]):
    def __init__(self, size_max: int):
        assert size_max > 0
        self._size_max = size_max
        self._records: OrderedDict[K, V] = OrderedDict()
        self._key_by_id: dict[str, K] = {}
        self._id_by_key: dict[K, str] = {}

    def __len__(self) -> int:
        return len(self._records)

    def __contains__(self, key: K) -> bool:
        return key in self._records

    def get(self, key: K) -> V | None:
        return self._records.get(key)

    def values(self) -> list[V]:
        return list(self._records.values())

    def by_id(self, record_id: str) -> V | None:
        key = self._key_by_id.get(record_id)
        return self._records.get(key) if key is not None else None

    def id_taken(self, record_id: str) -> bool:
        return record_id in self._key_by_id

    def add(self, key: K, record: V, record_id: str | None = None) -> list[V]:
        """Keeps `record` (and its id, when it has one yet); the records forgotten for room."""
        assert key not in self._records
        forgotten = []
        while len(self._records) >= self._size_max:
            oldest_key, oldest = self._records.popitem(last=False)
            self._key_by_id.pop(self._id_by_key.pop(oldest_key, None), None)
            forgotten.append(oldest)
        self._records[key] = record
        if record_id is not None:
            self.name(key, record_id)
        return forgotten

    def name(self, key: K, record_id: str) -> None:
        """Indexes a kept record by the id it was given later (an order's transaction_id)."""
        assert key in self._records and record_id not in self._key_by_id and key not in self._id_by_key
        self._key_by_id[record_id] = key
        self._id_by_key[key] = record_id
