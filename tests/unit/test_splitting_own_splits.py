"""splitting/own_splits.py: the gateway's own splits, the guide's reward less the guide's
debt and the commission at the finish, decided on an order's funds (SPEC 5)."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from ledger import accounts
from splitting import postings
from splitting.funds import (
    COMMISSION, GUIDE_REWARD, OrderFunds, plan_refund, record_split_result, reserve_split, unfreeze,
)
from splitting.own_splits import commission, guide_reward
from splitting.rules import BPS_DENOMINATOR, SplitRefused, share_fen

STORE = "1900000201"
GUIDE = accounts.guide_rewards("g1")
BRAND = accounts.receiver("1900000999")
MALL = accounts.MALL_COMMISSION


def split(funds: OrderFunds, account: str, returnable: bool, fen: int, *, succeeded: bool = True,
          purpose: str = "api") -> OrderFunds:
    funds = reserve_split(funds, [(account, returnable, fen)], purpose)
    return record_split_result(funds, account, fen, succeeded=succeeded)


@st.composite
def order_states(draw, *, may_be_unfrozen: bool = True) -> OrderFunds:
    """A paid order with room set aside for the reward and the commission, after a few
    of the mall's splits (some failed) and refunds, perhaps unfrozen."""
    paid_fen = draw(st.one_of(st.integers(1, 10_000), st.integers(1, 10**8)))
    max_ratio_bps = draw(st.integers(0, BPS_DENOMINATOR))
    reward_bps = draw(st.integers(0, max_ratio_bps))
    commission_bps = draw(st.integers(0, max_ratio_bps - reward_bps))
    fee_fen = draw(st.integers(0, paid_fen // 10))
    funds = OrderFunds.paid(paid_fen, fee_fen, max_ratio_bps, guide_reward_bps=reward_bps,
                            commission_bps=commission_bps)
    for _ in range(draw(st.integers(0, 4))):
        try:
            if draw(st.booleans()):
                fen = draw(st.integers(1, max(1, funds.splittable_fen)))
                funds = split(funds, BRAND, True, fen, succeeded=draw(st.integers(0, 4)) > 0)
            else:
                _, funds = plan_refund(funds, draw(st.integers(1, max(1, funds.refundable_fen))))
        except SplitRefused:
            pass
    if may_be_unfrozen and draw(st.integers(0, 6)) == 0:
        try:
            _, funds = unfreeze(funds)
        except SplitRefused:
            pass
    return funds


# -- the guide's reward and the guide's debt ---------------------------------------------------


def test_a_guide_without_debt_gets_the_whole_reward():
    funds = OrderFunds.paid(10_000, 60, 3000, guide_reward_bps=200)
    decided = guide_reward(funds, GUIDE, 0)
    assert (decided.reward_fen, decided.recovered_fen, decided.paid_fen, decided.refusal) == (200, 0, 200, None)


def test_the_guides_debt_is_recovered_from_the_reward_first():
    funds = OrderFunds.paid(10_000, 60, 3000, guide_reward_bps=200)
    decided = guide_reward(funds, GUIDE, 150)
    assert (decided.recovered_fen, decided.paid_fen) == (150, 50)
    decided = guide_reward(funds, GUIDE, 500)  # more owed than the reward: all of it is kept
    assert (decided.recovered_fen, decided.paid_fen, decided.refusal) == (200, 0, None)


def test_a_reward_the_rules_refuse_recovers_nothing():
    funds = OrderFunds.paid(10_000, 60, 3000, guide_reward_bps=200)
    _, funds = unfreeze(funds)
    decided = guide_reward(funds, GUIDE, 50)
    assert (decided.recovered_fen, decided.paid_fen, decided.refusal) == (0, 0, "order_unfrozen")
    _, funds = plan_refund(OrderFunds.paid(10_000, 0, 3000, guide_reward_bps=200), 10_000)
    assert guide_reward(funds, GUIDE, 0).refusal == "amount_exceeds_splittable"


@given(funds=order_states(), owed_fen=st.one_of(st.just(0), st.integers(0, 2_000), st.integers(0, 10**7)))
def test_reward_and_recovery_never_pay_more_than_earned_nor_leave_debt_negative(funds, owed_fen):
    decided = guide_reward(funds, GUIDE, owed_fen)
    reward = funds.reward_set_aside_fen
    assert decided.reward_fen == reward
    assert 0 <= decided.paid_fen <= reward and 0 <= decided.recovered_fen <= owed_fen
    assert owed_fen - decided.recovered_fen >= 0, "debt left negative"
    if decided.refusal is not None:
        event(f"reward refused: {decided.refusal}")
        assert (decided.recovered_fen, decided.paid_fen) == (0, 0)
        with pytest.raises(SplitRefused) as refused:
            reserve_split(funds, [(GUIDE, False, reward - min(owed_fen, reward))], GUIDE_REWARD)
        assert refused.value.code == decided.refusal
        return
    # Recovered first, the rest to the guide: exactly the reward, never more.
    assert decided.recovered_fen == min(owed_fen, reward)
    assert decided.recovered_fen + decided.paid_fen == reward
    event("reward: " + (", ".join(name for name, fen in [("recovered", decided.recovered_fen),
                                                          ("paid", decided.paid_fen)] if fen) or "none set aside"))
    if decided.paid_fen:
        after = split(funds, GUIDE, False, decided.paid_fen, purpose=GUIDE_REWARD)
        assert after.split_away_fen <= after.cap_fen and after.reward_set_aside_fen == 0
    if decided.recovered_fen:
        moved = postings.recovery_transfer(STORE, "GR1", "g1", decided.recovered_fen)
        assert dict(zip(moved.accounts, moved.amounts_fen)) == {
            accounts.tenant_owed_by_guides(STORE): -decided.recovered_fen,
            accounts.guide_clawback("g1"): decided.recovered_fen}


# -- the commission at the finish -----------------------------------------------------------------


def test_the_commission_is_the_contracts_share_of_what_the_shopper_kept():
    funds = OrderFunds.paid(10_000, 60, 3000, commission_bps=500)
    decided = commission(funds, 500, MALL)
    assert (decided.due_fen, decided.amount_fen, decided.refusal) == (500, 500, None)
    _, funds = plan_refund(funds, 4000)
    decided = commission(funds, 500, MALL)
    assert (decided.due_fen, decided.amount_fen, decided.refusal) == (300, 300, None)


def test_a_commission_without_room_or_frozen_money_is_refused_with_the_reason():
    funds = OrderFunds.paid(10_000, 0, 3000)  # no room set aside: the mall may take the whole cap
    funds = split(funds, BRAND, True, 3000)
    decided = commission(funds, 500, MALL)
    assert (decided.due_fen, decided.amount_fen, decided.refusal) == (500, 0, "no_room_in_cap")


def test_no_commission_is_due_on_what_the_shopper_got_back():
    funds = OrderFunds.paid(10_000, 0, 3000, commission_bps=500)
    _, funds = plan_refund(funds, 9_981)  # 5% of the 19 fen kept is 0.95 fen: nothing
    decided = commission(funds, 500, MALL)
    assert (decided.due_fen, decided.amount_fen, decided.refusal) == (0, 0, None)


def test_a_commission_after_refunds_took_the_frozen_money_is_refused_as_nothing_frozen():
    funds = OrderFunds.paid(10_000, 0, 3000, commission_bps=500)
    funds = split(funds, BRAND, True, 2500)  # 7500 frozen
    _, funds = plan_refund(funds, 8_000)  # takes 7500 from frozen (returns 2000 of the brand's share)
    assert funds.frozen_fen == 0
    decided = commission(funds, 500, MALL)
    assert (decided.due_fen, decided.amount_fen, decided.refusal) == (100, 0, "nothing_frozen")


def test_no_commission_is_due_by_a_contract_without_one():
    decided = commission(OrderFunds.paid(10_000, 0, 3000), 0, MALL)
    assert (decided.due_fen, decided.amount_fen, decided.refusal) == (0, 0, None)


@given(funds=order_states(may_be_unfrozen=False), commission_bps=st.integers(0, BPS_DENOMINATOR),
       channel_pays=st.integers(0, 4))
def test_commission_and_the_release_after_it_are_what_remained_frozen(funds, commission_bps, channel_pays):
    """The finish: the commission (split with the rest released) moves exactly the order's
    frozen money, to the mall and to the store; if the channel refuses the commission,
    the release alone does."""
    decided = commission(funds, commission_bps, MALL)
    due = share_fen(funds.paid_fen - funds.refunded_fen, commission_bps)
    assert decided.due_fen == due
    assert 0 <= decided.amount_fen <= due
    assert decided.amount_fen <= min(funds.room_fen(COMMISSION), funds.frozen_fen - funds.reserved_fen)
    if due == 0 or decided.refusal is not None:
        event(f"commission given up: {decided.refusal or 'nothing due'}")
        assert decided.amount_fen == 0
        return
    assert decided.amount_fen > 0
    event("commission " + ("in full" if decided.amount_fen == due else "cut to the room or the frozen money"))
    frozen = funds.frozen_fen
    succeeded = channel_pays > 0
    after = record_split_result(reserve_split(funds, [(MALL, True, decided.amount_fen)], COMMISSION), MALL,
                                decided.amount_fen, succeeded=succeeded)
    assert after.split_away_fen <= after.cap_fen and after.commission_set_aside_fen == 0
    released = 0
    if after.frozen_fen:
        released, after = unfreeze(after)
    assert (decided.amount_fen if succeeded else 0) + released == frozen
    ledger = Counter()
    moved = [postings.split_transfer(STORE, "CM1", [(MALL, decided.amount_fen)])] if succeeded else []
    moved += [postings.unfreeze_transfer(STORE, "CM1", released)] if released else []
    for transfer in moved:
        ledger.update(dict(zip(transfer.accounts, transfer.amounts_fen)))
    assert ledger[accounts.tenant_frozen(STORE)] == -frozen and after.frozen_fen == 0
