"""splitting/rules.py: contract checks, the cap, and the one rounding rule (SPEC 5)."""

from __future__ import annotations

from datetime import datetime, timezone
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from splitting.rules import (
    BPS_DENOMINATOR, DEFAULT_MAX_RATIO_BPS, FEE_RATE_BPS_MAX, FREEZE_DAYS_MAX, FREEZE_DAYS_MIN, Approval, Contract,
    SplitRefused, cap_fen, check_contract, divide_exactly, share_fen, share_of_remaining,
)

APPROVED_AT = datetime(2026, 3, 1, 9, 0, tzinfo=timezone.utc)


def approval(max_ratio_bps: int) -> Approval:
    return Approval(approved_by="finance:lin", approved_at=APPROVED_AT, reason="franchise brand HQ share",
                    max_ratio_bps=max_ratio_bps)


def contract(**fields) -> Contract:
    values = dict(commission_bps=500, max_ratio_bps=DEFAULT_MAX_RATIO_BPS, fee_rate_bps=60, freeze_days=30,
                  guide_reward_bps=200, auto_split=True, approval=None)
    values.update(fields)
    return Contract(**values)


def refusal_code(contract_: Contract) -> str | None:
    try:
        check_contract(contract_)
    except SplitRefused as refused:
        return refused.code
    return None


# -- check_contract ----------------------------------------------------------------------

def test_default_contract_is_accepted():
    assert refusal_code(contract()) is None


def test_cap_of_exactly_30_percent_needs_no_approval():
    assert refusal_code(contract(max_ratio_bps=3000, commission_bps=2800, guide_reward_bps=200)) is None


def test_cap_above_30_percent_without_approval_is_refused():
    with pytest.raises(SplitRefused) as refused:
        check_contract(contract(max_ratio_bps=3001))
    assert refused.value.code == "approval_required"
    assert refused.value.detail == {"asked": 3001, "allowed": 3000}


def test_cap_above_30_percent_with_a_covering_approval_is_accepted():
    assert refusal_code(contract(max_ratio_bps=8000, approval=approval(8000))) is None
    assert refusal_code(contract(max_ratio_bps=6000, approval=approval(8000))) is None
    assert refusal_code(contract(max_ratio_bps=10_000, approval=approval(10_000))) is None


def test_cap_above_what_the_approval_allows_is_refused():
    with pytest.raises(SplitRefused) as refused:
        check_contract(contract(max_ratio_bps=8001, approval=approval(8000)))
    assert refused.value.code == "approval_required"
    assert refused.value.detail == {"asked": 8001, "allowed": 8000}


def test_commission_and_guide_reward_above_the_cap_are_refused():
    assert refusal_code(contract(commission_bps=2000, guide_reward_bps=1000)) is None  # exactly the cap
    with pytest.raises(SplitRefused) as refused:
        check_contract(contract(commission_bps=2000, guide_reward_bps=1001))
    assert refused.value.code == "ratio_exceeded"
    assert refused.value.detail == {"asked": 3001, "allowed": 3000}


def test_automatic_splits_above_the_cap_are_refused_even_with_a_high_ratio_approval():
    high = dict(max_ratio_bps=5000, approval=approval(5000))
    assert refusal_code(contract(commission_bps=4000, guide_reward_bps=1000, **high)) is None
    assert refusal_code(contract(commission_bps=4000, guide_reward_bps=1001, **high)) == "ratio_exceeded"


@pytest.mark.parametrize("field", ["commission_bps", "max_ratio_bps", "guide_reward_bps"])
@pytest.mark.parametrize("value", [-1, BPS_DENOMINATOR + 1])
def test_ratio_outside_0_to_10000_is_refused(field, value):
    fields = {"commission_bps": 0, "guide_reward_bps": 0, "max_ratio_bps": 3000, "approval": approval(10_000)}
    fields[field] = value
    with pytest.raises(SplitRefused) as refused:
        check_contract(contract(**fields))
    assert refused.value.code == "out_of_range"
    assert refused.value.detail == {"field": field}


@pytest.mark.parametrize("field, value", [
    ("fee_rate_bps", -1), ("fee_rate_bps", FEE_RATE_BPS_MAX + 1), ("fee_rate_bps", BPS_DENOMINATOR + 1),
    ("freeze_days", FREEZE_DAYS_MIN - 1), ("freeze_days", -5), ("freeze_days", FREEZE_DAYS_MAX + 1),
])
def test_fee_rate_and_freeze_days_out_of_range_are_refused(field, value):
    # Before this check a fee of 10001 bps was accepted and crashed later in channel_fee_fen.
    with pytest.raises(SplitRefused) as refused:
        check_contract(contract(**{field: value}))
    assert refused.value.code == "out_of_range"
    assert refused.value.detail == {"field": field}


