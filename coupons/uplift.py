"""Uplift of coupons over a random hold-out: did the coupon bring the shopper to the
target store, or would they have come anyway?

Treated and held-out decisions are compared on whether the shopper paid at a target
store within the window and what they spent there. Estimates use exact fractions and
integer square roots, so money figures stay integer fen; the interval is the normal
approximation at 95% (z = 1.96) of the difference of two independent means.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from math import isqrt

Z_95 = Fraction(196, 100)
BPS = 10_000


@dataclass(frozen=True)
class Arm:
    """One group's outcomes: decisions, those followed by a visit, and the sales (with the
    sum of squares of each decision's sales, for the variance)."""

    decisions: int
    visits: int
    sales_fen: int
    sales_sq_fen2: int

    def __post_init__(self) -> None:
        assert 0 <= self.visits <= self.decisions and self.sales_fen >= 0 and self.sales_sq_fen2 >= 0


@dataclass(frozen=True)
class Estimate:
    value: int
    low: int
    high: int

    def as_json(self) -> dict:
        return {"estimate": self.value, "low": self.low, "high": self.high}


@dataclass(frozen=True)
class Uplift:
    treated: Arm
    held_out: Arm
    treated_rate_bps: int | None
    held_out_rate_bps: int | None
    rate_difference_bps: Estimate | None
    incremental_visits: Estimate | None
    incremental_sales_fen: Estimate | None
    cost_per_incremental_visit_fen: int | None


def uplift(treated: Arm, held_out: Arm, discount_spent_fen: int) -> Uplift:
    """Estimates need at least two decisions in each arm; else they are None."""
    if treated.decisions < 2 or held_out.decisions < 2:
        return Uplift(treated, held_out, _rate_bps(treated), _rate_bps(held_out), None, None, None, None)
    n_t = treated.decisions
    diff = Fraction(treated.visits, n_t) - Fraction(held_out.visits, held_out.decisions)
    var = _proportion_var(treated) + _proportion_var(held_out)
    rate = _interval(diff * BPS, var * BPS * BPS)
    visits = _interval(diff * n_t, var * n_t * n_t)
    sales_diff = Fraction(treated.sales_fen, n_t) - Fraction(held_out.sales_fen, held_out.decisions)
    sales_var = _mean_var(treated) + _mean_var(held_out)
    sales = _interval(sales_diff * n_t, sales_var * n_t * n_t)
    cost = discount_spent_fen // visits.value if visits.value > 0 else None
    return Uplift(treated, held_out, _rate_bps(treated), _rate_bps(held_out), rate, visits, sales, cost)


def _rate_bps(arm: Arm) -> int | None:
    return arm.visits * BPS // arm.decisions if arm.decisions else None


def _proportion_var(arm: Arm) -> Fraction:
    """Variance of the visit rate's estimate: p(1-p)/n."""
    n = arm.decisions
    return Fraction(arm.visits * (n - arm.visits), n * n * n)


def _mean_var(arm: Arm) -> Fraction:
    """Variance of mean sales' estimate: sample variance / n."""
    n = arm.decisions
    sample_var = (Fraction(arm.sales_sq_fen2) - Fraction(arm.sales_fen * arm.sales_fen, n)) / (n - 1)
    return sample_var / n


def _interval(point: Fraction, variance: Fraction) -> Estimate:
    half = _sqrt_floor(variance * Z_95 * Z_95)
    value = point.numerator // point.denominator
    return Estimate(value=value, low=(point - half).__floor__(), high=(point + half).__ceil__())


def _sqrt_floor(x: Fraction) -> int:
    assert x >= 0
    return isqrt(x.numerator * x.denominator) // x.denominator
