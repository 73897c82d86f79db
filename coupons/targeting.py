"""The next-store model: after a payment, which other stores is this shopper most likely to
buy at next (SPEC 7)?

Every candidate store is described by features of three kinds, then scored by a
conditional logit (a softmax over the mall's stores) whose weights are learned from data:

- the mall's counts (`mall_counts.py`): popularity; transitions from the current store
  (any gap, and within the day), from the one before it, and between their categories and
  floors; what follows a payment at this hour and on this day type; when the candidate
  sells; co-visitation (item-kNN) over shopping days and over shoppers;
- the shopper's own history: visits with recency decay (a week, two months), how recently
  and how often, the share of their purchases in the candidate's category and floor, their
  own transitions from the current store (and between categories), their favourite store
  of each category, where their days start, similarity to what they bought before, and
  what they already bought today (a second coffee is rarely next, unless the data says so);
- the main ones again under four contexts, so the weights can differ for a shopper seen
  for the first time, in the middle of a trip, in the evening, or with a long history.

Fitting: counts from the earlier 70% of the window, examples (a payment and the store of
the shopper's next payment, when it is another store) from the later 30%, so the weights
learn how far each count can be trusted on payments it has not seen; the final counts then
come from the whole window. In a mall of many stores each example is contrasted with a
sample of the others (sampled softmax) so that more examples fit in FIT_ROWS_MAX. New
shoppers fall back on the mall's counts, new stores on their category's and floor's, and
an unknown store on popularity.

Pure: no clock, no I/O; the only randomness is drawn from the seed given to `fit`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Collection, Sequence

import numpy as np
from scipy.optimize import minimize
from threadpoolctl import threadpool_limits

from coupons.baselines import top_k
from coupons.mall_counts import MALL_TIME, MallCounts, hour_bucket, is_weekend, shopper_sequences


@dataclass(frozen=True)
class Store:
    sub_mchid: str
    name: str
    floor: str
    category: str


@dataclass(frozen=True)
class Payment:
    openid: str
    sub_mchid: str
    paid_at: datetime  # aware
    amount_fen: int


HISTORY_MAX = 200           # a shopper's latest payments the model looks at
FIT_SPLITS = (0.7,)         # examples after each cut, scored with the counts before it
FIT_ROWS_MAX = 250_000      # examples x stores learned from (memory: 4 bytes x features each)
FIT_ITERATIONS_MAX = 100
FIT_ALTERNATIVES_MIN = 25   # stores each example is contrasted with, at least (all if fewer)
L2 = 1e-3                   # on standardized weights
SMOOTHING = 2.0             # pseudo-transitions drawn from popularity
EVENING_HOUR = 19
VALIDATION_SHARE = 0.2      # the latest examples, on which the mix with the blend is chosen
VALIDATION_MIN = 200        # fewer: the logit alone
VALIDATION_MAX = 3000       # examples scored per candidate mix, at most
MIX_SHARES = tuple(i / 10 for i in range(11))
MIX_TRANSITION_WEIGHTS = tuple(i / 10 for i in range(11))
MIX_TUNED_FOR_K = 3

BASE_FEATURES = (
    "popularity", "transition", "transition_same_day", "transition_from_previous", "category_transition",
    "floor_transition", "same_floor", "same_category", "next_at_this_hour", "sells_at_this_hour",
    "next_on_this_day_type", "co_visit_day", "co_visit_shopper",
    "own_visits_week", "own_visits_two_months", "own_visit_count", "own_visit_share", "own_visited",
    "own_recency", "bought_here_today", "category_bought_today", "own_category_share", "own_floor_share",
    "own_transition", "own_similar", "own_store_in_category", "own_first_of_day", "own_category_transition",
    "transition_share",
)
CONTEXTS = ("first_payment", "in_a_trip", "evening", "history_length")
INTERACTING = ("transition", "transition_same_day", "category_transition", "next_at_this_hour",
               "co_visit_day", "own_visits_week", "own_visits_two_months", "own_visit_share",
               "own_category_share", "own_transition", "own_similar", "category_bought_today",
               "own_store_in_category", "own_first_of_day", "transition_share")
FEATURES = BASE_FEATURES + tuple(f"{f}*{c}" for c in CONTEXTS for f in INTERACTING)
_INTERACTING_AT = np.array([BASE_FEATURES.index(f) for f in INTERACTING])


class NextStoreModel:
    """The conditional logit's probabilities, mixed with the blend of transitions and the
    shopper's own history (share `blend_share`, the blend's own weight `transition_weight`):
    the two err differently (the logit reads a trip's next purchase better, the blend a
    later trip's first), and the mix, chosen on the latest examples of the training window
    by hit rate, is never chosen worse than either there."""

    def __init__(self, counts: MallCounts, weights: np.ndarray, blend_share: float = 0.0,
                 transition_weight: float = 0.5):
        assert weights.shape == (len(FEATURES),)
        assert 0.0 <= blend_share <= 1.0 and 0.0 <= transition_weight <= 1.0
        self.counts = counts
        self.weights = weights
        self.blend_share = blend_share
        self.transition_weight = transition_weight
        self._priors = _Priors(counts)

    @classmethod
    def fit(cls, stores: Sequence[Store], payments: Sequence[Payment], *, seed: int = 0) -> "NextStoreModel":
        """`seed` draws the alternatives each example is contrasted with when the mall has
        too many stores to contrast it with all of them within FIT_ROWS_MAX."""
        ordered = sorted(payments, key=lambda p: p.paid_at)
        examples = []
        for start, end in zip(FIT_SPLITS, FIT_SPLITS[1:] + (1.0,)):
            window = _Priors(MallCounts.count(stores, ordered[: int(len(ordered) * start)], index_of=ordered))
            examples += [(window, *e) for e in _examples(ordered, int(len(ordered) * start), int(len(ordered) * end))]
        n = len(MallCounts.count(stores, [], index_of=ordered).sub_mchids)
        examples.sort(key=lambda e: e[1].paid_at)
        # The mix is chosen on the latest examples, which the weights learn from too: a
        # small mall cannot spare them, and the bias this leaves favours the logit.
        check = examples[int(len(examples) * (1.0 - VALIDATION_SHARE)):]
        check = check if len(check) >= VALIDATION_MIN else []
        learn = examples
        width = min(n, max(FIT_ALTERNATIVES_MIN + 1, FIT_ROWS_MAX // max(len(learn), 1)))
        learn = learn[:: max(1, -(-len(learn) * width // FIT_ROWS_MAX))]
        if learn:
            weights = _fit_weights(learn, width, np.random.default_rng(seed))
        else:  # too little history to learn from: transitions, own visits and popularity
            weights = np.zeros(len(FEATURES))
            for name in ("popularity", "transition", "own_visits_two_months"):
                weights[FEATURES.index(name)] = 1.0
        blend_share, transition_weight = _choose_mix(weights, check[:: max(1, len(check) // VALIDATION_MAX)])
        return cls(MallCounts.count(stores, ordered), weights, blend_share, transition_weight)

    def rank(self, *, current: Payment, history: Sequence[Payment], candidates: Collection[str],
             k: int) -> list[str]:
        """Up to k sub_mchids from `candidates`, best first, never current.sub_mchid. `history` is
        this shopper's payments up to and including `current`, oldest first (may be only `current`)."""
        scores = _mixed(self._priors, self.weights, current, history, self.blend_share, self.transition_weight)
        return top_k(self.counts, scores, current=current.sub_mchid, candidates=candidates, k=k)

    def weights_by_feature(self) -> dict[str, float]:
        return {**dict(zip(FEATURES, self.weights.tolist())), "blend_share": self.blend_share,
                "transition_weight": self.transition_weight}


def _parts(priors: "_Priors", weights: np.ndarray, current: Payment, history: Sequence[Payment]):
    """The logit's probabilities over the other stores, the mall's transition shares from
    the current store, and the shopper's shares of visits to the other stores."""
    counts, n = priors.counts, priors.counts.n
    here = counts.index.get(current.sub_mchid)
    logits = priors.features(current, history) @ weights
    if here is not None:
        logits[here] = -np.inf
    logit_p = np.exp(logits - logits.max())
    logit_p /= logit_p.sum()
    transitions = counts.transitions[here] if here is not None else np.zeros(n)
    own = np.zeros(n)
    for age, payment in enumerate(reversed(history[-HISTORY_MAX:])):
        i = counts.index.get(payment.sub_mchid)
        if i is not None and i != here:
            own[i] += 1.0 + 1e-6 / (1 + age)  # the more recent wins a tie, as in the baseline
    return logit_p, _shares(transitions), _shares(own)


def _shares(values: np.ndarray) -> np.ndarray:
    total = values.sum()
    return values / total if total else values


def _mixed(priors, weights, current, history, blend_share: float, transition_weight: float) -> np.ndarray:
    logit_p, transitions, own = _parts(priors, weights, current, history)
    if blend_share == 0.0:
        return logit_p
    blend = transition_weight * transitions + (1.0 - transition_weight) * own
    return (1.0 - blend_share) * logit_p + blend_share * blend


def _choose_mix(weights: np.ndarray, check) -> tuple[float, float]:
    """(blend share, transition weight) with the most hits at MIX_TUNED_FOR_K on `check`,
    examples later than the ones the weights were learned from; ties go to the smaller
    share of the blend. Without such examples, the logit alone."""
    if not check:
        return 0.0, 0.5
    hits = np.zeros((len(MIX_SHARES), len(MIX_TRANSITION_WEIGHTS)))
    for priors, current, history, next_store in check:
        logit_p, transitions, own = _parts(priors, weights, current, history)
        target = priors.counts.index[next_store]
        popularity_tie = priors.counts.visits * 1e-12
        for j, a in enumerate(MIX_TRANSITION_WEIGHTS):
            blend = a * transitions + (1.0 - a) * own
            for i, share in enumerate(MIX_SHARES):
                scores = (1.0 - share) * logit_p + share * blend + popularity_tie
                hits[i, j] += (scores > scores[target]).sum() < MIX_TUNED_FOR_K
    i, j = np.unravel_index(np.argmax(hits), hits.shape)  # first maximum: the smallest share
    return float(MIX_SHARES[i]), float(MIX_TRANSITION_WEIGHTS[j])


def _examples(ordered: Sequence[Payment], start: int, end: int):
    """(current, history, next store) for each payment in ordered[start:end] followed by another store."""
    late = {id(p) for p in ordered[start:end]}
    for sequence in shopper_sequences(ordered).values():
        for i in range(len(sequence) - 1):
            if id(sequence[i]) in late and sequence[i + 1].sub_mchid != sequence[i].sub_mchid:
                yield sequence[i], sequence[max(0, i + 1 - HISTORY_MAX): i + 1], sequence[i + 1].sub_mchid


def _fit_weights(examples, width: int, rng: np.random.Generator) -> np.ndarray:
    """Maximum likelihood of the next store against the other stores (conditional logit,
    L2). With more stores than `width`, against a uniform sample of them, each sampled
    alternative's logit raised by log(1 / its chance to be drawn) (sampled softmax)."""
    f = len(FEATURES)
    x = np.zeros((len(examples), width, f), dtype=np.float32)
    penalty = np.full((len(examples), width), -np.inf)
    for e, (priors, current, history, next_store) in enumerate(examples):
        features = priors.features(current, history)
        chosen = priors.counts.index[next_store]
        others = np.array([i for i, s in enumerate(priors.counts.sub_mchids)
                           if i != chosen and s != current.sub_mchid], dtype=int)
        drawn = others if len(others) < width else rng.choice(others, width - 1, replace=False)
        x[e, 0] = features[chosen]
        x[e, 1: 1 + len(drawn)] = features[drawn]
        penalty[e, 0] = 0.0
        penalty[e, 1: 1 + len(drawn)] = np.log(len(others) / max(len(drawn), 1))
    chosen = np.zeros(len(examples), dtype=int)
    flat = x.reshape(-1, f)
    kept = np.isfinite(penalty).ravel()
    mean, scale = flat[kept].mean(axis=0), flat[kept].std(axis=0)
    scale[scale < 1e-9] = 1.0
    x -= mean
    x /= scale
    x[~np.isfinite(penalty)] = 0.0
    rows = np.arange(len(examples))
    chosen_sum = x[rows, chosen].astype(np.float64).sum(axis=0)

    def loss_and_gradient(w):
        logits = (flat @ w.astype(np.float32)).reshape(penalty.shape).astype(np.float64) + penalty
        top = logits.max(axis=1, keepdims=True)
        p = np.exp(logits - top)
        total = p.sum(axis=1)
        loss = -np.mean(logits[rows, chosen] - top[:, 0] - np.log(total)) + 0.5 * L2 * w @ w
        p /= total[:, None]
        expected = p.astype(np.float32).ravel() @ flat
        gradient = (expected.astype(np.float64) - chosen_sum) / len(examples) + L2 * w
        return loss, gradient

    # One BLAS thread: the products are small enough that threads spinning for a core of a
    # busy machine cost far more than they save (seen: 30 times slower on two shared cores).
    with threadpool_limits(limits=1, user_api="blas"):
        result = minimize(loss_and_gradient, np.zeros(f), jac=True, method="L-BFGS-B",
                          options={"maxiter": FIT_ITERATIONS_MAX, "ftol": 1e-7})
    return result.x / scale


class _Priors:
    """The counts turned into per-store log probabilities and lifts, once per fit."""

    def __init__(self, counts: MallCounts):
        self.counts = counts
        n = counts.n
        visits = counts.visits
        self.pop = (visits + 1.0) / (visits.sum() + n)
        self.log_pop = np.log(self.pop)
        self.log_transition = self._log_rows(counts.transitions)
        # the probability itself too: a logit adds logs, a blend adds probabilities
        self.transition_share = np.exp(self.log_transition)
        self.log_same_day = self._log_rows(counts.same_day)
        self.log_category = self._grouped(counts.category_of, counts.transitions, within_share=True)
        self.log_floor = self._grouped(counts.floor_of, counts.transitions, within_share=False)
        known = np.vstack([np.eye(n), np.zeros((1, n))]).astype(bool)
        self.same_floor = np.vstack([counts.floor_of[:, None] == counts.floor_of[None, :], np.zeros((1, n))])
        self.same_category = np.vstack(
            [counts.category_of[:, None] == counts.category_of[None, :], np.zeros((1, n))])
        self.same_floor[known] = 0
        self.same_category[known] = 0
        self.next_at_hour = self._log_rows(counts.next_by_hour, strength=20.0) - self.log_pop
        self.next_on_day_type = self._log_rows(counts.next_by_daytype, strength=20.0) - self.log_pop
        hours = counts.hours_of_store + 12.0 * (counts.hours_of_store.sum(axis=0) + 1) / (
            counts.hours_of_store.sum() + 12)
        self.sells_at_hour = (np.log(hours / hours.sum(axis=1, keepdims=True))
                              - np.log(hours.sum(axis=0) / hours.sum())).T
        self.day_similarity = np.vstack([counts.day_similarity, np.zeros((1, n))])
        self.shopper_similarity = np.vstack([counts.shopper_similarity, np.zeros((1, n))])
        self.n_categories = int(counts.category_of.max(initial=0)) + 1
        self.n_floors = int(counts.floor_of.max(initial=0)) + 1
        in_category = np.bincount(counts.category_of, weights=visits + 1.0, minlength=self.n_categories)
        self.share_in_category = (visits + 1.0) / in_category[counts.category_of]

    def _log_rows(self, matrix: np.ndarray, strength: float = SMOOTHING) -> np.ndarray:
        return np.log((matrix + strength * self.pop) / (matrix.sum(axis=1, keepdims=True) + strength))

    def _grouped(self, group_of: np.ndarray, transitions: np.ndarray, *, within_share: bool) -> np.ndarray:
        """log P(group of the candidate | group of the current store), plus with `within_share`
        the candidate's share of its group's visits: the fallback for stores with few counts."""
        groups = int(group_of.max(initial=0)) + 1
        by_group = np.zeros((groups + 1, groups))
        source = np.append(group_of, groups)
        np.add.at(by_group, (np.repeat(source, len(group_of)), np.tile(group_of, len(source))),
                  transitions.ravel())
        prior = np.bincount(group_of, weights=self.counts.visits, minlength=groups) + 1.0
        prior /= prior.sum()
        log_group = np.log((by_group + SMOOTHING * prior) / (by_group.sum(axis=1, keepdims=True) + SMOOTHING))
        rows = log_group[source][:, group_of]
        if within_share:
            visits = self.counts.visits + 1.0
            rows = rows + np.log(visits / np.bincount(group_of, weights=visits, minlength=groups)[group_of])
        return rows

    def features(self, current: Payment, history: Sequence[Payment]) -> np.ndarray:
        counts, n = self.counts, self.counts.n
        row = counts.index.get(current.sub_mchid, n)
        history = history[-HISTORY_MAX:] if history else [current]
        previous = next((counts.index.get(p.sub_mchid, n) for p in reversed(history[:-1])
                         if p.sub_mchid != current.sub_mchid), n)
        own = _OwnHistory(self, current, history)
        hour = hour_bucket(current.paid_at)
        base = np.column_stack([
            self.log_pop, self.log_transition[row], self.log_same_day[row], self.log_transition[previous],
            self.log_category[row], self.log_floor[row], self.same_floor[row], self.same_category[row],
            self.next_at_hour[hour], self.sells_at_hour[hour], self.next_on_day_type[is_weekend(current.paid_at)],
            self.day_similarity[row], self.shopper_similarity[row], *own.features(), self.transition_share[row],
        ])
        context = np.array([len(history) == 1, own.payments_today > 1,
                            current.paid_at.astimezone(MALL_TIME).hour >= EVENING_HOUR,
                            np.log1p(len(history)) / np.log1p(HISTORY_MAX)], dtype=float)
        interactions = (base[:, _INTERACTING_AT][:, None, :] * context[None, :, None]).reshape(n, -1)
        return np.hstack([base, interactions])


def _mall_days(seconds: np.ndarray) -> np.ndarray:
    """Day numbers in mall time of Unix times (the same days as `local_day`, numbered apart)."""
    return np.floor((seconds + MALL_TIME.utcoffset(None).total_seconds()) / 86400.0).astype(int)


class _OwnHistory:
    """What the shopper's own payments say about each store."""

    def __init__(self, priors: _Priors, current: Payment, history: Sequence[Payment]):
        counts = priors.counts
        n = counts.n
        seen = [(counts.index[p.sub_mchid], p) for p in history if p.sub_mchid in counts.index]
        stores = np.array([i for i, _ in seen], dtype=int)
        seconds = np.array([p.paid_at.timestamp() for _, p in seen])
        age_days = (current.paid_at.timestamp() - seconds) / 86400.0
        days = _mall_days(seconds)
        is_today = days == _mall_days(np.array([current.paid_at.timestamp()]))[0]
        self.payments_today = int(is_today.sum())
        self.week = np.bincount(stores, weights=np.exp(-age_days / 7.0), minlength=n)
        self.two_months = np.bincount(stores, weights=np.exp(-age_days / 60.0), minlength=n)
        self.count = np.bincount(stores, minlength=n).astype(float)
        self.share = self.count / max(len(history), 1)
        self.visited = (self.count > 0).astype(float)
        youngest = np.full(n, np.inf)
        np.minimum.at(youngest, stores, age_days)
        self.recency = np.exp(-youngest / 30.0)
        self.today = np.bincount(stores[is_today], minlength=n).astype(float)
        category_today = np.bincount(counts.category_of[stores[is_today]], minlength=priors.n_categories)
        self.category_today = category_today[counts.category_of].astype(float)
        weight = self.two_months.sum() + 1.0
        self.category_share = (np.bincount(counts.category_of[stores], weights=np.exp(-age_days / 60.0),
                                           minlength=priors.n_categories) / weight)[counts.category_of]
        self.floor_share = (np.bincount(counts.floor_of[stores], weights=np.exp(-age_days / 60.0),
                                        minlength=priors.n_floors) / weight)[counts.floor_of]
        row = counts.index.get(current.sub_mchid, -1)
        follows = [int(b) for a, b in zip(stores[:-1], stores[1:]) if a == row and b != row]
        self.transitions = np.bincount(np.array(follows, dtype=int), minlength=n).astype(float)
        self.similar = (self.two_months / weight) @ counts.shopper_similarity
        in_category = np.bincount(counts.category_of, weights=self.two_months, minlength=priors.n_categories)
        self.store_in_category = np.log((self.two_months + priors.share_in_category)
                                        / (in_category[counts.category_of] + 1.0))
        first = np.ones(len(days), dtype=bool)
        first[1:] = days[1:] != days[:-1]
        self.first_of_day = np.bincount(stores[first], weights=np.exp(-age_days[first] / 60.0), minlength=n)
        categories = counts.category_of[stores]
        source = counts.category_of[row] if row >= 0 else -1
        after = categories[1:][(categories[:-1] == source) & (stores[1:] != stores[:-1])]
        by_category = np.bincount(after, minlength=priors.n_categories).astype(float)
        self.category_transitions = by_category[counts.category_of] / (len(after) + 1.0)

    def features(self) -> list[np.ndarray]:
        return [self.week, self.two_months, np.log1p(self.count), self.share, self.visited, self.recency,
                self.today, self.category_today, self.category_share, self.floor_share, self.transitions,
                self.similar, self.store_in_category, self.first_of_day, self.category_transitions]
