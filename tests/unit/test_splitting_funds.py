"""splitting/funds.py and splitting/postings.py: one paid order's money through splits,
unfreezes and refunds, and the ledger transfers of each step (SPEC 4 and 5)."""

from __future__ import annotations

from collections import Counter
import json
import re
from dataclasses import asdict, fields, replace
from pathlib import Path
from datetime import datetime, timezone
from fractions import Fraction

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from ledger import accounts
from ledger.payments import channel_fee_fen, payment_transfer
from ledger.transfers import Transfer
from splitting import postings
from splitting.funds import (
    OrderFunds, RefundPlan, allocate_returns, capped, give_up, plan_refund, record_return, release_rest, reserve_split, set_asides_fen,
    record_split_result, undo_refund, undo_unfreeze, unfreeze,
)
from splitting.rules import (
    BPS_DENOMINATOR, DEFAULT_MAX_RATIO_BPS, FEE_RATE_BPS_MAX, RECEIVERS_PER_SPLIT_MAX, SPLITS_PER_ORDER_MAX,
    Approval, Contract, SplitRefused, cap_fen, check_contract,
)

STORE = "1900000201"
APPROVED_AT = datetime(2026, 3, 1, 9, 0, tzinfo=timezone.utc)
FROZEN = accounts.tenant_frozen(STORE)
AVAILABLE = accounts.tenant_available(STORE)
OWED_BY_GUIDES = accounts.tenant_owed_by_guides(STORE)
COMMISSION = accounts.MALL_COMMISSION
GUIDE = accounts.guide_rewards("g1")
GUIDE_CLAWBACK = accounts.guide_clawback("g1")
BRAND = accounts.receiver("1900000999")

# (account, returnable): the mall and a brand HQ are merchants and can return a share
# through the channel; a guide is a person and cannot.
RECEIVERS = [
    (COMMISSION, True), (BRAND, True), (accounts.receiver("1900000998"), True),
    (GUIDE, False), (accounts.guide_rewards("g2"), False),
]
RETURNABLE = dict(RECEIVERS)


def paid(paid_fen: int = 10_000, fee_fen: int = 0, max_ratio_bps: int = 3000) -> OrderFunds:
    return OrderFunds.paid(paid_fen, fee_fen, max_ratio_bps)


def split(funds: OrderFunds, *parts: tuple[str, int], succeeded: bool = True) -> OrderFunds:
    """Reserve one split of `parts` and apply the channel's result for each receiver."""
    funds = reserve_split(funds, [(account, RETURNABLE[account], fen) for account, fen in parts])
    for account, fen in parts:
        funds = record_split_result(funds, account, fen, succeeded=succeeded)
    return funds


def refused(operation, *args) -> SplitRefused:
    with pytest.raises(SplitRefused) as caught:
        operation(*args)
    return caught.value


def net(transfer: Transfer) -> dict[str, int]:
    return dict(zip(transfer.accounts, transfer.amounts_fen))


def lines(funds: OrderFunds) -> dict[str, tuple[int, int]]:
    return {line.account: (line.split_fen, line.back_fen) for line in funds.lines}


# -- paying ------------------------------------------------------------------------------

def test_a_paid_order_holds_everything_but_the_fee_frozen():
    funds = OrderFunds.paid(10_000, 60, 3000)
    assert (funds.frozen_fen, funds.cap_fen, funds.splittable_fen, funds.refundable_fen) == (9940, 3000, 3000, 10_000)


# -- splits: reserve, then settle ----------------------------------------------------------

def test_a_confirmed_split_leaves_the_frozen_money_for_its_receivers():
    funds = reserve_split(paid(), [(COMMISSION, True, 500), (GUIDE, False, 200)])
    assert (funds.reserved_fen, funds.frozen_fen, funds.splittable_fen) == (700, 10_000, 2300)
    funds = record_split_result(funds, GUIDE, 200, succeeded=True)  # results may come receiver by receiver
    funds = record_split_result(funds, COMMISSION, 500, succeeded=True)
    assert (funds.reserved_fen, funds.frozen_fen, funds.splittable_fen) == (0, 9300, 2300)
    assert lines(funds) == {COMMISSION: (500, 0), GUIDE: (200, 0)}
    assert net(postings.split_transfer(STORE, "S1", [(COMMISSION, 500), (GUIDE, 200)])) == {
        FROZEN: -700, COMMISSION: 500, GUIDE: 200}


def test_a_failed_split_gives_its_reservation_back_to_the_cap():
    funds = reserve_split(paid(), [(BRAND, True, 3000)])
    assert funds.splittable_fen == 0
    funds = record_split_result(funds, BRAND, 3000, succeeded=False)
    assert (funds.reserved_fen, funds.frozen_fen, funds.splittable_fen) == (0, 10_000, 3000)
    assert lines(funds) == {BRAND: (0, 0)}
    assert funds.splits_requested == 1  # the channel counts requests, failed ones too


def test_two_splits_in_flight_cannot_overspend_the_cap_together():
    funds = reserve_split(paid(), [(COMMISSION, True, 2000)])
    error = refused(reserve_split, funds, [(BRAND, True, 1001)])
    assert error.code == "ratio_exceeded"
    assert error.detail == {"cap": 3000, "already": 2000, "asked": 1001, "allowed": 1000, "reserved": 0}
    assert reserve_split(funds, [(BRAND, True, 1000)]).splittable_fen == 0


def test_a_split_above_the_cap_is_refused():
    error = refused(reserve_split, paid(9_999), [(BRAND, True, 3000)])  # cap = floor(2999.7)
    assert error.code == "ratio_exceeded" and error.detail["cap"] == 2999
    assert reserve_split(paid(9_999), [(BRAND, True, 2999)]).reserved_fen == 2999


def test_a_high_ratio_split_is_limited_by_the_frozen_money_not_only_the_cap():
    funds = OrderFunds.paid(10_000, channel_fee_fen(10_000, 60), 10_000)  # 100% cap, fee 60
    assert funds.splittable_fen == 9940
    error = refused(reserve_split, funds, [(BRAND, True, 9941)])
    assert error.code == "amount_exceeds_splittable" and error.detail == {"splittable": 9940}
    funds = split(funds, (BRAND, 9940))
    assert (funds.frozen_fen, funds.splittable_fen) == (0, 0)


