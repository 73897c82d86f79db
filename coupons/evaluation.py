"""Offline evaluation of next-store targeting on a mall's own payment history.

Every ranker (the model and each baseline) is fitted on the payments before `train_until`
only. Every later payment is a test point: the ranker sees the shopper's payments up to and
including it (as production would, without refitting) and offers K stores out of all the
mall's stores (every store counts as having a usable campaign).

A hit: the shopper's next payment, at a store other than the current one, is among the K
offered. Test points whose next payment is at the same store, or that have no next payment,
cannot be hit or missed by a coupon for another store: they are offered stores (and
written to the predictions) but left out of the hit rate, and counted separately.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable, Mapping, Sequence

from coupons.baselines import BASELINES
from coupons.targeting import NextStoreModel, Payment, Store

SCORED = "scored"
NEXT_AT_SAME_STORE = "next_at_same_store"
NO_NEXT_PAYMENT = "no_next_payment"
MODEL = "model"


@dataclass(frozen=True)
class EvaluationPoint:
    position: int            # index of the payment in the input
    history: Sequence[Payment]
    next_store: str | None   # the store to hit, when the point is scored
    outcome: str


@dataclass
class Evaluation:
    k: int
    train_payments: int
    test_payments: int
    outcomes: dict[str, int]
    hits: dict[str, int]
    offered: dict[int, list[str]] = field(default_factory=dict)  # the model's, by input position

    def hit_rate(self, name: str) -> float:
        scored = self.outcomes[SCORED]
        return self.hits[name] / scored if scored else 0.0

    def as_json(self) -> dict:
        return {
            "k": self.k, "train_payments": self.train_payments, "test_payments": self.test_payments,
            "scored_test_payments": self.outcomes[SCORED],
            "skipped": {NEXT_AT_SAME_STORE: self.outcomes[NEXT_AT_SAME_STORE],
                        NO_NEXT_PAYMENT: self.outcomes[NO_NEXT_PAYMENT]},
            "hit_rate": {name: round(self.hit_rate(name), 4) for name in self.hits},
            "hits": dict(self.hits),
        }


def evaluation_points(payments: Sequence[Payment], train_until: datetime) -> list[EvaluationPoint]:
    """The test points in input order, each with the shopper's history up to it."""
    by_shopper: dict[str, list[int]] = {}
    for position in sorted(range(len(payments)), key=lambda i: payments[i].paid_at):
        by_shopper.setdefault(payments[position].openid, []).append(position)
    points = []
    for positions in by_shopper.values():
        sequence = [payments[i] for i in positions]
        for at, position in enumerate(positions):
            if sequence[at].paid_at < train_until:
                continue
            following = sequence[at + 1] if at + 1 < len(sequence) else None
            if following is None:
                outcome, next_store = NO_NEXT_PAYMENT, None
            elif following.sub_mchid == sequence[at].sub_mchid:
                outcome, next_store = NEXT_AT_SAME_STORE, None
            else:
                outcome, next_store = SCORED, following.sub_mchid
            points.append(EvaluationPoint(position, sequence[: at + 1], next_store, outcome))
    points.sort(key=lambda p: p.position)
    return points


def evaluate(stores: Sequence[Store], payments: Sequence[Payment], *, train_until: datetime, k: int,
             rankers: Mapping[str, Callable] | None = None) -> Evaluation:
    """Hit rate at k of the model and of each baseline (`rankers`: name -> fit function)."""
    assert k > 0
    rankers = dict(rankers or {MODEL: NextStoreModel.fit, **{n: b.fit for n, b in BASELINES.items()}})
    train = [p for p in payments if p.paid_at < train_until]
    points = evaluation_points(payments, train_until)
    candidates = frozenset(s.sub_mchid for s in stores)
    outcomes = {SCORED: 0, NEXT_AT_SAME_STORE: 0, NO_NEXT_PAYMENT: 0}
    for point in points:
        outcomes[point.outcome] += 1
    evaluation = Evaluation(k, len(train), len(points), outcomes, {})
    for name, fit in rankers.items():
        ranker = fit(stores, train)
        hits = 0
        for point in points:
            offered = ranker.rank(current=point.history[-1], history=point.history, candidates=candidates, k=k)
            hits += point.next_store in offered
            if name == MODEL:
                evaluation.offered[point.position] = offered
        evaluation.hits[name] = hits
    return evaluation
