"""Bills end to end: the real WeChatPayChannel downloads the emulator's trade, profit-sharing
and fund-flow bills (signed answer, SHA-1 checked, GZIP opened, fund-flow decrypted), the
bill of day D is there only from 10:00 on D+1, an empty day is NO_STATEMENT_EXIST, and
the daily T+1 payout empties each store's available balance into its fund-flow bill."""

from __future__ import annotations

from datetime import datetime, time, timedelta

import pytest

from emulator import keys as emulator_keys
from emulator.wire import CHINA_TZ
from gateway.channel import ChannelError
from gateway.channel.bills import TRADE_BILL, SplitLineKind, TradeLineKind
from gateway.channel.client import WeChatPayChannel
from gateway.channel.transport import SignedTransport
from tests.integration.test_channel_splits import (  # noqa: F401 -- fixtures shared with the split tests
    MERCHANT,
    SP_MCHID,
    STORE,
    World,
    start_world,
)


def china_day(w: World):
    """Tomorrow noon, China time, with the emulator's payouts starting there: a day whose
    payments are all paid out at 06:00 the day after, whatever the real time of the run."""
    day = w.clock().astimezone(CHINA_TZ).date() + timedelta(days=1)
    move_to(w, day, 12)
    w.emulator.app[emulator_keys.BILLS].payouts.start(w.clock())
    return day


def move_to(w: World, day, hour: int) -> None:
    w.clock.now = datetime.combine(day, time(hour), tzinfo=CHINA_TZ)


async def test_trade_bill_lists_payments_and_refunds_with_fees(start_world):
    w = await start_world()
    day = china_day(w)
    _, paid_tx = await w.paid_order(10_000, profit_sharing=False)
    out_trade_no, _ = await w.paid_order(2_345, profit_sharing=False)
    with pytest.raises(ChannelError) as early:
        await w.channel.trade_lines(day)
    assert early.value.code == "STATEMENT_CREATING" and early.value.retryable
    move_to(w, day + timedelta(days=1), 10)
    lines = await w.channel.trade_lines(day)
    assert sorted((l.kind, l.amount_fen, l.fee_fen, l.state) for l in lines) == [
        (TradeLineKind.PAYMENT, 2_345, 14, "SUCCESS"), (TradeLineKind.PAYMENT, 10_000, 60, "SUCCESS")]
    assert {l.transaction_id for l in lines} >= {paid_tx}
    assert all(l.sub_mchid == STORE and l.at.date() == day for l in lines)
    assert await w.channel.trade_lines(day, STORE) == lines
    assert await w.channel.trade_lines(day, "1900009999") == []  # nothing for that store: an empty day
    assert await w.channel.trade_lines(day - timedelta(days=3)) == []
    w.assert_money_accounted_for()


async def test_profit_sharing_bill_lists_split_lines(start_world):
    w = await start_world()
    day = china_day(w)
    await w.add_receivers()
    _, tx = await w.paid_order(10_000)
    await w.split(tx, "SPLIT0001", (MERCHANT, SP_MCHID, 500))
    await w.finished(tx, "SPLIT0001")
    move_to(w, day + timedelta(days=1), 11)
    lines = await w.channel.split_lines(day, STORE)
    assert [(l.kind, l.out_order_no, l.receiver, l.amount_fen, l.state) for l in lines] == [
        (SplitLineKind.SPLIT, "SPLIT0001", SP_MCHID, 500, "SUCCESS")]
    w.assert_money_accounted_for()


async def test_payouts_empty_available_balances_into_the_fund_flow_bill(start_world):
    w = await start_world()
    day = china_day(w)
    await w.paid_order(10_000, profit_sharing=False)
    await w.paid_order(5_000, profit_sharing=False)
    assert (await w.store_funds())[0] == 9_940 + 4_970
    move_to(w, day + timedelta(days=2), 10)  # paid out at 06:00 on D+1, that bill ready at 10:00 on D+2
    payouts = await w.channel.payout_lines(STORE, day + timedelta(days=1))
    assert [(p.sub_mchid, p.amount_fen) for p in payouts] == [(STORE, 14_910)]
    assert payouts[0].paid_at == datetime.combine(day + timedelta(days=1), time(6), tzinfo=CHINA_TZ)
    assert (await w.store_funds())[0] == 0
    assert await w.channel.payout_lines(STORE, day + timedelta(days=1)) == payouts  # read twice, same lines
    assert await w.channel.payout_lines(STORE, day) == []
    w.assert_money_accounted_for()


async def test_gzip_bills_and_tampered_lines(start_world):
    w = await start_world()
    day = china_day(w)
    out_a, _ = await w.paid_order(1_000, profit_sharing=False)
    out_b, _ = await w.paid_order(2_000, profit_sharing=False)
    move_to(w, day + timedelta(days=1), 10)
    for action in ({"action": "drop", "match": {"商户订单号": out_a}},
                   {"action": "alter_amount", "match": {"商户订单号": out_b}, "amount_fen": 2_001},
                   {"action": "alter_fee", "match": {"商户订单号": out_b}, "fee_fen": 99}):
        await w.sandbox("POST", "/sandbox/bills/tamper", {"bill": "trade", "bill_date": day.isoformat(), **action})
    raw = await w.channel.bill_file(TRADE_BILL, day, None)
    assert raw[:2] != b"\x1f\x8b" and raw.decode().count("\n") == 4  # header, one line, summary header and row
    lines = await w.channel.trade_lines(day)
    assert [(l.out_trade_no, l.amount_fen, l.fee_fen) for l in lines] == [(out_b, 2_001, 99)]


async def test_a_download_url_off_the_channel_is_not_followed(start_world, credentials):
    w = await start_world()
    with pytest.raises(ChannelError) as refused:
        await w.channel._http.download("http://198.51.100.7/v3/billdownload/file?token=x", 1000)
    assert not refused.value.retryable
    other = WeChatPayChannel(SignedTransport(credentials[0], str(w.emulator.make_url("")), w.session, 5.0, w.clock))
    assert await other.trade_lines(china_day(w) - timedelta(days=5)) == []
    w.assert_money_accounted_for()