def test_a_split_larger_than_what_a_refund_left_frozen_is_refused():
    _, funds = plan_refund(paid(), 8_000)
    assert (funds.frozen_fen, funds.splittable_fen) == (2000, 2000)
    assert refused(reserve_split, funds, [(BRAND, True, 2001)]).code == "amount_exceeds_splittable"


def test_a_split_after_the_unfreeze_is_refused():
    _, funds = unfreeze(paid())
    assert funds.splittable_fen == 0
    assert refused(reserve_split, funds, [(BRAND, True, 1)]).code == "order_unfrozen"


@pytest.mark.parametrize("receivers", [0, RECEIVERS_PER_SPLIT_MAX + 1])
def test_a_split_with_no_or_too_many_receivers_is_refused(receivers):
    parts = [(accounts.receiver(f"19{i:08d}"), True, 1) for i in range(receivers)]
    assert refused(reserve_split, paid(), parts).code == "receivers_out_of_range"


def test_a_split_to_fifty_receivers_is_accepted():
    parts = [(accounts.receiver(f"19{i:08d}"), True, 1) for i in range(RECEIVERS_PER_SPLIT_MAX)]
    assert reserve_split(paid(), parts).reserved_fen == 50


def test_the_51st_split_of_an_order_is_refused_even_when_earlier_ones_failed():
    funds = paid(100_000)
    for number in range(SPLITS_PER_ORDER_MAX):
        funds = split(funds, (BRAND, 1), succeeded=number % 2 == 0)
    assert funds.splits_requested == 50 and lines(funds) == {BRAND: (25, 0)}
    assert refused(reserve_split, funds, [(BRAND, True, 1)]).code == "too_many_splits"


@pytest.mark.parametrize("fen", [0, -5])
def test_a_split_part_that_is_not_positive_is_refused(fen):
    assert refused(reserve_split, paid(), [(COMMISSION, True, 100), (BRAND, True, fen)]).code == "amount_not_positive"


# -- unfreeze ------------------------------------------------------------------------------

def test_unfreeze_releases_what_is_left_frozen_to_the_store():
    funds = split(paid(10_000, 60), (COMMISSION, 500))
    released, funds = unfreeze(funds)
    assert (released, funds.frozen_fen, funds.unfrozen) == (9440, 0, True)
    assert net(postings.unfreeze_transfer(STORE, "U1", released)) == {FROZEN: -9440, AVAILABLE: 9440}


def test_unfreeze_twice_is_refused():
    _, funds = unfreeze(paid())
    assert refused(unfreeze, funds).code == "order_unfrozen"


def test_unfreeze_with_a_split_in_flight_is_refused():
    funds = reserve_split(paid(), [(BRAND, True, 100)])
    assert refused(unfreeze, funds).code == "split_in_flight"


def test_unfreeze_of_a_fully_refunded_order_is_refused_as_nothing_frozen():
    # Before this refusal unfreeze() answered 0 and unfreeze_transfer(0) crashed on an empty Transfer.
    _, funds = plan_refund(paid(10_000, 60), 10_000)
    assert funds.frozen_fen == 0
    assert refused(unfreeze, funds).code == "nothing_frozen"


def test_unfreeze_of_an_order_split_to_the_last_fen_is_refused_as_nothing_frozen():
    funds = split(paid(10_000, 60, max_ratio_bps=10_000), (BRAND, 9940))
    assert refused(unfreeze, funds).code == "nothing_frozen"


# -- refunds -------------------------------------------------------------------------------

@pytest.mark.parametrize("refund_fen", [0, -1])
def test_a_refund_that_is_not_positive_is_refused(refund_fen):
    assert refused(plan_refund, paid(), refund_fen).code == "amount_not_positive"


def test_refunds_above_what_is_left_to_refund_are_refused():
    assert refused(plan_refund, paid(), 10_001).code == "amount_exceeds_refundable"
    _, funds = plan_refund(paid(), 4000)
    error = refused(plan_refund, funds, 6001)
    assert error.code == "amount_exceeds_refundable" and error.detail == {"refundable": 6000}
    _, funds = plan_refund(funds, 6000)
    assert funds.refundable_fen == 0
    assert refused(plan_refund, funds, 1).code == "amount_exceeds_refundable"


def test_a_refund_with_a_split_in_flight_is_refused():
    funds = reserve_split(paid(), [(BRAND, True, 100)])
    assert refused(plan_refund, funds, 100).code == "split_in_flight"


def test_refunds_claw_splits_back_in_proportion_and_the_last_one_exactly():
    funds = split(paid(10_000, 60), (COMMISSION, 1000), (GUIDE, 500))
    assert funds.frozen_fen == 8440

    plan, funds = plan_refund(funds, 3333)
    # refunded 3333 of 10000: commission floor(333.3), guide floor(166.65), fee floor(19.998)
    assert plan == RefundPlan(refund_fen=3333, returns=((COMMISSION, 333),), owed=((GUIDE, 166),),
                              fee_back_fen=19, from_frozen_fen=3314, from_available_fen=0)
    released, funds = unfreeze(funds)
    assert released == 8440 - 3314

    plan, funds = plan_refund(funds, 6667)
    assert plan == RefundPlan(refund_fen=6667, returns=((COMMISSION, 667),), owed=((GUIDE, 334),),
                              fee_back_fen=41, from_frozen_fen=0, from_available_fen=6626)
    assert lines(funds) == {COMMISSION: (1000, 1000), GUIDE: (500, 500)}
    assert (funds.fee_refunded_fen, funds.refundable_fen) == (60, 0)


def test_refund_postings_move_exactly_the_plan():
    funds = split(paid(10_000, 60), (COMMISSION, 1000), (GUIDE, 500))
    _, funds = unfreeze(funds)
    plan, funds = plan_refund(funds, 10_000)
    assert net(postings.return_transfer(STORE, "R1-1", COMMISSION, 1000)) == {COMMISSION: -1000, AVAILABLE: 1000}
    assert net(postings.owed_transfer(STORE, "R1", list(plan.owed))) == {GUIDE_CLAWBACK: -500, OWED_BY_GUIDES: 500}
    assert net(postings.refund_transfer(STORE, "R1", plan)) == {
        AVAILABLE: -9940, accounts.CHANNEL_FEES: -60, accounts.PAYER: 10_000}


