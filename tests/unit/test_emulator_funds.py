"""Unit tests of the emulator's money model: fees, the frozen/available split, refunds'
fee rule, the automatic unfreeze, bounds -- and that every fen stays accounted for."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from emulator.funds import Funds, FundsFull, fee_for, fee_refunded_after

PAID_AT = datetime(2026, 3, 1, 2, 0, tzinfo=timezone.utc)
STORE = "1900000201"
MALL = "1900000100"


def funds(**changes) -> Funds:
    values = dict(fee_rate_bps=60, freeze_days=30, trades_max=100, merchants_max=10)
    values.update(changes)
    return Funds(**values)


def pay(book: Funds, transaction_id: str = "4200000001", total_fen: int = 10_000, *, profit_sharing: bool = True,
        sub_mchid: str = STORE, paid_at: datetime = PAID_AT):
    return book.settle_payment(transaction_id=transaction_id, sp_mchid=MALL, sub_mchid=sub_mchid,
                               out_trade_no=f"OUT{transaction_id}", total_fen=total_fen,
                               profit_sharing=profit_sharing, paid_at=paid_at)


@pytest.mark.parametrize(("total_fen", "fee_fen"), [
    (10_000, 60), (1, 0), (83, 0), (84, 1), (250, 2), (249, 1), (1_000_000, 6_000),
])
def test_fee_is_sixty_bps_rounded_half_up_per_order(total_fen, fee_fen):
    assert fee_for(total_fen, 60) == fee_fen


def test_profit_sharing_order_stays_frozen_others_settle_available():
    book = funds()
    frozen = pay(book, "T1", 10_000)
    pay(book, "T2", 5_000, profit_sharing=False)
    assert (frozen.fee_fen, frozen.unsplit_fen) == (60, 9_940)
    assert book.frozen_fen(STORE) == 9_940
    assert book.available_fen(STORE) == 5_000 - 30
    book.check_balanced()


def test_split_lines_pay_receivers_and_closed_lines_come_back():
    book = funds()
    trade = pay(book)
    book.hold_split(trade, to_others_fen=3_000, to_store_fen=0)
    assert (trade.unsplit_fen, trade.split_to_others_fen, book.in_flight_fen) == (6_940, 3_000, 3_000)
    book.check_balanced()
    book.pay_receiver(trade, "MERCHANT_ID", MALL, 2_000)
    book.undo_split_line(trade, "PERSONAL_OPENID", "o-guide", 1_000)
    assert book.received_fen("MERCHANT_ID", MALL) == 2_000
    assert (trade.unsplit_fen, trade.split_to_others_fen, book.in_flight_fen) == (7_940, 2_000, 0)
    assert book.release(trade) == 7_940
    assert (book.available_fen(STORE), trade.unsplit_fen, trade.closing) == (7_940, 0, True)
    book.check_balanced()


def test_split_return_moves_money_from_the_receiver_to_the_store():
    book = funds()
    trade = pay(book)
    book.hold_split(trade, 1_000, 0)
    book.pay_receiver(trade, "MERCHANT_ID", MALL, 1_000)
    assert not book.take_back(STORE, MALL, 1_001)
    assert book.take_back(STORE, MALL, 400)
    assert (book.received_fen("MERCHANT_ID", MALL), book.available_fen(STORE)) == (600, 400)
    book.check_balanced()


def test_refund_fee_rule_is_cumulative_and_a_full_refund_returns_the_whole_fee():
    # fee 60 on 10000: refunds of 3333 + 3333 + 3334 give back 19 + 20 + 21 = 60 (not 19 * 3).
    assert [fee_refunded_after(60, 10_000, r) for r in (0, 3_333, 6_666, 10_000)] == [0, 19, 39, 60]
    book = funds()
    trade = pay(book)
    backs = [book.take_for_refund(trade, part, available_only=False) for part in (3_333, 3_333, 3_334)]
    assert [fee for fee, _ in backs] == [19, 20, 21]
    assert (trade.unsplit_fen, trade.refunded_fen, book.fees_kept_fen) == (0, 10_000, 0)
    book.check_balanced()


def test_refund_takes_the_frozen_order_first_then_available_else_nothing():
    book = funds()
    pay(book, "OTHER", 2_000, profit_sharing=False)  # 1988 available (fee 12)
    trade = pay(book, "T1", 10_000)
    book.hold_split(trade, 3_000, 0)  # 6940 left frozen
    book.pay_receiver(trade, "MERCHANT_ID", MALL, 3_000)
    # Full refund needs 10000 - 60 = 9940 net: 6940 frozen + 1988 available = 8928 -> refused.
    assert book.take_for_refund(trade, 10_000, available_only=False) is None
    assert (trade.unsplit_fen, book.available_fen(STORE), trade.refunded_fen) == (6_940, 1_988, 0)
    # 8000 (net 7952) fits: 6940 from the order, 1012 from available.
    assert book.take_for_refund(trade, 8_000, available_only=False) == (48, 6_940)
    assert (trade.unsplit_fen, book.available_fen(STORE)) == (0, 976)
    book.check_balanced()


def test_refund_from_available_only_leaves_the_frozen_money_alone():
    book = funds()
    trade = pay(book)
    assert book.take_for_refund(trade, 100, available_only=True) is None
    pay(book, "OTHER", 1_000, profit_sharing=False)
    assert book.take_for_refund(trade, 100, available_only=True) == (0, 0)
    assert trade.unsplit_fen == 9_940


def test_sweep_unfreezes_orders_frozen_past_freeze_days_and_only_those():
    book = funds(freeze_days=30)
    first = pay(book, "T1", paid_at=PAID_AT)
    second = pay(book, "T2", paid_at=PAID_AT + timedelta(days=1))
    assert book.sweep(PAID_AT + timedelta(days=30) - timedelta(seconds=1)) == 0
    assert book.sweep(PAID_AT + timedelta(days=30)) == 1
    assert (first.unsplit_fen, first.closing, second.unsplit_fen, second.closing) == (0, True, 9_940, False)
    assert book.available_fen(STORE) == 9_940
    assert book.sweep(PAID_AT + timedelta(days=31)) == 1
    assert book.frozen_fen(STORE) == 0
    book.check_balanced()


def test_a_forgotten_frozen_order_releases_its_money_first():
    book = funds(trades_max=2)
    pay(book, "T1")
    pay(book, "T2")
    pay(book, "T3")
    assert book.trade("T1") is None and book.available_fen(STORE) == 9_940
    book.check_balanced()


def test_stores_beyond_merchants_max_are_refused_without_change():
    book = funds(merchants_max=1)
    pay(book, "T1")
    with pytest.raises(FundsFull):
        pay(book, "T2", sub_mchid="1900000299")
    assert book.trade("T2") is None and not book.knows_merchant("1900000299")


@given(st.integers(min_value=1, max_value=10**9), st.lists(st.integers(min_value=1, max_value=10**6), max_size=20),
       st.integers(min_value=0, max_value=10_000))
def test_refunded_fees_never_exceed_the_fee_and_sum_to_it_when_fully_refunded(total_fen, parts, bps):
    fee_fen = fee_for(total_fen, bps)
    refunded, given_back = 0, 0
    for part in parts:
        part = min(part, total_fen - refunded)
        if part == 0:
            break
        given_back += fee_refunded_after(fee_fen, total_fen, refunded + part) - \
            fee_refunded_after(fee_fen, total_fen, refunded)
        refunded += part
    assert 0 <= given_back <= fee_fen
    assert fee_refunded_after(fee_fen, total_fen, total_fen) == fee_fen