@pytest.mark.parametrize("fields", [
    {"fee_rate_bps": 0}, {"fee_rate_bps": FEE_RATE_BPS_MAX},
    {"freeze_days": FREEZE_DAYS_MIN}, {"freeze_days": FREEZE_DAYS_MAX},
])
def test_fee_rate_and_freeze_days_at_their_bounds_are_accepted(fields):
    assert refusal_code(contract(**fields)) is None


@st.composite
def contracts(draw) -> Contract:
    """A valid contract: any cap 0..10000, with an approval covering it when above 30%."""
    max_ratio_bps = draw(st.integers(0, BPS_DENOMINATOR))
    commission_bps = draw(st.integers(0, max_ratio_bps))
    guide_reward_bps = draw(st.integers(0, max_ratio_bps - commission_bps))
    granted = None
    if max_ratio_bps > DEFAULT_MAX_RATIO_BPS:
        granted = approval(draw(st.integers(max_ratio_bps, BPS_DENOMINATOR)))
    return Contract(commission_bps=commission_bps, max_ratio_bps=max_ratio_bps,
                    fee_rate_bps=draw(st.integers(0, FEE_RATE_BPS_MAX)),
                    freeze_days=draw(st.integers(FREEZE_DAYS_MIN, FREEZE_DAYS_MAX)),
                    guide_reward_bps=guide_reward_bps, auto_split=draw(st.booleans()), approval=granted)


@given(contracts())
def test_every_contract_within_its_cap_and_approval_is_accepted(contract_):
    check_contract(contract_)


@given(max_ratio_bps=st.integers(DEFAULT_MAX_RATIO_BPS + 1, BPS_DENOMINATOR),
       approved_bps=st.integers(0, BPS_DENOMINATOR) | st.none())
def test_high_ratio_is_accepted_exactly_when_an_approval_covers_it(max_ratio_bps, approved_bps):
    granted = None if approved_bps is None else approval(approved_bps)
    code = refusal_code(contract(max_ratio_bps=max_ratio_bps, approval=granted))
    if granted is None:
        assert code == "approval_required"
    elif approved_bps < max_ratio_bps:
        assert code == "approval_required"  # one code per cause: no approval covers this cap
    else:
        assert code is None


@given(contracts(), st.integers(1, 10**8))
def test_automatic_shares_of_a_valid_contract_fit_under_its_cap(contract_, paid_fen):
    """Floored commission and guide reward never take more than the floored cap."""
    automatic = share_fen(paid_fen, contract_.commission_bps) + share_fen(paid_fen, contract_.guide_reward_bps)
    assert automatic <= cap_fen(paid_fen, contract_.max_ratio_bps)


# -- share_fen and cap_fen: floor --------------------------------------------------------

@pytest.mark.parametrize("base_fen, ratio_bps, expected", [
    (10_000, 3000, 3000),
    (9_999, 3000, 2999),  # 2999.7 floors
    (1, 9_999, 0),  # 0.9999 floors
    (3, 3_333, 0),
    (333, 3_000, 99),  # 99.9
    (100_000_000, 10_000, 100_000_000),
    (100_000_000, 0, 0),
    (0, 5_000, 0),
])
def test_share_fen_floors(base_fen, ratio_bps, expected):
    assert share_fen(base_fen, ratio_bps) == expected
    assert cap_fen(base_fen, ratio_bps) == expected


@given(st.integers(0, 10**10), st.integers(0, BPS_DENOMINATOR))
def test_share_fen_is_the_exact_share_floored(base_fen, ratio_bps):
    exact = Fraction(base_fen * ratio_bps, BPS_DENOMINATOR)
    share = share_fen(base_fen, ratio_bps)
    assert share <= exact < share + 1
    assert 0 <= share <= base_fen


@pytest.mark.parametrize("base_fen, ratio_bps", [(-1, 100), (100, -1), (100, BPS_DENOMINATOR + 1)])
def test_share_fen_of_impossible_input_is_a_programming_error(base_fen, ratio_bps):
    with pytest.raises(AssertionError):
        share_fen(base_fen, ratio_bps)


# -- divide_exactly: floor, leftover fen in list order ------------------------------------

