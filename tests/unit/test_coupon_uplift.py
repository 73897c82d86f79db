"""The uplift estimate recovers a known true effect from simulated shoppers."""

from __future__ import annotations

import random

from coupons.uplift import Arm, uplift

TRUE_BASE_RATE = 0.20
TRUE_TREATED_RATE = 0.30  # the coupon brings 10 points of extra visits
SALE_FEN = (5000, 20000)


def simulate(seed: int, decisions: int, holdout: float = 0.10) -> tuple[Arm, Arm]:
    rng = random.Random(seed)
    arms = {True: [0, 0, 0, 0], False: [0, 0, 0, 0]}
    for _ in range(decisions):
        treated = rng.random() >= holdout
        visited = rng.random() < (TRUE_TREATED_RATE if treated else TRUE_BASE_RATE)
        sale = rng.randint(*SALE_FEN) if visited else 0
        arm = arms[treated]
        arm[0] += 1
        arm[1] += visited
        arm[2] += sale
        arm[3] += sale * sale
    return Arm(*arms[True]), Arm(*arms[False])


def test_the_interval_holds_the_true_effect():
    treated, held = simulate(seed=7, decisions=20000)
    result = uplift(treated, held, discount_spent_fen=2000 * treated.visits)
    truth_bps = int((TRUE_TREATED_RATE - TRUE_BASE_RATE) * 10000)
    assert result.rate_difference_bps.low <= truth_bps <= result.rate_difference_bps.high
    assert result.rate_difference_bps.high - result.rate_difference_bps.low < 600  # informative, not vacuous
    true_visits = (TRUE_TREATED_RATE - TRUE_BASE_RATE) * treated.decisions
    assert result.incremental_visits.low <= true_visits <= result.incremental_visits.high
    mean_sale = sum(SALE_FEN) / 2
    true_sales = true_visits * mean_sale
    assert result.incremental_sales_fen.low <= true_sales <= result.incremental_sales_fen.high
    assert result.cost_per_incremental_visit_fen > 0


def test_the_interval_covers_the_truth_about_95_percent_of_the_time():
    truth_bps = int((TRUE_TREATED_RATE - TRUE_BASE_RATE) * 10000)
    covered = 0
    runs = 200
    for seed in range(runs):
        result = uplift(*simulate(seed, 3000), discount_spent_fen=0)
        covered += result.rate_difference_bps.low <= truth_bps <= result.rate_difference_bps.high
    assert 0.90 <= covered / runs <= 0.99


def test_no_effect_gives_an_interval_around_zero():
    treated, held = Arm(1000, 200, 0, 0), Arm(1000, 200, 0, 0)
    result = uplift(treated, held, discount_spent_fen=5000)
    assert result.rate_difference_bps.value == 0 and result.rate_difference_bps.low < 0 < result.rate_difference_bps.high
    assert result.cost_per_incremental_visit_fen is None
    assert uplift(Arm(1, 1, 10, 100), held, 0).rate_difference_bps is None
