"""Unit tests of the channel's transformers and of the emulator's wire shapes they read.

(Named test_emulator_* because of file ownership; the subject is `gateway.channel.transformers`
plus the emulator's `transaction_json`, which must round-trip through it.)
"""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from gateway.channel import (
    BillNotReady, ChannelError, ChannelNotFound, ChannelOrderRequest, ChannelTradeState, SplitNotReady,
)
from gateway.channel import transformers as tf
from gateway.wire import to_wechat_time
from emulator.state import Order, transaction_json

NOW = datetime(2026, 3, 1, 2, 30, 15, tzinfo=timezone.utc)


def order_request(**changes) -> ChannelOrderRequest:
    values = dict(
        sp_appid="wx8888888888888888", sp_mchid="1900000100", sub_mchid="1900000109", sub_appid=None,
        description="Store A - coffee", out_trade_no="MALL20260301000001", total_fen=2599, currency="CNY",
        payer_sp_openid="o-sp-openid", payer_sub_openid=None, notify_url="https://mall.example/notify",
        profit_sharing=True, time_expire=None, attach=None,
    )
    values.update(changes)
    return ChannelOrderRequest(**values)


def emulator_order(**changes) -> Order:
    values = dict(
        sp_appid="wx8888888888888888", sp_mchid="1900000100", sub_appid=None, sub_mchid="1900000109",
        out_trade_no="MALL20260301000001", description="coffee", attach="tag", notify_url="https://x/n",
        total_fen=2599, currency="CNY", payer_sp_openid="o-sp", payer_sub_openid=None, profit_sharing=False,
        expire_at=None, created_at=NOW, request_fingerprint="{}", prepay_id="wx1",
    )
    values.update(changes)
    return Order(**values)


def test_jsapi_body_uses_partner_field_names_and_fen():
    body = tf.jsapi_order_body(order_request())
    assert body == {
        "sp_appid": "wx8888888888888888",
        "sp_mchid": "1900000100",
        "sub_mchid": "1900000109",
        "description": "Store A - coffee",
        "out_trade_no": "MALL20260301000001",
        "notify_url": "https://mall.example/notify",
        "amount": {"total": 2599, "currency": "CNY"},
        "payer": {"sp_openid": "o-sp-openid"},
        "settle_info": {"profit_sharing": True},
    }


def test_jsapi_body_sub_openid_payer_and_optional_fields():
    body = tf.jsapi_order_body(order_request(
        sub_appid="wxsub", payer_sp_openid=None, payer_sub_openid="o-sub",
        time_expire="2026-03-01T12:00:00+08:00", attach="guide=7",
    ))
    assert body["payer"] == {"sub_openid": "o-sub"}
    assert body["sub_appid"] == "wxsub"
    assert body["time_expire"] == "2026-03-01T12:00:00+08:00"
    assert body["attach"] == "guide=7"


def test_wechat_time_is_read_as_utc_and_written_in_china_time():
    parsed = tf.parse_wechat_time("2018-06-08T10:34:56+08:00")
    assert parsed == datetime(2018, 6, 8, 2, 34, 56, tzinfo=timezone.utc)
    assert to_wechat_time(parsed) == "2018-06-08T10:34:56+08:00"
    with pytest.raises(tf.UnexpectedChannelResponse):
        tf.parse_wechat_time("2018-06-08T10:34:56")  # no offset: ambiguous, refused
    with pytest.raises(tf.UnexpectedChannelResponse):
        tf.parse_wechat_time("yesterday")


def test_paid_query_answer_maps_to_trade():
    trade = tf.trade_from({
        "sp_appid": "wx8888888888888888", "sp_mchid": "1900000100", "sub_mchid": "1900000109",
        "out_trade_no": "MALL1", "transaction_id": "4200000985202103031441826014", "trade_type": "JSAPI",
        "trade_state": "SUCCESS", "trade_state_desc": "支付成功", "bank_type": "CMC", "attach": "",
        "success_time": "2021-03-03T14:41:00+08:00", "payer": {"sp_openid": "o-sp", "sub_openid": "o-sub"},
        "amount": {"total": 100, "payer_total": 90, "currency": "CNY", "payer_currency": "CNY"},
    })
    assert trade.state is ChannelTradeState.SUCCESS
    assert (trade.total_fen, trade.payer_total_fen) == (100, 90)
    assert trade.transaction_id == "4200000985202103031441826014"
    assert trade.success_at == datetime(2021, 3, 3, 6, 41, tzinfo=timezone.utc)
    assert (trade.payer_sp_openid, trade.payer_sub_openid) == ("o-sp", "o-sub")
    assert trade.bank_type == "CMC"