@pytest.mark.parametrize("amount_fen, weights, expected", [
    (100, [1, 1, 1], [34, 33, 33]),  # the one leftover fen goes to the first part
    (101, [1, 1, 1], [34, 34, 33]),  # two leftover fen: first and second
    (2, [1, 1, 1], [1, 1, 0]),
    (10, [0, 1, 1, 1], [0, 4, 3, 3]),  # zero weights get nothing, not even a leftover fen
    (5, [3, 0, 1], [4, 0, 1]),  # exact 3.75 / 0 / 1.25: floors 3, 0, 1, leftover to the first
    (2, [2, 1, 1], [2, 0, 0]),  # list order, not largest remainder: exact 1 / 0.5 / 0.5
    (0, [5, 7], [0, 0]),
    (0, [0, 0], [0, 0]),
    (7, [1], [7]),
    (99, [3000, 2000, 5000], [30, 20, 49]),  # exact 29.7 / 19.8 / 49.5
])
def test_divide_exactly_hands_leftover_fen_in_list_order(amount_fen, weights, expected):
    assert divide_exactly(amount_fen, weights) == expected


def test_divide_exactly_of_money_over_zero_weights_is_a_programming_error():
    with pytest.raises(AssertionError):
        divide_exactly(1, [0, 0])


@given(amount_fen=st.integers(0, 10**8),
       weights=st.lists(st.integers(0, 10**8), min_size=1, max_size=60).filter(lambda w: sum(w) > 0))
def test_divide_exactly_parts_sum_to_the_whole_each_within_a_fen(amount_fen, weights):
    parts = divide_exactly(amount_fen, weights)
    total_weight = sum(weights)
    assert len(parts) == len(weights)
    assert sum(parts) == amount_fen
    floors = [amount_fen * w // total_weight for w in weights]
    for part, weight, floor in zip(parts, weights, floors):
        exact = Fraction(amount_fen * weight, total_weight)
        assert abs(part - exact) <= 1
        assert part in (floor, floor + 1)
        if weight == 0:
            assert part == 0
    # The leftover fen go to the first parts with a weight, one each, in list order.
    bumped = [i for i, (part, floor) in enumerate(zip(parts, floors)) if part > floor]
    with_weight = [i for i, w in enumerate(weights) if w]
    assert bumped == with_weight[:len(bumped)]


# -- share_of_remaining: each refund in proportion to what is still refundable ------------

@pytest.mark.parametrize("outstanding_fen, part_fen, remaining_fen, expected", [
    (3000, 5000, 10_000, 1500),
    (3000, 1, 10_000, 0),  # 0.3 floors
    (3000, 10_000, 10_000, 3000),  # the last refund takes everything outstanding
    (1500, 1, 5000, 0),
    (3000, 1, 5000, 0),  # a split made after half the order was refunded: 0.6 of a fen
    (7, 1, 3, 2),  # 2.33 floors
    (0, 5, 10, 0),
    (5, 0, 10, 0),
])
def test_share_of_remaining_floors(outstanding_fen, part_fen, remaining_fen, expected):
    assert share_of_remaining(outstanding_fen, part_fen, remaining_fen) == expected


@pytest.mark.parametrize("outstanding_fen, part_fen, remaining_fen", [(-1, 1, 1), (1, 2, 1), (1, -1, 1), (1, 0, 0)])
def test_share_of_remaining_of_impossible_input_is_a_programming_error(outstanding_fen, part_fen, remaining_fen):
    with pytest.raises(AssertionError):
        share_of_remaining(outstanding_fen, part_fen, remaining_fen)


REFUNDS_PER_RUN_MAX = 8


@given(outstanding_fen=st.integers(0, 10**8), remaining_fen=st.integers(1, 10**8), data=st.data())
def test_shares_of_remaining_over_a_run_of_refunds_add_up_to_the_whole(outstanding_fen, remaining_fen, data):
    """Refund the order piece by piece, each piece taking its floored share of what is still
    outstanding: no piece takes more than its exact share, and the last takes what is left."""
    for number in range(REFUNDS_PER_RUN_MAX):
        last = number == REFUNDS_PER_RUN_MAX - 1
        part_fen = remaining_fen if last else data.draw(st.integers(1, remaining_fen))
        taken = share_of_remaining(outstanding_fen, part_fen, remaining_fen)
        assert 0 <= taken <= Fraction(outstanding_fen * part_fen, remaining_fen) < taken + 1
        if part_fen == remaining_fen:
            assert taken == outstanding_fen
        outstanding_fen -= taken
        remaining_fen -= part_fen
        if not remaining_fen:
            break
    assert outstanding_fen == 0
