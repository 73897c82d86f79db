"""The offline evaluation on small simulated malls of two different layouts: the next-store
model must offer the shopper's next store at least 2.5 times as often as popularity does,
and more often than the blend of transitions and the shopper's own history."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from coupons.evaluation import (
    MODEL, NEXT_AT_SAME_STORE, NO_NEXT_PAYMENT, SCORED, evaluate, evaluation_points,
)
from coupons.simulated_mall import simulate

CHINA = timezone(timedelta(hours=8))
TRAIN_UNTIL = datetime(2026, 8, 20, tzinfo=CHINA)


@pytest.fixture(scope="module", params=[("destination", 11, 700), ("community", 12, 350)], ids=lambda p: p[0])
def evaluation(request):
    profile, seed, shoppers = request.param
    stores, payments = simulate(profile, seed=seed, shoppers=shoppers, days=100)
    evaluation = evaluate(stores, payments, train_until=TRAIN_UNTIL, k=3)
    evaluation.payments = payments
    return evaluation


def test_the_model_beats_popularity_two_and_a_half_times(evaluation):
    assert evaluation.outcomes[SCORED] >= 1000
    assert evaluation.hit_rate(MODEL) >= 2.5 * evaluation.hit_rate("popularity")


def test_the_model_beats_the_blend_of_transitions_and_own_history(evaluation):
    assert evaluation.hit_rate(MODEL) > evaluation.hit_rate("transitions_history_blend")


def test_the_model_beats_every_simple_reference(evaluation):
    for name in ("random", "popularity", "repeat_history", "transitions", "co_visitation"):
        assert evaluation.hit_rate(MODEL) > evaluation.hit_rate(name), name


def test_every_test_payment_gets_k_offers_none_of_them_its_own_store(evaluation):
    assert len(evaluation.offered) == evaluation.test_payments
    for position, offered in evaluation.offered.items():
        assert len(set(offered)) == 3 and evaluation.payments[position].sub_mchid not in offered


def test_test_points_are_the_payments_from_train_until_on_with_their_next_payment():
    at = [datetime(2026, 8, 19, 10, tzinfo=CHINA) + timedelta(hours=h) for h in range(5)]
    from coupons.targeting import Payment
    payments = [Payment("a", "S1", at[0], 100), Payment("a", "S2", at[2], 100),  # train, then next
                Payment("b", "S1", at[3], 100), Payment("a", "S3", at[4], 100),
                Payment("b", "S1", at[4], 100)]
    points = evaluation_points(payments, datetime(2026, 8, 19, 11, tzinfo=CHINA))
    assert [(p.position, p.outcome, p.next_store) for p in points] == [
        (1, SCORED, "S3"), (2, NEXT_AT_SAME_STORE, None), (3, NO_NEXT_PAYMENT, None), (4, NO_NEXT_PAYMENT, None)]
    assert [q.sub_mchid for q in points[0].history] == ["S1", "S2"]