def test_a_refund_takes_the_orders_frozen_money_first_then_the_stores_available():
    funds = split(paid(10_000, 0), (GUIDE, 3000))  # 7000 frozen
    plan, funds = plan_refund(funds, 10_000)
    # The guide cannot give 3000 back through the channel: the store fronts it.
    assert (plan.from_frozen_fen, plan.from_available_fen, plan.owed) == (7000, 3000, ((GUIDE, 3000),))
    assert net(postings.refund_transfer(STORE, "R1", plan)) == {FROZEN: -7000, AVAILABLE: -3000, accounts.PAYER: 10_000}


def test_a_refund_of_one_fen_gives_back_no_fee_and_no_split():
    funds = split(paid(10_000, 60), (COMMISSION, 3000))
    plan, _ = plan_refund(funds, 1)
    assert plan == RefundPlan(refund_fen=1, returns=(), owed=(), fee_back_fen=0, from_frozen_fen=1,
                              from_available_fen=0)
    assert net(postings.refund_transfer(STORE, "R1", plan)) == {FROZEN: -1, accounts.PAYER: 1}


def test_a_refused_refund_gives_the_order_back_what_its_plan_took_but_returns_made():
    before = split(paid(10_000, 60), (COMMISSION, 1000), (GUIDE, 500))
    plan, funds = plan_refund(before, 4000)
    assert (plan.returns, plan.owed, plan.fee_back_fen, plan.from_frozen_fen) == (
        ((COMMISSION, 400),), ((GUIDE, 200),), 24, 3976)
    released, undone = undo_refund(funds, plan)
    # The commission's return was made (the money is with the store); the guide owes nothing.
    assert released == 0
    assert undone == replace(before, lines=tuple(replace(line, back_fen=400) if line.account == COMMISSION
                                                 else line for line in before.lines))
    assert lines(undone) == {COMMISSION: (1000, 400), GUIDE: (500, 0)}


def test_a_refund_closed_by_a_failed_split_return_gives_the_line_back_what_was_not_returned():
    before = split(paid(10_000, 60), (COMMISSION, 1000), (BRAND, 1500), (GUIDE, 500))
    plan, funds = plan_refund(before, 4000)
    assert (plan.returns, plan.owed) == (((COMMISSION, 400), (BRAND, 600)), ((GUIDE, 200),))
    # The commission's return was made; the brand's failed (or was never sent): the brand
    # still holds its whole split, the commission 600 of its 1000.
    _, undone = undo_refund(funds, plan, not_returned=((BRAND, 600),))
    assert lines(undone) == {COMMISSION: (1000, 400), BRAND: (1500, 0), GUIDE: (500, 0)}
    # Nothing returned at all: the order is as it was before the refund.
    assert undo_refund(funds, plan, not_returned=plan.returns) == (0, before)
    with pytest.raises(AssertionError):
        undo_refund(funds, plan, not_returned=((BRAND, 601),))  # more than the plan asked back


def test_a_refund_refused_after_an_unfreeze_releases_its_frozen_part_to_the_store():
    plan, funds = plan_refund(paid(10_000, 60), 4000)
    assert (plan.fee_back_fen, plan.from_frozen_fen) == (24, 3976)
    unfrozen, funds = unfreeze(funds)
    assert unfrozen == 9940 - 3976
    released, funds = undo_refund(funds, plan)
    assert released == 3976
    assert (funds.frozen_fen, funds.refunded_fen, funds.fee_refunded_fen, funds.unfrozen) == (0, 0, 0, True)


def test_a_return_at_the_malls_request_leaves_less_for_later_refunds_to_ask():
    funds = record_return(split(paid(10_000, max_ratio_bps=4000), (BRAND, 3000), (GUIDE, 1000)), BRAND, 1000)
    assert lines(funds) == {BRAND: (3000, 1000), GUIDE: (1000, 0)}
    plan, funds = plan_refund(funds, 5000)
    assert (plan.returns, plan.owed) == (((BRAND, 1000),), ((GUIDE, 500),))  # half of the 2000 it still holds


def test_the_channels_lower_cap_is_the_one_enforced():
    funds = paid(10_000, max_ratio_bps=5000)
    assert capped(funds, None) is funds and capped(funds, 6000) is funds
    assert capped(funds, 2000).cap_fen == 2000
    assert refused(reserve_split, capped(funds, 2000), [(BRAND, True, 2001)]).code == "ratio_exceeded"


def test_a_split_beyond_the_default_cap_uses_the_approval():
    funds = reserve_split(paid(10_000, max_ratio_bps=5000), [(BRAND, True, 3000)])
    assert not funds.uses_approval
    assert reserve_split(funds, [(COMMISSION, True, 1)]).uses_approval


def test_a_refused_unfreeze_freezes_the_money_again_and_a_release_with_nothing_frozen_marks_the_order():
    before = split(paid(10_000, 60), (BRAND, 1000))
    released, funds = unfreeze(before)
    assert undo_unfreeze(funds, released) == before
    _, emptied = plan_refund(paid(10_000, 0), 10_000)
    assert release_rest(emptied) == (0, replace(emptied, unfrozen=True))


def test_a_refund_refused_after_a_later_one_was_planned_keeps_the_fee_in_step():
    funds = paid(4, 1)
    first, funds = plan_refund(funds, 2)  # fee back floor(1 × 2/4) = 0
    second, funds = plan_refund(funds, 2)  # fee back floor(1 × 4/4) - 0 = 1
    assert (first.fee_back_fen, second.fee_back_fen) == (0, 1)
    _, funds = undo_refund(funds, first)  # the channel refused the first: 2 refunded, 1 of the fee back
    assert funds.fee_refunded_fen == 1
    third, funds = plan_refund(funds, 1)  # the rule says floor(1 × 3/4) = 0, but 1 is back already
    assert third.fee_back_fen == 0
    last, funds = plan_refund(funds, 1)  # the whole order refunded: the whole fee, once
    assert (last.fee_back_fen, funds.fee_refunded_fen, funds.refundable_fen) == (0, 1, 0)


