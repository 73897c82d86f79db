"""The strong simple references of session-based recommendation, each with the next-store
model's interface (`fit`, then `rank`), so the evaluation runs them all the same way:

- `Popularity`: the stores with the most payments;
- `RandomStores`: K stores drawn with a seed (the floor every model must clear);
- `RepeatHistory`: the shopper's own stores, most visited first (recency breaks ties);
- `Transitions`: a first-order Markov chain of store-to-store transitions;
- `CoVisitation`: item-kNN, stores bought on the same day as the current one (cosine);
- `TransitionsHistoryBlend`: a·P(next | current store) + (1 − a)·the shopper's share of
  visits, with `a` chosen on a time split of the training window.

Each falls back to popularity for whatever its own scores leave undecided.
"""

from __future__ import annotations

from typing import Collection, Sequence

import numpy as np

from coupons.mall_counts import MallCounts, shopper_sequences

BLEND_WEIGHTS = tuple(i / 10 for i in range(11))
BLEND_TUNED_FOR_K = 3
BLEND_EXAMPLES_MAX = 4000  # enough to choose one weight out of eleven


def top_k(counts: MallCounts, scores: np.ndarray, *, current: str, candidates: Collection[str],
          k: int) -> list[str]:
    """The k best candidates by score, popularity breaking ties, never `current`; candidates
    the counts never saw come last, in id order."""
    allowed = candidates if isinstance(candidates, (set, frozenset, dict)) else set(candidates)
    chosen: list[str] = []
    for i in np.lexsort((-counts.visits, -scores)):
        sub_mchid = counts.sub_mchids[i]
        if sub_mchid != current and sub_mchid in allowed:
            chosen.append(sub_mchid)
            if len(chosen) == k:
                return chosen
    unseen = sorted(s for s in allowed if s not in counts.index and s != current)
    return chosen + unseen[: k - len(chosen)]


class _Baseline:
    def __init__(self, counts: MallCounts):
        self.counts = counts

    @classmethod
    def fit(cls, stores: Sequence, payments: Sequence):
        return cls(MallCounts.count(stores, payments))

    def rank(self, *, current, history: Sequence, candidates: Collection[str], k: int) -> list[str]:
        return top_k(self.counts, self.scores(current, history), current=current.sub_mchid,
                     candidates=candidates, k=k)

    def _row(self, payment) -> int:
        return self.counts.index.get(payment.sub_mchid, self.counts.n)


class Popularity(_Baseline):
    def scores(self, current, history) -> np.ndarray:
        return self.counts.visits


class RandomStores(_Baseline):
    def __init__(self, counts: MallCounts, seed: int = 0):
        super().__init__(counts)
        self.rng = np.random.default_rng(seed)

    def scores(self, current, history) -> np.ndarray:
        return self.rng.random(self.counts.n)


class RepeatHistory(_Baseline):
    def scores(self, current, history) -> np.ndarray:
        visits = np.zeros(self.counts.n)
        for age, payment in enumerate(reversed(history)):
            i = self.counts.index.get(payment.sub_mchid)
            if i is not None:
                visits[i] += 1 + 1e-6 / (1 + age)  # the more recent wins a tie
        return visits


class Transitions(_Baseline):
    def scores(self, current, history) -> np.ndarray:
        return self.counts.transitions[self._row(current)]


class CoVisitation(_Baseline):
    def scores(self, current, history) -> np.ndarray:
        row = self._row(current)
        return self.counts.day_similarity[row] if row < self.counts.n else np.zeros(self.counts.n)


class TransitionsHistoryBlend(_Baseline):
    def __init__(self, counts: MallCounts, weight: float = 0.5):
        super().__init__(counts)
        self.weight = weight

    @classmethod
    def fit(cls, stores: Sequence, payments: Sequence):
        """Choose the weight on the earlier 70% of the window, judged on the later 30%."""
        ordered = sorted(payments, key=lambda p: p.paid_at)
        cut = int(len(ordered) * 0.7)
        early = cls(MallCounts.count(stores, ordered[:cut]))
        examples = list(_examples(ordered, cut))
        examples = examples[:: max(1, len(examples) // BLEND_EXAMPLES_MAX)]
        best = max(BLEND_WEIGHTS, key=lambda w: _hits(early.with_weight(w), examples))
        return cls(MallCounts.count(stores, ordered), best)

    def with_weight(self, weight: float) -> "TransitionsHistoryBlend":
        return TransitionsHistoryBlend(self.counts, weight)

    def scores(self, current, history) -> np.ndarray:
        transitions = _shares(self.counts.transitions[self._row(current)])
        own = RepeatHistory.scores(self, current, history)
        if current.sub_mchid in self.counts.index:
            own[self.counts.index[current.sub_mchid]] = 0.0
        own = _shares(own)
        return self.weight * transitions + (1 - self.weight) * own


def _shares(values: np.ndarray) -> np.ndarray:
    total = values.sum()
    return values / total if total else values


def _examples(ordered: Sequence, cut: int):
    """(current, history, next store) for payments after `cut` followed by another store."""
    late = {id(p) for p in ordered[cut:]}
    for sequence in shopper_sequences(ordered).values():
        for i in range(len(sequence) - 1):
            if id(sequence[i]) in late and sequence[i + 1].sub_mchid != sequence[i].sub_mchid:
                yield sequence[i], sequence[: i + 1], sequence[i + 1].sub_mchid


def _hits(model, examples) -> int:
    everyone = set(model.counts.sub_mchids)
    return sum(nxt in model.rank(current=current, history=history, candidates=everyone, k=BLEND_TUNED_FOR_K)
               for current, history, nxt in examples)


BASELINES = {
    "popularity": Popularity, "random": RandomStores, "repeat_history": RepeatHistory,
    "transitions": Transitions, "co_visitation": CoVisitation, "transitions_history_blend": TransitionsHistoryBlend,
}
