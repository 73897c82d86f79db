"""Campaign rules, issuance choice, refund policy and points arithmetic (pure cores)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from coupons.campaigns import (
    Campaign, CampaignChange, CampaignInvalid, CampaignState, DiscountKind, check_change,
    discounted_total_fen, min_spend_fen, parse_campaign, parse_change,
)
from coupons.issuing import AfterRefund, PaidAt, coupon_after_refund, eligible, held_out, offer
from points.rules import earn_transfer, member_account, points_earned, points_to_reverse, reverse_transfer

T0 = datetime(2026, 11, 1, tzinfo=timezone.utc)


def body(**over) -> dict:
    base = {"name": "Shoes 20 off 100", "sub_mchid": "1900000202", "funded_by": "mall",
            "discount": {"type": "threshold", "amount": 2000, "threshold": 10000},
            "budget": {"amount": 100000, "count": 50}, "daily_count_max": 10, "per_shopper_max": 1,
            "starts_at": "2026-11-01T00:00:00+08:00", "ends_at": "2026-12-01T00:00:00+08:00",
            "coupon_valid_seconds": 7 * 86400, "trigger": {"floors": ["5F"], "min_spend": 5000}}
    base.update(over)
    return base


def test_a_valid_campaign_parses():
    spec = parse_campaign(body())
    assert spec.discount_kind is DiscountKind.THRESHOLD and spec.discount_fen == 2000
    assert spec.trigger.floors == ("5F",) and spec.trigger.min_spend_fen == 5000
    assert spec.coupon_valid_until(spec.ends_at - timedelta(days=1)) == spec.ends_at


@pytest.mark.parametrize("change, field, issue", [
    ({"discount": {"type": "threshold", "amount": 20.5, "threshold": 10000}}, "discount.amount", "not_integer_fen"),
    ({"discount": {"type": "amount_off", "amount": -100}}, "discount.amount", "negative"),
    ({"discount": {"type": "threshold", "amount": 2000, "threshold": 2000}}, "discount.threshold", "not_above_amount"),
    ({"discount": {"type": "percent", "amount": 2000}}, "discount.type", "unknown_value"),
    ({"budget": {"amount": 1000, "count": 5}}, "budget.amount", "below_one_coupon"),
    ({"budget": {"amount": "100", "count": 5}}, "budget.amount", "not_integer_fen"),
    ({"budget": {"amount": 100000, "count": 0}}, "budget.count", "out_of_range"),
    ({"funded_by": "brand"}, "funded_by", "unknown_value"),
    ({"ends_at": "2026-10-01T00:00:00+08:00"}, "ends_at", "not_after_starts_at"),
    ({"starts_at": "2026-11-01T00:00:00"}, "starts_at", "time_without_offset"),
    ({"starts_at": "0001-01-01T00:00:00+08:00"}, "starts_at", "out_of_range"),  # before year 1 in UTC
    ({"ends_at": "9999-12-31T23:59:59+00:00"}, "ends_at", "out_of_range"),
    ({"trigger": {"min_spend": 1.5}}, "trigger.min_spend", "not_integer_fen"),
    ({"trigger": {"stores": ["abc"]}}, "trigger.stores", "invalid_sub_mchid"),
    ({"colour": "red"}, "colour", "unknown_field"),
])
def test_bad_campaigns_are_refused_with_a_precise_code(change, field, issue):
    with pytest.raises(CampaignInvalid) as refused:
        parse_campaign(body(**change))
    assert (refused.value.field, refused.value.issue) == (field, issue)


def test_a_budget_never_goes_below_what_is_committed():
    spec = parse_campaign(body())
    with pytest.raises(CampaignInvalid) as refused:
        check_change(CampaignState.ACTIVE, spec, parse_change({"budget": {"amount": 5999}}), 6000, 3)
    assert refused.value.issue == "below_committed"
    with pytest.raises(CampaignInvalid):
        check_change(CampaignState.ACTIVE, spec, CampaignChange(budget_count=2), 6000, 3)
    assert check_change(CampaignState.ACTIVE, spec, CampaignChange(budget_fen=6000), 6000, 3).budget_fen == 6000
    with pytest.raises(CampaignInvalid) as ended:
        check_change(CampaignState.ENDED, spec, CampaignChange(state=CampaignState.ACTIVE), 0, 0)
    assert ended.value.issue == "campaign_ended"


def test_discounts_apply_only_from_their_minimum_spend():
    threshold = min_spend_fen(DiscountKind.THRESHOLD, 2000, 10000)
    assert discounted_total_fen(2000, threshold, 9999) is None
    assert discounted_total_fen(2000, threshold, 10000) == 8000
    amount_off = min_spend_fen(DiscountKind.AMOUNT_OFF, 500, 0)
    assert discounted_total_fen(500, amount_off, 500) is None  # an order must stay payable
    assert discounted_total_fen(500, amount_off, 501) == 1


def _campaign(cid: int, store: str, discount: int = 2000, **over) -> Campaign:
    return Campaign(cid, parse_campaign(body(sub_mchid=store, discount={"type": "amount_off", "amount": discount},
                                             **over)), CampaignState.ACTIVE)


def test_only_other_stores_campaigns_triggered_by_the_payment_are_eligible():
    paid = PaidAt("o1", "1900000201", "5F", "food", 6000, T0 + timedelta(days=1))
    campaigns = [_campaign(1, "1900000202"), _campaign(2, "1900000201"),
                 _campaign(3, "1900000203", trigger={"floors": ["2F"]}),
                 _campaign(4, "1900000204", trigger={"min_spend": 6001}),
                 Campaign(5, _campaign(5, "1900000205").spec, CampaignState.PAUSED),
                 _campaign(6, "1900000206", starts_at="2026-11-05T00:00:00+08:00")]
    assert [c.campaign_id for c in eligible(campaigns, paid)] == [1]


def test_offers_follow_the_ranking_one_per_store_at_most_k():
    candidates = [_campaign(1, "1900000202", 1000), _campaign(2, "1900000202", 3000),
                  _campaign(3, "1900000203"), _campaign(4, "1900000204"), _campaign(5, "1900000205")]
    chosen = offer(["1900000204", "1900000202", "1900000203"], candidates, 3)
    assert [c.campaign_id for c in chosen] == [4, 2, 3]
    assert [c.campaign_id for c in offer([], candidates, 2)] == [2, 3]


def test_hold_out_and_refund_policy():
    assert held_out(999, 1000) and not held_out(1000, 1000) and not held_out(0, 0)
    valid = T0 + timedelta(days=3)
    assert coupon_after_refund(paid_fen=8000, refunded_fen=8000, valid_until=valid, at=T0) is AfterRefund.RETURNED
    assert coupon_after_refund(paid_fen=8000, refunded_fen=7999, valid_until=valid, at=T0) is AfterRefund.KEPT
    assert coupon_after_refund(paid_fen=8000, refunded_fen=8000, valid_until=valid, at=valid) is AfterRefund.KEPT


def test_points_earned_per_whole_yuan_and_reversed_by_refunds():
    assert points_earned(12399, 2) == 246
    reversed_total = 0
    for refunded in (5000, 9000, 12399):  # cumulative refunds of one order
        due = points_to_reverse(paid_fen=12399, refunded_fen=refunded, points_per_yuan=2,
                                reversed_already=reversed_total)
        reversed_total += due
    assert reversed_total == 246
    assert points_to_reverse(paid_fen=12399, refunded_fen=99, points_per_yuan=2, reversed_already=0) == 0
    assert points_to_reverse(paid_fen=12399, refunded_fen=100, points_per_yuan=2, reversed_already=0) == 2


def test_points_transfers_never_name_the_openid():
    account = member_account("1900000100", "oShopper1")
    assert "oShopper1" not in account and len(account.split(":")[2]) == 16
    earn = earn_transfer("1900000100", "oShopper1", "1900000201/ORDER1", 10)
    assert earn.currency == "PTS" and dict(zip(earn.accounts, earn.amounts_fen)) == {"points:issued": -10, account: 10}
    assert reverse_transfer("1900000100", "oShopper1", "1900000201/R1", 4).amounts_fen == [-4, 4]


@given(discount=st.integers(1, 100_000), paid=st.integers(1, 1_000_000),
       cuts=st.lists(st.integers(0, 1_000_000), max_size=6), receivable_extra=st.integers(0, 100_000))
def test_refunds_take_back_a_mall_subsidy_at_most_once_and_all_of_it_at_a_full_refund(
        discount, paid, cuts, receivable_extra):
    from coupons.postings import subsidy_to_reverse
    refunded_points = sorted({min(c, paid) for c in cuts}) + [paid]  # cumulative refunds ending in a full one
    taken = 0
    for refunded in refunded_points:
        due = subsidy_to_reverse(discount_fen=discount, paid_fen=paid, refunded_fen=refunded,
                                 reversed_already=taken, receivable_fen=discount + receivable_extra)
        assert due >= 0
        taken += due
        assert taken == discount * refunded // paid
    assert taken == discount


def test_a_subsidy_take_back_never_exceeds_the_unpaid_receivable():
    from coupons.postings import payout_transfer, subsidy_to_reverse
    assert subsidy_to_reverse(discount_fen=2000, paid_fen=10000, refunded_fen=10000, reversed_already=610,
                              receivable_fen=890) == 890
    assert subsidy_to_reverse(discount_fen=2000, paid_fen=10000, refunded_fen=10000, reversed_already=0,
                              receivable_fen=0) == 0
    payout = payout_transfer("1900000202", "SUBPAY-0001", 500)
    assert dict(zip(payout.accounts, payout.amounts_fen)) == {
        "tenant:1900000202:coupon_receivable": -500, "tenant:1900000202:available": 500}