def test_sql_reads_only_fields_that_a_refund_plan_has():
    """Queries that sum or list a plan's field in SQL (`plan->>'...'`) name it as the
    dataclass does, so renaming a field cannot silently read nulls."""
    root = Path(__file__).resolve().parents[2]
    named = {name for path in (root / "gateway").rglob("*.py") for name in
             re.findall(r"plan->>'(\w+)'", path.read_text())}
    named |= {name for package in ("splitting", "ledger") for path in (root / package).rglob("*.py")
              for name in re.findall(r"plan->>'(\w+)'", path.read_text())}
    assert named and named <= {field.name for field in fields(RefundPlan)}, named


def test_a_refund_draws_on_the_stores_available_balance_net_of_the_returns_it_brings():
    funds = split(paid(10_000, 60), (COMMISSION, 1000), (GUIDE, 500))
    _, funds = unfreeze(funds)
    plan, _ = plan_refund(funds, 10_000)
    assert (plan.from_available_fen, plan.returns) == (9940, ((COMMISSION, 1000),))
    assert plan.available_draw_fen == 8940  # the commission's return lands in available first
    plan, _ = plan_refund(split(paid(10_000), (COMMISSION, 3000)), 5000)
    assert (plan.from_frozen_fen, plan.available_draw_fen) == (5000, -1500)


def test_a_refunds_returns_come_from_the_newest_splits_first():
    splits = [("S1", [(BRAND, "b", 500), (COMMISSION, "m", 100)]), ("S2", [(BRAND, "b", 300)]),
              ("S3", [(COMMISSION, "m", 50)])]
    made = allocate_returns(((BRAND, 600), (COMMISSION, 120)), splits, {("S2", BRAND): 100})
    assert made == [("S2", BRAND, "b", 200), ("S1", BRAND, "b", 400), ("S3", COMMISSION, "m", 50),
                    ("S1", COMMISSION, "m", 70)]
    with pytest.raises(AssertionError):
        allocate_returns(((BRAND, 701),), splits, {("S2", BRAND): 100})


@st.composite
def paid_splits(draw):
    """Up to five finished splits to two merchants, part of each perhaps returned already."""
    splits, returned = [], {}
    for number in range(draw(st.integers(1, 5))):
        parts = []
        for account in draw(st.lists(st.sampled_from([BRAND, COMMISSION]), min_size=1, max_size=2, unique=True)):
            fen = draw(st.integers(1, 1000))
            parts.append((account, account[-4:], fen))
            returned[f"S{number}", account] = draw(st.integers(0, fen))
        splits.append((f"S{number}", parts))
    return splits, returned


@given(data=st.data(), paid=paid_splits())
def test_returns_cover_each_share_exactly_from_the_newest_splits_with_room(data, paid):
    splits, returned = paid
    room = Counter()
    for out_order_no, parts in splits:
        for account, _, fen in parts:
            room[account] += fen - returned[out_order_no, account]
    dues = tuple((account, data.draw(st.integers(1, room[account]))) for account in (BRAND, COMMISSION)
                 if room[account] > 0 and data.draw(st.booleans()))
    made = allocate_returns(dues, splits, returned)
    after, taken = Counter(returned), Counter()
    for out_order_no, account, mchid, fen in made:
        assert fen > 0 and mchid == account[-4:]
        after[out_order_no, account] += fen
        taken[account] += fen
    assert taken == Counter(dict(dues))
    for out_order_no, parts in splits:
        for account, _, fen in parts:
            assert after[out_order_no, account] <= fen, "a split gave back more than it paid"
    for account, _ in dues:  # an older split gives back only once every newer one is emptied
        used = {out_order_no for out_order_no, a, _, _ in made if a == account}
        oldest = min(i for i, (out_order_no, _) in enumerate(splits) if out_order_no in used)
        for out_order_no, parts in splits[oldest + 1:]:
            assert all(a != account or after[out_order_no, a] == fen for a, _, fen in parts)


def test_recovery_settles_part_of_what_a_guide_owes_the_store():
    assert net(postings.recovery_transfer(STORE, "S9", "g1", 120)) == {OWED_BY_GUIDES: -120, GUIDE_CLAWBACK: 120}


def test_the_cap_is_counted_on_the_gross_paid_amount_even_after_a_refund():
    """Current rule, pinned so that a change is deliberate: the cap is 30% of the gross, so
    after a refund of half the order the store can still split away 60% of what it kept,
    and after a refund of 90% all of it."""
    _, funds = plan_refund(paid(10_000), 5000)
    assert funds.splittable_fen == 3000
    _, funds = plan_refund(paid(10_000), 9000)
    assert funds.splittable_fen == 1000 == funds.frozen_fen


def test_returned_splits_do_not_give_cap_allowance_back():
    """Current rule, pinned: split returns do not reduce what counts against the cap."""
    funds = split(paid(10_000), (BRAND, 3000))
    _, funds = plan_refund(funds, 5000)
    assert lines(funds) == {BRAND: (3000, 1500)}
    assert (funds.split_away_fen, funds.splittable_fen) == (3000, 0)


