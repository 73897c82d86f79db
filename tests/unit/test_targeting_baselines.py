"""The reference baselines and the model's contract on hand-made histories with known answers."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from coupons.baselines import (
    CoVisitation, Popularity, RandomStores, RepeatHistory, Transitions, TransitionsHistoryBlend,
)
from coupons.mall_counts import MallCounts
from coupons.targeting import NextStoreModel, Payment, Store

CHINA = timezone(timedelta(hours=8))
DAY = datetime(2026, 7, 1, 10, 0, tzinfo=CHINA)
STORES = [Store("A", "Alpha", "1F", "cafe"), Store("B", "Beta", "1F", "fashion"),
          Store("C", "Gamma", "2F", "shoes"), Store("D", "Delta", "3F", "restaurant")]
EVERY_STORE = {"A", "B", "C", "D"}


def pay(openid: str, store: str, minutes: int, day: int = 0) -> Payment:
    return Payment(openid, store, DAY + timedelta(days=day, minutes=minutes), 1000)


# Visits A 4, B 2, C 2, D 2; transitions A→B twice, A→C once, B→A once, D→C once (D→D is a repeat,
# not a transition); shopping days {A,B}, {A,B}, {A,C}, {C,D}.
HISTORY = [pay("s1", "A", 0), pay("s1", "B", 10), pay("s1", "A", 20),
           pay("s2", "A", 0), pay("s2", "B", 10),
           pay("s3", "A", 0), pay("s3", "C", 10),
           pay("s4", "D", 0), pay("s4", "D", 5), pay("s4", "C", 10)]


def rank(model, current: Payment, history=None, candidates=EVERY_STORE, k=3):
    return model.rank(current=current, history=history or [current], candidates=candidates, k=k)


def test_popularity_offers_the_most_paid_stores_but_never_the_current_one():
    model = Popularity.fit(STORES, HISTORY)
    assert rank(model, pay("new", "D", 0)) == ["A", "B", "C"]
    assert rank(model, pay("new", "A", 0)) == ["B", "C", "D"]


def test_transitions_follow_the_counted_store_to_store_moves_then_popularity():
    model = Transitions.fit(STORES, HISTORY)
    assert rank(model, pay("new", "A", 0)) == ["B", "C", "D"]
    assert rank(model, pay("new", "D", 0)) == ["C", "A", "B"]
    assert model.counts.transitions[model.counts.index["D"], model.counts.index["D"]] == 0


def test_repeat_history_offers_the_shoppers_own_stores_most_visited_then_most_recent():
    model = RepeatHistory.fit(STORES, HISTORY)
    history = [pay("s9", "C", 0), pay("s9", "B", 10), pay("s9", "C", 20), pay("s9", "D", 30)]
    assert rank(model, history[-1], history) == ["C", "B", "A"]
    history = [pay("s9", "B", 0), pay("s9", "C", 10), pay("s9", "A", 20)]
    assert rank(model, history[-1], history) == ["C", "B", "D"]


def test_co_visitation_ranks_stores_by_cosine_over_shopping_days():
    model = CoVisitation.fit(STORES, HISTORY)
    similarity = model.counts.day_similarity
    index = model.counts.index
    assert similarity[index["A"], index["B"]] == pytest.approx(2 / 6 ** 0.5)
    assert similarity[index["C"], index["D"]] == pytest.approx(1 / 2 ** 0.5)
    assert rank(model, pay("new", "C", 0)) == ["D", "A", "B"]


def test_the_blend_weighs_transitions_against_the_shoppers_own_history():
    counts = MallCounts.count(STORES, HISTORY)
    history = [pay("s9", "D", 0), pay("s9", "D", 10), pay("s9", "A", 20)]
    assert rank(TransitionsHistoryBlend(counts, 1.0), history[-1], history)[0] == "B"
    assert rank(TransitionsHistoryBlend(counts, 0.0), history[-1], history)[0] == "D"
    fitted = TransitionsHistoryBlend.fit(STORES, HISTORY)
    assert 0.0 <= fitted.weight <= 1.0


def test_random_offers_distinct_candidates_repeatably_for_a_seed():
    offers = [rank(RandomStores.fit(STORES, HISTORY), pay("new", "A", 0), k=2) for _ in range(2)]
    assert offers[0] == offers[1]
    assert len(set(offers[0])) == 2 and "A" not in offers[0]


@pytest.mark.parametrize("baseline", [Popularity, Transitions, RepeatHistory, CoVisitation, RandomStores,
                                      TransitionsHistoryBlend, NextStoreModel])
def test_offers_only_candidates_never_the_current_store_at_most_k(baseline):
    model = baseline.fit(STORES, HISTORY)
    assert set(rank(model, pay("new", "A", 0), candidates={"A", "C", "D"})) == {"C", "D"}
    assert len(rank(model, pay("new", "A", 0), k=2)) == 2
    assert rank(model, pay("new", "A", 0), candidates={"A"}) == []
    # a store opened after fitting (never paid at) is still offered when it is a candidate
    assert rank(model, pay("new", "A", 0), candidates={"A", "NEW"}) == ["NEW"]
    # a payment at a store the model never saw still gets offers
    assert len(rank(model, pay("new", "NEW", 0))) == 3


def cinema_mall() -> tuple[list[Store], list[Payment]]:
    """Shoppers who go to the cinema dine at the same restaurant right after; other stores
    are more popular overall."""
    stores = [Store("CIN", "Cinema", "5F", "cinema"), Store("RES", "Hotpot", "5F", "restaurant"),
              Store("TEA", "Tea", "1F", "cafe"), Store("SHO", "Shoes", "2F", "shoes"),
              Store("FAS", "Fashion", "2F", "fashion")]
    payments = []
    for shopper in range(60):
        day = shopper % 50
        openid = f"o{shopper}"
        if shopper % 3 == 0:
            payments += [pay(openid, "CIN", 0, day), pay(openid, "RES", 150, day)]
        else:
            payments += [pay(openid, "TEA", 0, day), pay(openid, "SHO", 20, day), pay(openid, "FAS", 40, day),
                         pay(openid, "TEA", 60, day), pay(openid, "FAS", 70, day)]
    return stores, payments


def test_the_model_learns_the_complement_cinema_then_dinner_for_a_new_shopper():
    stores, payments = cinema_mall()
    model = NextStoreModel.fit(stores, payments)
    everywhere = {s.sub_mchid for s in stores}
    assert rank(model, pay("first-time", "CIN", 0, 55), candidates=everywhere, k=1) == ["RES"]
    assert rank(model, pay("first-time", "TEA", 0, 55), candidates=everywhere, k=1) != ["RES"]


def test_fitting_is_deterministic():
    stores, payments = cinema_mall()
    first, second = NextStoreModel.fit(stores, payments), NextStoreModel.fit(stores, payments)
    assert first.weights_by_feature() == second.weights_by_feature()


def test_every_store_is_numbered_once_including_stores_only_paid_at():
    counts = MallCounts.count(STORES, HISTORY + [pay("s5", "X", 0)], index_of=HISTORY + [pay("s6", "Y", 0)])
    assert counts.sub_mchids == ["A", "B", "C", "D", "X", "Y"]
    assert counts.visits.tolist() == [4, 2, 2, 2, 1, 0]
