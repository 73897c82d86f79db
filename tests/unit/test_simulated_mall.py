"""The simulated malls are what they say: the `outlet` one (kept apart from model
development) has stores that open during the history, tourists who come on one day, and
purchases that walk to nearby stores of the same wing."""

from __future__ import annotations

from collections import defaultdict

from coupons.mall_counts import local_day
from coupons.simulated_mall import PROFILES, simulate
from gateway import targeting_files


def test_every_profile_is_offered_by_the_command_line():
    assert targeting_files.PROFILES == PROFILES


def test_the_outlet_mall_has_openings_tourists_and_walks_within_a_wing():
    stores, payments = simulate("outlet", seed=5, shoppers=400, days=90)
    wing = {s.sub_mchid: s.floor for s in stores}
    assert {p.sub_mchid for p in payments} <= set(wing) and len(set(wing.values())) == 3
    first_day = min(local_day(p.paid_at) for p in payments)
    opened_later = [s for s in stores if (days := [local_day(p.paid_at) - first_day for p in payments
                                                   if p.sub_mchid == s.sub_mchid]) and min(days) >= 30]
    assert opened_later  # no payment in its first month: it opened later
    days_by_shopper = defaultdict(set)
    for p in payments:
        days_by_shopper[p.openid].add(local_day(p.paid_at))
    assert sum(len(d) == 1 for d in days_by_shopper.values()) >= 0.3 * len(days_by_shopper)
    same_day_steps = same_wing = 0
    by_shopper = defaultdict(list)
    for p in payments:
        by_shopper[p.openid].append(p)
    for sequence in by_shopper.values():
        for a, b in zip(sequence, sequence[1:]):
            if local_day(a.paid_at) == local_day(b.paid_at):
                same_day_steps += 1
                same_wing += wing[a.sub_mchid] == wing[b.sub_mchid]
    assert same_wing >= 0.7 * same_day_steps