def test_a_split_made_after_a_refund_answers_only_for_later_refunds():
    # With the earlier cumulative rule (split × refunded so far / paid) the guide owed 1500 here.
    _, funds = plan_refund(paid(10_000), 5000)
    funds = split(funds, (GUIDE, 3000))
    plan, funds = plan_refund(funds, 1)
    assert (plan.owed, plan.from_frozen_fen) == ((), 1)
    plan, funds = plan_refund(funds, 2500)  # half of the 4999 still refundable, floored
    assert plan.owed == ((GUIDE, 3000 * 2500 // 4999),) == ((GUIDE, 1500),)
    plan, funds = plan_refund(funds, funds.refundable_fen)
    assert plan.owed == ((GUIDE, 1500),) and lines(funds) == {GUIDE: (3000, 3000)}


def test_a_result_for_a_receiver_without_a_reservation_is_a_programming_error():
    funds = split(paid(), (BRAND, 100))
    funds = reserve_split(funds, [(COMMISSION, True, 100)])
    with pytest.raises(AssertionError):
        record_split_result(funds, BRAND, 100, succeeded=True)  # BRAND was split earlier, nothing in flight
    with pytest.raises(AssertionError):
        record_split_result(funds, COMMISSION, 101, succeeded=True)  # more than was reserved for it


def test_a_receiver_twice_in_one_split_is_refused():
    error = refused(reserve_split, paid(), [(BRAND, True, 100), (COMMISSION, True, 100), (BRAND, True, 1)])
    assert error.code == "receiver_twice"


def test_a_person_who_is_not_a_guide_is_refused_as_a_receiver():
    # Their share of a refund could be neither returned nor recovered: owed_transfer needs a guide.
    person = accounts.receiver("o-personal-openid")
    assert refused(reserve_split, paid(), [(person, False, 100)]).code == "personal_receiver_not_a_guide"


def test_a_guide_marked_returnable_is_refused():
    refused(reserve_split, paid(), [(GUIDE, True, 3000)])


# -- property: random histories of one order ---------------------------------------------

def assert_share(taken_fen: int, outstanding_fen: int, part_fen: int, remaining_fen: int) -> None:
    """`taken_fen` is `outstanding_fen × part / remaining` floored; all of it when part is all."""
    exact = Fraction(outstanding_fen * part_fen, remaining_fen)
    assert taken_fen <= exact < taken_fen + 1, (taken_fen, outstanding_fen, part_fen, remaining_fen)
    if part_fen == remaining_fen:
        assert taken_fen == outstanding_fen


class OrderHistory:
    """One order through the pure core, with every transfer of the way applied to a
    dict of balances, so the core's state and the ledger can be checked against each other.

    Money is conserved to the fen. With U the fen released by unfreezes, F and A the parts
    of refunds taken from the order's frozen money and from the store's available balance,
    and s, b each line's split_fen and back_fen:

        paid - fee = frozen + Σs + U + F            (where the store's share went)
        refunded   = F + A + fee_refunded           (what the shopper got back)

    hence  paid = frozen + Σ(s - b) + (U + Σb - A) + (fee - fee_refunded) + refunded,
    where U + Σb - A is what the store holds of this order outside the freeze: its
    available balance plus what its guides owe it.

    A refund may wait for the channel (`pending`): its split returns are made, but the
    guides' debt and the refund itself are posted only when the channel pays it; when the
    channel refuses it instead, `undo_refund` gives the order back what the plan took.
    F and A count pending plans too, so the ledger lags the funds by exactly those plans.
    """

    def __init__(self, paid_fen: int, fee_rate_bps: int, max_ratio_bps: int):
        fee_fen = channel_fee_fen(paid_fen, fee_rate_bps)
        payment = payment_transfer(sub_mchid=STORE, out_trade_no="T1", total_fen=paid_fen, fee_fen=fee_fen,
                                   profit_sharing=True)
        self.funds = OrderFunds.paid(paid_fen, fee_fen, max_ratio_bps)
        self.balances: Counter[str] = Counter()
        self.apply(payment, {accounts.PAYER: -paid_fen, FROZEN: self.funds.frozen_fen,
                             accounts.CHANNEL_FEES: self.funds.fee_fen})
        self.in_flight: list[list[tuple[str, bool, int]]] = []
        self.pending: list[RefundPlan] = []  # refunds the channel has not answered yet
        self.splits: list[tuple[str, list[tuple[str, str, int]]]] = []  # finished splits, as made
        self.returned: Counter[tuple[str, str]] = Counter()  # (split, account) -> returned from it
        self.last_plan: RefundPlan | None = None
        self.unfrozen_fen = self.from_frozen_fen = self.from_available_fen = 0
        self.serial = 0

    def apply(self, transfer: Transfer, expected: dict[str, int]) -> None:
        """Post `transfer` after checking it moves exactly `expected` (zero moves dropped)."""
        assert net(transfer) == {account: fen for account, fen in expected.items() if fen}, transfer
        self.balances.update(net(transfer))

    def next_ref(self, prefix: str) -> str:
        self.serial += 1
        return f"{prefix}{self.serial}"

    # -- steps: each checks the core's answer against an independent oracle --

    def reserve(self, parts: list[tuple[str, bool, int]]) -> None:
        f = self.funds
        total = sum(fen for _, _, fen in parts)
        expected = (
            "order_unfrozen" if f.unfrozen
            else "receivers_out_of_range" if not 1 <= len(parts) <= RECEIVERS_PER_SPLIT_MAX
            else "too_many_splits" if f.splits_requested >= SPLITS_PER_ORDER_MAX
            else "amount_not_positive" if any(fen <= 0 for *_, fen in parts)
            else "receiver_twice" if len({account for account, *_ in parts}) < len(parts)
            else "personal_receiver_not_a_guide" if any(not returnable and not account.startswith("guide:")
                                                        for account, returnable, _ in parts)
            else "amount_exceeds_splittable" if total > f.frozen_fen - f.reserved_fen
            else "ratio_exceeded" if f.split_away_fen + total > f.cap_fen
            else None)
        try:
            self.funds = reserve_split(f, parts)
        except SplitRefused as error:
            assert error.code == expected, (error.code, expected, parts)
            event(f"split refused: {error.code}")
            return
        assert expected is None, (expected, parts)
        assert self.funds.reserved_fen == f.reserved_fen + total
        assert self.funds.splits_requested == f.splits_requested + 1
        self.in_flight.append(parts)

    def settle(self, index: int, results: list[bool]) -> None:
        parts = self.in_flight.pop(index)
        confirmed = []
        for (account, _, fen), succeeded in zip(parts, results):
            self.funds = record_split_result(self.funds, account, fen, succeeded=succeeded)
            if succeeded:
                confirmed.append((account, fen))
        if confirmed:
            expected = Counter({FROZEN: -sum(fen for _, fen in confirmed)})
            for account, fen in confirmed:
                expected[account] += fen
            ref = self.next_ref("S")
            self.apply(postings.split_transfer(STORE, ref, confirmed), expected)
            self.splits.append((ref, [(account, account.split(":")[-1], fen) for account, fen in confirmed]))

    def unfreeze(self) -> None:
        f = self.funds
        expected = ("order_unfrozen" if f.unfrozen
                    else "split_in_flight" if f.reserved_fen
                    else "nothing_frozen" if f.frozen_fen == 0 else None)
        try:
            released, self.funds = unfreeze(f)
        except SplitRefused as error:
            assert error.code == expected
            event(f"unfreeze refused: {error.code}")
            return
        assert expected is None and released == f.frozen_fen and self.funds.frozen_fen == 0
        # The channel could refuse it: then the order is exactly as it was.
        assert undo_unfreeze(self.funds, released) == f
        # The channel releasing the rest on its own moves the same money.
        assert release_rest(f) == (released, self.funds)
        self.unfrozen_fen += released
        self.apply(postings.unfreeze_transfer(STORE, self.next_ref("U"), released),
                   {FROZEN: -released, AVAILABLE: released})

    def give_back(self, index: int, fraction: Fraction) -> None:
        """A merchant receiver returns part of what it still holds at the mall's request."""
        holding = [(ref, account, fen - self.returned[ref, account]) for ref, parts in self.splits
                   for account, _, fen in parts if RETURNABLE[account] and fen > self.returned[ref, account]]
        if not holding:
            return
        ref, account, room = holding[index % len(holding)]
        fen = max(1, int(room * fraction))
        f, self.funds = self.funds, record_return(self.funds, account, fen)
        assert self.funds == replace(f, lines=tuple(replace(l, back_fen=l.back_fen + fen) if l.account == account
                                                    else l for l in f.lines))
        self.returned[ref, account] += fen
        self.apply(postings.return_transfer(STORE, self.next_ref("RT"), account, fen), {account: -fen, AVAILABLE: fen})
        event("split returned at the mall's request")

    def refund(self, refund_fen: int, *, pending: bool = False) -> None:
        f = self.funds
        expected = ("amount_not_positive" if refund_fen <= 0
                    else "amount_exceeds_refundable" if refund_fen > f.refundable_fen
                    else "split_in_flight" if f.reserved_fen else None)
        try:
            plan, self.funds = plan_refund(f, refund_fen)
        except SplitRefused as error:
            assert error.code == expected, (error.code, expected)
            event(f"refund refused: {error.code}")
            return
        assert expected is None
        new = self.funds
        assert plan.refund_fen == refund_fen
        assert plan.from_frozen_fen + plan.from_available_fen + plan.fee_back_fen == refund_fen
        assert plan.from_frozen_fen == min(refund_fen - plan.fee_back_fen, f.frozen_fen)
        assert plan.fee_back_fen == new.fee_refunded_fen - f.fee_refunded_fen
        remaining = f.refundable_fen
        # Every split comes back in proportion to what is still refundable, floored, and the
        # last refund brings back exactly what is outstanding; the fee by the channel's own
        # cumulative rule: the share of the fee that the refunded total is of the order, or
        # what came back already when a refused refund left it ahead; never a negative fee back.
        assert new.fee_refunded_fen == max(f.fee_fen * new.refunded_fen // f.paid_fen, f.fee_refunded_fen)
        assert plan.fee_back_fen >= 0
        before, after = lines(f), lines(new)
        given_back = dict(plan.returns + plan.owed)
        assert len(given_back) == len(plan.returns) + len(plan.owed)
        for account, (split_fen, back_fen) in after.items():
            due = back_fen - before[account][1]
            assert due == given_back.get(account, 0) >= 0
            assert (account in dict(plan.returns)) <= RETURNABLE[account]
            assert (account in dict(plan.owed)) <= (not RETURNABLE[account])
            assert_share(due, split_fen - before[account][1], refund_fen, remaining)
        # Refused at once by the channel, the refund leaves the order exactly as it was,
        # but for the merchants' split returns already made (that money is with the store).
        returned = dict(plan.returns)
        # The refund row stores the plan as JSON and reads back the same plan; the JSON is
        # the one rows written before `to_json` existed hold.
        stored = json.loads(json.dumps(plan.to_json()))
        assert RefundPlan.from_json(stored) == plan and stored == json.loads(json.dumps(asdict(plan)))
        assert undo_refund(new, plan) == (0, replace(f, lines=tuple(
            replace(line, back_fen=line.back_fen + returned.get(line.account, 0)) for line in f.lines)))

        ref = self.next_ref("R")
        # Each receiver's share comes back from the splits that paid it, newest first.
        made = allocate_returns(plan.returns, self.splits, dict(self.returned))
        taken = Counter()
        for out_order_no, account, mchid, fen in made:
            assert fen > 0 and mchid == account.split(":")[-1]
            taken[account] += fen
            self.returned[out_order_no, account] += fen
            split_fen = next(fen for a, _, fen in dict(self.splits)[out_order_no] if a == account)
            assert self.returned[out_order_no, account] <= split_fen, "returned more than a split paid"
        assert taken == Counter(dict(plan.returns))
        for account in taken:  # newest first: an older split gives back only once every newer one is emptied
            used = {out_order_no for out_order_no, a, _, _ in made if a == account}
            oldest = min(i for i, (out_order_no, _) in enumerate(self.splits) if out_order_no in used)
            for out_order_no, parts in self.splits[oldest + 1:]:
                assert all(a != account or self.returned[out_order_no, a] == fen for a, _, fen in parts), \
                    "an older split gave back before a newer one was emptied"
        for number, (out_order_no, account, _, fen) in enumerate(made):
            self.apply(postings.return_transfer(STORE, f"{ref}-{number}", account, fen),
                       {account: -fen, AVAILABLE: fen})
        self.from_frozen_fen += plan.from_frozen_fen
        self.from_available_fen += plan.from_available_fen
        event("refund: " + ", ".join(name for name, fen in [
            ("returns", plan.returns), ("owed", plan.owed), ("fee back", plan.fee_back_fen),
            ("from frozen", plan.from_frozen_fen), ("from available", plan.from_available_fen)] if fen))
        self.last_plan = plan
        if pending:
            self.pending.append(plan)
            event("refund waits for the channel")
        else:
            self.paid_out(ref, plan)

    def paid_out(self, ref: str, plan: RefundPlan) -> None:
        """The channel paid the refund: the guides' shares become debt, the shopper is paid."""
        if plan.owed:
            expected_owed = Counter()
            for account, fen in plan.owed:
                expected_owed[account.replace(":rewards", ":clawback")] -= fen
                expected_owed[OWED_BY_GUIDES] += fen
            self.apply(postings.owed_transfer(STORE, ref, list(plan.owed)), expected_owed)
        self.apply(postings.refund_transfer(STORE, ref, plan), {
            FROZEN: -plan.from_frozen_fen, AVAILABLE: -plan.from_available_fen,
            accounts.CHANNEL_FEES: -plan.fee_back_fen, accounts.PAYER: plan.refund_fen})

    def end_refund(self, index: int, paid: bool) -> None:
        """The channel's answer to a pending refund, any of them: paid, or refused (CLOSED)
        and undone, also after later refunds were planned."""
        plan = self.pending[index]
        self.pending.pop(index)
        if paid:
            self.paid_out(self.next_ref("R"), plan)
            return
        f = self.funds
        released, self.funds = undo_refund(f, plan)
        new = self.funds
        # Undone exactly: what the plan took comes back, the returns made stay made.
        assert released == (plan.from_frozen_fen if f.unfrozen else 0)
        assert new.refunded_fen == f.refunded_fen - plan.refund_fen
        assert new.fee_refunded_fen == f.fee_refunded_fen - plan.fee_back_fen
        assert new.frozen_fen == f.frozen_fen + plan.from_frozen_fen - released
        owed = dict(plan.owed)
        assert lines(new) == {account: (split_fen, back_fen - owed.get(account, 0))
                              for account, (split_fen, back_fen) in lines(f).items()}
        assert (new.reserved_fen, new.unfrozen, new.splits_requested) == (f.reserved_fen, f.unfrozen,
                                                                            f.splits_requested)
        self.from_frozen_fen -= plan.from_frozen_fen
        self.from_available_fen -= plan.from_available_fen
        if released:  # unfrozen meanwhile: the channel released the plan's frozen part to the store
            self.unfrozen_fen += released
            self.apply(postings.unfreeze_transfer(STORE, self.next_ref("U"), released),
                       {FROZEN: -released, AVAILABLE: released})
        event("refund refused by the channel" + (" after an unfreeze" if released else ""))

    # -- invariants after every step --

    def check(self) -> None:
        f = self.funds
        split_fen = sum(line.split_fen for line in f.lines)
        back_fen = sum(line.back_fen for line in f.lines)
        assert 0 <= f.reserved_fen <= f.frozen_fen
        assert split_fen + f.reserved_fen == f.split_away_fen <= f.cap_fen == cap_fen(f.paid_fen, f.max_ratio_bps)
        assert f.cap_fen <= f.paid_fen
        assert 0 <= f.refunded_fen <= f.paid_fen and 0 <= f.fee_refunded_fen <= f.fee_fen
        assert all(0 <= line.back_fen <= line.split_fen for line in f.lines)
        for line in f.lines:  # what came back of each merchant's share is what its splits returned
            if line.returnable:
                assert line.back_fen == sum(fen for (_, account), fen in self.returned.items()
                                            if account == line.account)
        in_flight = Counter()
        for account, _, fen in sum(self.in_flight, []):
            in_flight[account] += fen
        assert sum(in_flight.values()) == f.reserved_fen
        assert {line.account: line.reserved_fen for line in f.lines if line.reserved_fen} == in_flight
        # conservation, see the class docstring
        assert f.paid_fen - f.fee_fen == f.frozen_fen + split_fen + self.unfrozen_fen + self.from_frozen_fen
        assert f.refunded_fen == self.from_frozen_fen + self.from_available_fen + f.fee_refunded_fen
        store_outside_freeze = self.unfrozen_fen + back_fen - self.from_available_fen
        assert f.paid_fen == (f.frozen_fen + (split_fen - back_fen) + store_outside_freeze
                              + (f.fee_fen - f.fee_refunded_fen) + f.refunded_fen)
        # the ledger tells the same story, but for the refunds still waiting for the channel
        b = self.balances
        waiting = Counter()
        for plan in self.pending:
            waiting.update({"refund": plan.refund_fen, "fee": plan.fee_back_fen, "frozen": plan.from_frozen_fen,
                            "available": plan.from_available_fen})
            waiting.update(dict(plan.owed))
        owed_waiting = sum(fen for account, fen in waiting.items() if account.startswith("guide:"))
        assert sum(b.values()) == 0
        assert b[accounts.PAYER] == -(f.paid_fen - f.refunded_fen + waiting["refund"])
        assert b[accounts.CHANNEL_FEES] == f.fee_fen - f.fee_refunded_fen + waiting["fee"]
        assert b[FROZEN] == f.frozen_fen + waiting["frozen"]
        assert b[AVAILABLE] + b[OWED_BY_GUIDES] == store_outside_freeze + waiting["available"] - owed_waiting
        for line in f.lines:
            if line.returnable:
                assert b[line.account] == line.split_fen - line.back_fen
            else:
                assert b[line.account] == line.split_fen  # a guide keeps the reward ...
                clawback = line.account.replace(":rewards", ":clawback")
                assert b[clawback] == -(line.back_fen - waiting[line.account])  # ... and owes
        assert b[OWED_BY_GUIDES] == sum(line.back_fen for line in f.lines if not line.returnable) - owed_waiting
        # splittable_fen is exactly what a new split may take
        if not f.unfrozen and f.splits_requested < SPLITS_PER_ORDER_MAX:
            if f.splittable_fen:
                reserve_split(f, [(BRAND, True, f.splittable_fen)])
            with pytest.raises(SplitRefused):
                reserve_split(f, [(BRAND, True, f.splittable_fen + 1)])
        # after a full refund everything came back exactly
        if f.refunded_fen == f.paid_fen:
            assert f.frozen_fen == 0 and f.fee_refunded_fen == f.fee_fen
            assert all(line.back_fen == line.split_fen for line in f.lines)
            assert store_outside_freeze == 0


PERSON = (accounts.receiver("o-personal-openid"), False)  # not a guide: every split naming them is refused
RECEIVER_ORDER = st.permutations(RECEIVERS)
PARTS = st.integers(1, 3)
AMOUNT_KIND = st.integers(0, 4)
ODDITY = st.integers(0, 9)


def split_parts(data, funds: OrderFunds) -> list[tuple[str, bool, int]]:
    """1 to 3 parts, mostly within what may be split, sometimes above it or the cap; now
    and then a receiver twice or a person who is not a guide."""
    count = data.draw(PARTS)
    receivers = data.draw(RECEIVER_ORDER)[:count]
    oddity = data.draw(ODDITY)
    if oddity == 0:
        receivers.append(receivers[0])
    elif oddity == 1:
        receivers[-1] = PERSON
    room = max(1, funds.splittable_fen // len(receivers))
    parts = []
    for receiver in receivers:
        kind = data.draw(AMOUNT_KIND)
        fen = room + 1 if kind == 4 else data.draw(st.integers(1, room if kind < 3 else max(1, funds.cap_fen)))
        parts.append((*receiver, fen))
    return parts


def refund_amount(data, funds: OrderFunds) -> int:
    """Partial, full, one fen, one fen too many, or nothing."""
    refundable = funds.refundable_fen
    kind = data.draw(st.integers(0, 5))
    if kind <= 1:
        return data.draw(st.integers(1, max(1, refundable)))
    return [refundable, 1, refundable + 1, 0][kind - 2]


STEPS = st.sampled_from(["reserve"] * 3 + ["settle"] * 3 + ["refund"] * 2 + ["unfreeze"] + ["refund_end"] * 2
                        + ["give_back"])


@st.composite
def contracts(draw) -> Contract:
    """A contract the rules accept: any cap, with a high-ratio approval above 30%."""
    max_ratio_bps = draw(st.integers(0, BPS_DENOMINATOR))
    approval = None
    if max_ratio_bps > DEFAULT_MAX_RATIO_BPS:
        approved_bps = draw(st.integers(max_ratio_bps, BPS_DENOMINATOR))
        approval = Approval("finance:lin", APPROVED_AT, "franchise brand", approved_bps)
    contract = Contract(commission_bps=0, max_ratio_bps=max_ratio_bps,
                        fee_rate_bps=draw(st.integers(0, FEE_RATE_BPS_MAX)), freeze_days=30, guide_reward_bps=0,
                        auto_split=True, approval=approval)
    check_contract(contract)
    return contract


@settings(max_examples=150, deadline=None)
@given(data=st.data(), paid_fen=st.integers(1, 10**8), contract=contracts())
def test_random_histories_conserve_money_and_keep_every_rule(data, paid_fen, contract):
    history = OrderHistory(paid_fen, contract.fee_rate_bps, contract.max_ratio_bps)
    history.check()
    for _ in range(data.draw(st.integers(0, 25), label="steps")):
        step = data.draw(STEPS)
        if step == "reserve":
            history.reserve(split_parts(data, history.funds))
        elif step == "settle" and history.in_flight:
            index = data.draw(st.integers(0, len(history.in_flight) - 1))  # results arrive in any order
            results = data.draw(st.lists(st.booleans(), min_size=len(history.in_flight[index]),
                                         max_size=len(history.in_flight[index])))
            history.settle(index, results)
        elif step == "unfreeze":
            history.unfreeze()
        elif step == "refund":
            history.refund(refund_amount(data, history.funds), pending=data.draw(st.booleans()))
        elif step == "give_back":
            history.give_back(data.draw(st.integers(0, 4)), data.draw(st.fractions(0, 1)))
        elif step == "refund_end" and history.pending:
            history.end_refund(data.draw(st.integers(0, len(history.pending) - 1)), data.draw(st.booleans()))
        history.check()
    while history.in_flight:
        history.settle(0, [True] * len(history.in_flight[0]))
        history.check()
    while history.pending:
        history.end_refund(0, True)
        history.check()
    if history.funds.refundable_fen:
        history.refund(history.funds.refundable_fen)
        history.check()
    assert history.funds.refunded_fen == paid_fen


# -- the gateway's own splits keep their room inside the cap ------------------------------------


def test_a_mall_split_cannot_take_the_room_set_aside_for_the_guide_and_the_commission():
    funds = OrderFunds.paid(10_000, 0, 3000, guide_reward_bps=200, commission_bps=500)
    assert (funds.reward_set_aside_fen, funds.commission_set_aside_fen) == (200, 500)
    assert funds.splittable_fen == 2300
    error = refused(reserve_split, funds, [(BRAND, True, 2301)])
    assert error.code == "ratio_exceeded"
    assert error.detail == {"asked": 2301, "allowed": 2300, "reserved": 700, "cap": 3000, "already": 0}
    funds = split(funds, (BRAND, 2300))
    # The reward then still fits, and its split ends the room kept for it.
    funds = reserve_split(funds, [(GUIDE, False, 200)], "guide_reward")
    assert (funds.reward_set_aside_fen, funds.commission_set_aside_fen) == (0, 500)
    funds = record_split_result(funds, GUIDE, 200, succeeded=True)
    funds = reserve_split(funds, [(COMMISSION, True, 500)], "commission")
    assert funds.set_aside_fen == 0 and funds.split_away_fen == 3000


def test_the_gateways_own_split_may_not_use_the_other_set_aside():
    funds = OrderFunds.paid(10_000, 0, 3000, guide_reward_bps=200, commission_bps=500)
    funds = split(funds, (BRAND, 2300))
    error = refused(reserve_split, funds, [(GUIDE, False, 201)], "guide_reward")
    assert (error.code, error.detail["allowed"], error.detail["reserved"]) == ("ratio_exceeded", 200, 500)


def test_giving_up_a_set_aside_frees_its_room_for_the_mall():
    funds = OrderFunds.paid(10_000, 0, 3000, guide_reward_bps=200, commission_bps=500)
    assert give_up(funds, "guide_reward").splittable_fen == 2500
    assert give_up(give_up(funds, "guide_reward"), "commission").splittable_fen == 3000


@given(paid_fen=st.integers(1, 10**9), max_ratio_bps=st.integers(0, 10_000),
       reward_bps=st.integers(0, 10_000), commission_bps=st.integers(0, 10_000))
def test_set_asides_never_exceed_the_cap(paid_fen, max_ratio_bps, reward_bps, commission_bps):
    reward, commission = set_asides_fen(paid_fen, max_ratio_bps, reward_bps, commission_bps)
    assert 0 <= reward and 0 <= commission
    assert reward + commission <= cap_fen(paid_fen, max_ratio_bps)
    if reward_bps + commission_bps <= max_ratio_bps:  # what check_contract guarantees
        assert (reward, commission) == (paid_fen * reward_bps // 10_000, paid_fen * commission_bps // 10_000)
