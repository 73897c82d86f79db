"""What a window of the mall's payments says, counted once and shared by the next-store model
and the reference baselines: visits per store, store-to-store transitions (any gap and
within one day), what follows a payment at each hour and day type, when each store sells,
and co-visitation similarities between stores (within a shopping day and within a shopper's
whole history).

A transition is two consecutive payments of one shopper at different stores; a repeat at
the same store is not one (a coupon is never offered for the store just paid at).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Sequence

import numpy as np
from scipy import sparse

# Days are China time (contracts: a day runs 00:00+08:00 to 24:00+08:00).
MALL_TIME = timezone(timedelta(hours=8))
HOUR_BUCKETS = 12  # two-hour slots of the mall's day


def local_day(at: datetime) -> int:
    return at.astimezone(MALL_TIME).toordinal()


def hour_bucket(at: datetime) -> int:
    return at.astimezone(MALL_TIME).hour // 2


def is_weekend(at: datetime) -> int:
    return int(at.astimezone(MALL_TIME).weekday() >= 5)


def shopper_sequences(payments: Sequence) -> dict[str, list]:
    """Each shopper's payments, oldest first (ties keep the input order)."""
    by_shopper: dict[str, list] = defaultdict(list)
    for payment in sorted(payments, key=lambda p: p.paid_at):
        by_shopper[payment.openid].append(payment)
    return dict(by_shopper)


@dataclass
class MallCounts:
    """Counts over one window. Store indexes follow `sub_mchids`; row `n` of the transition
    matrices is the unknown store (a payment at a store not seen when counting)."""

    sub_mchids: list[str]
    index: dict[str, int]
    category_of: np.ndarray      # store -> category number
    floor_of: np.ndarray         # store -> floor number
    visits: np.ndarray           # store -> payments
    transitions: np.ndarray      # (n + 1) x n, any gap
    same_day: np.ndarray         # (n + 1) x n, within one mall day
    next_by_hour: np.ndarray     # hour bucket of the payment -> next store
    next_by_daytype: np.ndarray  # weekday / weekend -> next store
    hours_of_store: np.ndarray   # store -> hour bucket of its payments
    day_similarity: np.ndarray   # cosine of stores over shopping days
    shopper_similarity: np.ndarray  # cosine of stores over shoppers

    @property
    def n(self) -> int:
        return len(self.sub_mchids)

    @classmethod
    def count(cls, stores: Sequence, payments: Sequence, *, index_of: Sequence = ()) -> "MallCounts":
        """Counts of `payments`; stores are numbered over `stores`, then those only paid at
        (in `payments` or `index_of`, so counts of windows of one history share a numbering)."""
        sub_mchids = [s.sub_mchid for s in stores]
        known = set(sub_mchids)
        sub_mchids += sorted(({p.sub_mchid for p in payments} | {p.sub_mchid for p in index_of}) - known)
        index = {sub_mchid: i for i, sub_mchid in enumerate(sub_mchids)}
        by_id = {s.sub_mchid: s for s in stores}
        categories = _numbering([by_id[s].category if s in by_id else "" for s in sub_mchids])
        floors = _numbering([by_id[s].floor if s in by_id else "" for s in sub_mchids])
        n = len(sub_mchids)
        counts = cls(sub_mchids, index, categories, floors, np.zeros(n), np.zeros((n + 1, n)),
                     np.zeros((n + 1, n)), np.zeros((HOUR_BUCKETS, n)), np.zeros((2, n)),
                     np.zeros((n, HOUR_BUCKETS)), np.zeros((n, n)), np.zeros((n, n)))
        counts._add(shopper_sequences(payments))
        return counts

    def _add(self, sequences: dict[str, list]) -> None:
        day_rows, shopper_rows = [], []
        for sequence in sequences.values():
            stores = [self.index[p.sub_mchid] for p in sequence]
            days = [local_day(p.paid_at) for p in sequence]
            for payment, store in zip(sequence, stores):
                self.visits[store] += 1
                self.hours_of_store[store, hour_bucket(payment.paid_at)] += 1
            for i in range(len(sequence) - 1):
                source, target = stores[i], stores[i + 1]
                if source == target:
                    continue
                self.transitions[source, target] += 1
                if days[i] == days[i + 1]:
                    self.same_day[source, target] += 1
                self.next_by_hour[hour_bucket(sequence[i].paid_at), target] += 1
                self.next_by_daytype[is_weekend(sequence[i].paid_at), target] += 1
            by_day: dict[int, set] = defaultdict(set)
            for day, store in zip(days, stores):
                by_day[day].add(store)
            day_rows += [sorted(s) for s in by_day.values()]
            shopper_rows.append(sorted(set(stores)))
        self.transitions[self.n] = self.transitions[: self.n].sum(axis=0)
        self.same_day[self.n] = self.same_day[: self.n].sum(axis=0)
        self.day_similarity = _cosine(day_rows, self.n)
        self.shopper_similarity = _cosine(shopper_rows, self.n)


def _numbering(names: list[str]) -> np.ndarray:
    numbers: dict[str, int] = {}
    return np.array([numbers.setdefault(name, len(numbers)) for name in names], dtype=int)


def _cosine(rows: list[list[int]], n: int) -> np.ndarray:
    """Cosine similarity of stores over sets (days or shoppers), zero on the diagonal."""
    if not rows:
        return np.zeros((n, n))
    indptr = np.cumsum([0] + [len(r) for r in rows])
    indices = np.fromiter((i for r in rows for i in r), dtype=np.int64, count=int(indptr[-1]))
    matrix = sparse.csr_matrix((np.ones(len(indices)), indices, indptr), shape=(len(rows), n))
    co = (matrix.T @ matrix).toarray()
    norms = np.sqrt(np.diag(co))
    with np.errstate(divide="ignore", invalid="ignore"):
        similarity = np.where(np.outer(norms, norms) > 0, co / np.outer(norms, norms), 0.0)
    np.fill_diagonal(similarity, 0.0)
    return similarity
