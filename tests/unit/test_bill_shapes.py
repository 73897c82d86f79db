"""WeChat bill files: written and read back equal, whatever the column order, GZIP or BOM."""

from __future__ import annotations

import random

import pytest

from gateway.shapes import bills
from gateway.shapes.bills import FUNDFLOW, PROFITSHARING, TRADE, BillFormatError, fen_of, parse_bill, write_bill, yuan


def trade_row(i: int, fen: int) -> dict:
    row = {name: "" for name in TRADE.columns}
    row.update({"交易时间": "2026-11-29 10:00:00", "公众账号ID": "wx8888888888888888", "商户号": "1900000100",
                "特约商户号": "1900000201", "设备号": "", "微信订单号": f"42000000012026112900000000{i:02d}",
                "商户订单号": f"ORDER{i:06d}", "用户标识": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o", "交易类型": "JSAPI",
                "交易状态": "SUCCESS", "付款银行": "OTHERS", "货币种类": "CNY", "商品名称": "奶茶, 大杯",
                "商户数据包": "", "费率": "0.60%", "费率备注": "", "微信退款单号": "0", "商户退款单号": "0",
                "退款类型": "", "退款状态": ""})
    for name in TRADE.amount_columns:
        row[name] = 0
    row.update({"应结订单金额": fen, "订单金额": fen, "手续费": (fen * 60 + 5000) // 10000})
    return row


@pytest.mark.parametrize("fen,text", [(0, "0.00"), (1, "0.01"), (10, "0.10"), (12345, "123.45"), (-1, "-0.01"),
                                      (-100000, "-1000.00"), (10**15 + 7, "10000000000000.07")])
def test_yuan_is_exact_both_ways(fen, text):
    assert yuan(fen) == text
    assert fen_of(text) == fen


@pytest.mark.parametrize("text,fen", [("7", 700), ("0.5", 50), (" 1.20 ", 120)])
def test_short_yuan_forms_are_read(text, fen):
    assert fen_of(text) == fen


@pytest.mark.parametrize("text", ["", "1.234", "1e3", "¥1.00", "1,000.00", "0x10", "nan", "--1"])
def test_anything_else_is_not_an_amount(text):
    with pytest.raises(BillFormatError):
        fen_of(text)


def test_random_amounts_round_trip():
    rng = random.Random(7)
    for _ in range(2000):
        fen = rng.randrange(-10**12, 10**12)
        assert fen_of(yuan(fen)) == fen


def test_trade_bill_round_trips_with_backticks_and_summary():
    rows = [trade_row(i, 100 + i * 37) for i in range(5)]
    data = write_bill(TRADE, rows, bills.summarise(TRADE, rows))
    text = data.decode()
    assert text.splitlines()[0].split(",") == list(TRADE.columns)
    assert text.splitlines()[1].startswith("`2026-11-29 10:00:00,`wx8888")
    assert "`1.00" in text  # yuan, two decimals
    parsed = parse_bill(TRADE, data)
    assert parsed.rows == rows
    assert parsed.summary["总交易单数"] == "5"
    assert parsed.summary["应结订单总金额"] == sum(r["应结订单金额"] for r in rows)


def test_columns_are_read_by_name_not_position():
    rows = [trade_row(i, 999 + i) for i in range(3)]
    shuffled = list(TRADE.columns)
    random.Random(3).shuffle(shuffled)
    data = write_bill(TRADE, rows, bills.summarise(TRADE, rows), columns=shuffled + ["将来的新列"])
    parsed = parse_bill(TRADE, data)
    for got, want in zip(parsed.rows, rows):
        assert {k: got[k] for k in TRADE.columns} == want
        assert got["将来的新列"] == ""


def test_gzip_and_bom_are_accepted():
    rows = [trade_row(1, 5000)]
    plain = write_bill(TRADE, rows, bills.summarise(TRADE, rows))
    zipped = write_bill(TRADE, rows, bills.summarise(TRADE, rows), gzip_it=True)
    assert zipped[:2] == b"\x1f\x8b" and zipped != plain
    with_bom = "\ufeff".encode() + plain
    assert parse_bill(TRADE, zipped).rows == parse_bill(TRADE, plain).rows == parse_bill(TRADE, with_bom).rows == rows


def test_empty_day_has_header_and_zero_summary():
    data = write_bill(FUNDFLOW, [], bills.summarise(FUNDFLOW, []))
    parsed = parse_bill(FUNDFLOW, data)
    assert parsed.rows == []
    assert parsed.summary == {"资金流水总笔数": "0", "收入笔数": "0", "收入金额": 0, "支出笔数": "0", "支出金额": 0}


def test_profitsharing_and_fundflow_round_trip():
    split = {"分账发起时间": "2026-11-29 10:00:00", "分账发起方": "1900000100", "分账出资方": "1900000201",
             "微信订单号": "4200000001", "微信分账/回退单号": "30080000", "商户分账/回退单号": "GR4200000001",
             "分账明细单号": "3601000", "分账接收方": "1900000100", "分账金额": 321,
             "业务类型": bills.SPLIT_BUSINESS, "处理状态": "SUCCESS", "分账描述": "商场佣金"}
    parsed = parse_bill(PROFITSHARING, write_bill(PROFITSHARING, [split], bills.summarise(PROFITSHARING, [split])))
    assert parsed.rows == [split] and parsed.summary["分账总金额"] == 321
    payout = {"记账时间": "2026-11-30 09:00:00", "微信支付业务单号": "PO1", "资金流水单号": "FF1",
              "业务名称": "提现", "业务类型": bills.PAYOUT_BUSINESS, "收支类型": bills.EXPENSE,
              "收支金额(元)": 123456, "账户结余(元)": 0, "资金变更提交申请人": "system", "备注": "T+1",
              "业务凭证号": "PO1"}
    parsed = parse_bill(FUNDFLOW, write_bill(FUNDFLOW, [payout], bills.summarise(FUNDFLOW, [payout])))
    assert parsed.rows == [payout] and parsed.summary["支出金额"] == 123456


@pytest.mark.parametrize("mangle", [
    lambda text: text.replace("商户订单号", "订单编号"),  # a needed column is missing
    lambda text: text.split("总交易单数")[0],  # no summary
    lambda text: text.replace("`1.00", "`1.001"),  # not an amount
    lambda text: "",
])
def test_broken_bills_are_refused(mangle):
    rows = [trade_row(1, 100)]
    text = write_bill(TRADE, rows, bills.summarise(TRADE, rows)).decode()
    with pytest.raises(BillFormatError):
        parse_bill(TRADE, mangle(text).encode())


def test_broken_gzip_is_refused():
    zipped = write_bill(TRADE, [], bills.summarise(TRADE, []), gzip_it=True)
    with pytest.raises(BillFormatError):
        parse_bill(TRADE, zipped[:-6])
