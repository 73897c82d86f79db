"""The statement core: how a transfer reads as a statement line, and the tie."""

from __future__ import annotations

import csv
import hashlib
import io
from datetime import date, datetime, timezone

import pytest

from ledger.money import yuan
from gateway.wire import json_bytes
from ledger.statement_formats import statement_csv, statement_json, statement_json_bytes
from ledger.statements import LedgerTransfer, PeriodError, build_statement, period_bounds

S = "1900000201"
FROZEN, AVAILABLE, SETTLED = f"tenant:{S}:frozen", f"tenant:{S}:available", f"tenant:{S}:settled"
DAY = date(2026, 11, 30)
AT = datetime(2026, 11, 30, 3, 0, tzinfo=timezone.utc)  # 11:00 in China


def _t(transfer_id, kind, entries, **ids):
    return LedgerTransfer(transfer_id=transfer_id, kind=kind, ref=f"{S}/K{transfer_id}", created_at=AT,
                          entries=tuple(entries), **ids)


DAY_OF_TRANSFERS = [
    _t(1, "payment", [("payer", -10_000), (FROZEN, 9_940), ("channel:fees", 60)], out_trade_no="O1",
       transaction_id="4200001"),
    _t(2, "split", [(FROZEN, -500), ("guide:G1:rewards", 200), ("mall:commission", 300)], split_purpose="api"),
    _t(3, "split_return", [("mall:commission", -100), (AVAILABLE, 100)]),
    _t(4, "unfreeze", [(FROZEN, -9_440), (AVAILABLE, 9_440)]),
    _t(5, "refund", [(AVAILABLE, -2_988), ("channel:fees", -12), ("payer", 3_000)]),
    _t(6, "payout", [(AVAILABLE, -5_000), (SETTLED, 5_000)]),
]


def test_china_days_are_half_open_utc_intervals():
    assert period_bounds(DAY, DAY) == (datetime(2026, 11, 29, 16, tzinfo=timezone.utc),
                                        datetime(2026, 11, 30, 16, tzinfo=timezone.utc))
    with pytest.raises(PeriodError):
        period_bounds(DAY, date(2026, 11, 29))
    with pytest.raises(PeriodError):
        period_bounds(date(2026, 1, 1), date(2026, 3, 1))


def test_each_transfer_lands_in_its_columns_and_the_day_ties():
    opening = {FROZEN: 0, AVAILABLE: 1_000, SETTLED: 0}
    closing = {FROZEN: 0, AVAILABLE: 1_000 + 100 + 9_440 - 2_988 - 5_000, SETTLED: 5_000}
    statement = build_statement(sub_mchid=S, from_on=DAY, to_on=DAY, transfers=DAY_OF_TRANSFERS,
                                opening_fen=opening, closing_fen=closing)
    payment, split, returned, unfrozen, refund, payout = (line.amounts_fen for line in statement.lines)
    assert (payment["gross"], payment["fee"], payment["net"]) == (10_000, 60, 9_940)
    assert (split["guide_rewards"], split["commission"], split["net"]) == (200, 300, -500)
    assert (returned["commission"], returned["net"]) == (-100, 100)
    assert unfrozen["net"] == 0
    assert (refund["gross"], refund["fee"], refund["net"]) == (-3_000, -12, -2_988)
    assert (payout["payout"], payout["net"]) == (5_000, -5_000)
    assert statement.totals_fen == {"gross": 7_000, "fee": 48, "commission": 200, "guide_rewards": 200,
                                    "other_splits": 0, "coupon_subsidy": 0, "payout": 5_000, "other": 0,
                                    "net": 1_552}
    assert statement.ties and all(t.ties for t in statement.accounts)
    assert "Ties to the ledger to the fen" in statement.tie_text and SETTLED in statement.tie_text


def test_a_statement_that_does_not_tie_says_so():
    statement = build_statement(sub_mchid=S, from_on=DAY, to_on=DAY, transfers=DAY_OF_TRANSFERS,
                                opening_fen={FROZEN: 0, AVAILABLE: 1_000, SETTLED: 0},
                                closing_fen={FROZEN: 0, AVAILABLE: 2_551, SETTLED: 5_000})
    assert not statement.ties
    assert statement.tie_text.startswith("DOES NOT tie") and AVAILABLE in statement.tie_text
    assert statement_json(statement)["ties_to_ledger"] is False


def test_mall_funded_coupon_subsidy_is_what_entered_the_receivable():
    receivable = f"tenant:{S}:coupon_receivable"
    subsidy = _t(7, "coupon_subsidy", [("mall:coupon_subsidy", -500), (receivable, 500)])
    paid_out = _t(8, "coupon_payout", [(receivable, -500), (AVAILABLE, 500)])
    statement = build_statement(sub_mchid=S, from_on=DAY, to_on=DAY, transfers=[subsidy, paid_out],
                                opening_fen={}, closing_fen={receivable: 0, AVAILABLE: 500})
    assert statement.totals_fen["coupon_subsidy"] == 500 and statement.totals_fen["net"] == 500
    assert statement.ties


def test_yuan_is_exact():
    assert [yuan(v) for v in (0, 1, -5, 1234, -100, 10**15 + 7)] == [
        "0.00", "0.01", "-0.05", "12.34", "-1.00", "10000000000000.07"]


def test_csv_is_a_wechat_style_bill():
    statement = build_statement(sub_mchid=S, from_on=DAY, to_on=DAY, transfers=DAY_OF_TRANSFERS[:1],
                                opening_fen={FROZEN: 0}, closing_fen={FROZEN: 9_940})
    raw = statement_csv(statement)
    assert raw.startswith("\ufeff".encode())
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
    header, line = rows[0], rows[1]
    assert header[0].startswith("交易时间") and all(v.startswith("`") for v in line)
    by_name = dict(zip(header, line))
    assert by_name["交易时间 time"] == "`2026-11-30 11:00:00"
    assert (by_name["收款金额 gross"], by_name["手续费 fee"], by_name["净额 net"]) == ("`100.00", "`0.60", "`99.40")
    assert by_name["商户订单号 out_trade_no"] == "`O1"
    assert rows[2][0].startswith("总笔数") and rows[3][0] == "`1"
    assert rows[-1][0].startswith("`Ties to the ledger")


def _untied_day():
    return build_statement(sub_mchid=S, from_on=DAY, to_on=DAY, transfers=DAY_OF_TRANSFERS,
                           opening_fen={FROZEN: 0, AVAILABLE: 1_000, SETTLED: 0},
                           closing_fen={FROZEN: 0, AVAILABLE: 2_551, SETTLED: 5_000})


def test_csv_bytes_stay_exactly_as_they_were():
    # The SHA-256 of the CSV this day rendered to before rendering got faster: not a byte moved.
    assert hashlib.sha256(statement_csv(_untied_day())).hexdigest() == (
        "db6c9c8a4eec673e8a541aa749fd35ff1ad840765300c5469937212717f3f63d")


def test_json_bytes_are_the_gateways_compact_utf8_json():
    odd = _t(9, "payment", [("payer", -1), (FROZEN, 1)], out_trade_no='O"逗,号\\n\u2028\x01', transaction_id=None)
    for statement in (_untied_day(), build_statement(sub_mchid=S, from_on=DAY, to_on=DAY, transfers=[odd],
                                                     opening_fen={}, closing_fen={FROZEN: 1})):
        assert statement_json_bytes(statement) == json_bytes(statement_json(statement))
    assert hashlib.sha256(statement_json_bytes(_untied_day())).hexdigest() == (
        "5eee561d857481fad3b460b82aeeb0d46b2503e8ad1ce4e53db186c66748f43f")