def test_unpaid_query_answer_has_no_payment_fields():
    trade = tf.trade_from({
        "sp_mchid": "1900000100", "sub_mchid": "1900000109", "out_trade_no": "MALL1",
        "trade_state": "NOTPAY", "amount": {"total": 100, "currency": "CNY"}, "payer": {},
    })
    assert trade.state is ChannelTradeState.NOTPAY
    assert trade.transaction_id is None and trade.success_at is None and trade.payer_total_fen is None


@pytest.mark.parametrize("damage", [
    {"trade_state": "SOMETHING_NEW"},
    {"amount": {"total": 1.5}},
    {"amount": {"total": True}},
    {"amount": {"total": -1}},
    {"amount": None},
    {"out_trade_no": None},
    {"success_time": "not a time"},
])
def test_malformed_answers_are_refused(damage):
    data = {
        "sp_mchid": "1900000100", "sub_mchid": "1900000109", "out_trade_no": "MALL1",
        "trade_state": "NOTPAY", "amount": {"total": 100, "currency": "CNY"},
    }
    data.update(damage)
    with pytest.raises(tf.UnexpectedChannelResponse):
        tf.trade_from(data)


@pytest.mark.parametrize(("status", "body", "code", "retryable", "kind"), [
    (400, {"code": "PARAM_ERROR", "message": "amount.total 无效"}, "PARAM_ERROR", False, ChannelError),
    (400, {"code": "ORDERPAID", "message": "该订单已支付"}, "ORDERPAID", False, ChannelError),
    (401, {"code": "SIGN_ERROR", "message": "签名错误"}, "SIGN_ERROR", False, ChannelError),
    (404, {"code": "ORDER_NOT_EXIST", "message": "订单不存在"}, "ORDER_NOT_EXIST", False, ChannelNotFound),
    (429, {"code": "FREQUENCY_LIMITED", "message": "频率超限"}, "FREQUENCY_LIMITED", True, ChannelError),
    (500, {"code": "SYSTEM_ERROR", "message": "系统错误"}, "SYSTEM_ERROR", True, ChannelError),
    (502, None, "HTTP_502", True, ChannelError),
    (403, ["not", "an", "object"], "HTTP_403", False, ChannelError),
    # A split asked for too soon: WeChat's text is the only sign, and it is read once, here.
    (400, {"code": "INVALID_REQUEST", "message": "订单处理中，暂时无法分账，请稍后重试"}, "ORDER_NOT_READY", False,
     SplitNotReady),
    (400, {"code": "INVALID_REQUEST", "message": "订单处理中，请稍后重试"}, "ORDER_NOT_READY", False, SplitNotReady),
    (400, {"code": "INVALID_REQUEST", "message": "分账次数过多"}, "INVALID_REQUEST", False, ChannelError),
    (403, {"code": "RULE_LIMIT", "message": "分账金额超出最大分账比例"}, "RULE_LIMIT", False, ChannelError),
    (403, {"code": "NOT_ENOUGH", "message": "余额不足"}, "NOT_ENOUGH", False, ChannelError),
    (400, {"code": "STATEMENT_CREATING", "message": "账单生成中"}, "STATEMENT_CREATING", True, BillNotReady),
])
def test_error_answers_keep_code_and_hide_upstream_text(status, body, code, retryable, kind):
    error = tf.error_from(status, body)
    assert type(error) is kind
    assert (error.code, error.retryable, error.http_status) == (code, retryable, status)
    if isinstance(body, dict):
        assert body["message"] not in str(error) and body["message"] not in error.message
        assert "处理中" not in str(error)


def test_emulator_query_json_round_trips_through_transformers():
    order = emulator_order()
    unpaid = tf.trade_from(transaction_json(order))
    assert unpaid.state is ChannelTradeState.NOTPAY and unpaid.transaction_id is None

    order.mark_paid("4200000000202603010000000001", NOW)
    paid = tf.trade_from(transaction_json(order))
    assert paid.state is ChannelTradeState.SUCCESS
    assert paid.transaction_id == "4200000000202603010000000001"
    assert paid.success_at == NOW
    assert (paid.total_fen, paid.payer_total_fen, paid.bank_type) == (2599, 2599, "OTHERS")


def test_emulator_query_json_matches_wechat_partner_shape():
    order = emulator_order(sub_appid="wxsub", payer_sp_openid=None, payer_sub_openid="o-sub")
    order.mark_paid("4200000000202603010000000001", NOW)
    data = transaction_json(order)
    assert set(data) == {
        "sp_appid", "sp_mchid", "sub_appid", "sub_mchid", "out_trade_no", "transaction_id", "trade_type",
        "trade_state", "trade_state_desc", "bank_type", "attach", "success_time", "payer", "amount",
    }
    assert data["trade_type"] == "JSAPI"
    assert data["success_time"] == "2026-03-01T10:30:15+08:00"
    assert data["amount"] == {"total": 2599, "payer_total": 2599, "currency": "CNY", "payer_currency": "CNY"}
    assert data["payer"] == {"sub_openid": "o-sub"}
