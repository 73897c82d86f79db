"""Unit tests of the split and refund transformers, and of the emulator's JSON for splits,
returns and refunds read back through them (two separate readings of WeChat's docs)."""

from __future__ import annotations

import random
from datetime import datetime, timezone

import pytest

from gateway.channel import (
    ChannelReceiver,
    ChannelReceiverType,
    ChannelRefundRequest,
    ChannelRefundState,
    ChannelSplitReceiver,
    ChannelSplitRequest,
    ChannelSplitResult,
    ChannelSplitReturnRequest,
    ChannelSplitReturnResult,
    ChannelSplitState,
)
from gateway.channel import transformers as tf
from gateway.channel import transformers_refunds as tf_refunds
from gateway.channel import transformers_splits as tf_splits
from emulator.refund_book import Refund, refund_json, refund_notice_resource
from emulator.split_book import SplitLine, SplitOrder, SplitReturn, split_order_json, split_return_json
from emulator.state import new_refund_id, new_split_detail_id, new_split_order_id

NOW = datetime(2026, 3, 1, 2, 30, 15, tzinfo=timezone.utc)


def sealed(text: str) -> str:
    return f"<sealed {text}>"


def split_request(**changes) -> ChannelSplitRequest:
    values = dict(
        sub_mchid="1900000109", appid="wx8888888888888888", sub_appid=None,
        transaction_id="4208450740201411110007820472", out_order_no="P20150806125346", unfreeze_unsplit=True,
        receivers=(
            ChannelSplitReceiver(ChannelReceiverType.MERCHANT_ID, "1900000100", 300, "mall commission"),
            ChannelSplitReceiver(ChannelReceiverType.PERSONAL_OPENID, "o-guide", 88, "guide reward", name="张三"),
        ),
    )
    values.update(changes)
    return ChannelSplitRequest(**values)


def test_split_body_uses_wechat_names_and_encrypts_only_names():
    assert tf_splits.split_order_body(split_request(), sealed) == {
        "sub_mchid": "1900000109", "appid": "wx8888888888888888",
        "transaction_id": "4208450740201411110007820472", "out_order_no": "P20150806125346",
        "unfreeze_unsplit": True,
        "receivers": [
            {"type": "MERCHANT_ID", "account": "1900000100", "amount": 300, "description": "mall commission"},
            {"type": "PERSONAL_OPENID", "account": "o-guide", "amount": 88, "description": "guide reward",
             "name": "<sealed 张三>"},
        ],
    }
    assert tf_splits.split_order_body(split_request(sub_appid="wxsub"), sealed)["sub_appid"] == "wxsub"


def test_split_body_refuses_more_than_fifty_receivers_before_sending():
    line = ChannelSplitReceiver(ChannelReceiverType.MERCHANT_ID, "1900000100", 1, "x")
    with pytest.raises(AssertionError):
        tf_splits.split_order_body(split_request(receivers=(line,) * 51), sealed)


def test_receiver_and_return_and_unfreeze_bodies():
    receiver = ChannelReceiver("1900000109", "wx8888888888888888", None, ChannelReceiverType.MERCHANT_ID,
                               "1900000301", "品牌总部", "CUSTOM", custom_relation="品牌方")
    assert tf_splits.receiver_add_body(receiver, sealed) == {
        "sub_mchid": "1900000109", "appid": "wx8888888888888888", "type": "MERCHANT_ID",
        "account": "1900000301", "relation_type": "CUSTOM", "custom_relation": "品牌方", "name": "<sealed 品牌总部>",
    }
    assert tf_splits.split_return_body(ChannelSplitReturnRequest(
        "1900000109", None, "3008450740201411110007820472", "R20190516001", "1900000301", 10, "用户退款",
    )) == {"sub_mchid": "1900000109", "order_id": "3008450740201411110007820472", "out_return_no": "R20190516001",
           "return_mchid": "1900000301", "amount": 10, "description": "用户退款"}
    assert tf_splits.unfreeze_body("1900000109", "42", "U1", "解冻") == {
        "sub_mchid": "1900000109", "transaction_id": "42", "out_order_no": "U1", "description": "解冻"}


def test_emulator_split_order_reads_back_pending_then_finished():
    rng = random.Random(3)
    line = SplitLine("PERSONAL_OPENID", "o-guide", 88, "guide reward", new_split_detail_id(rng), NOW)
    order = SplitOrder("1900000100", "1900000109", "4208450740201411110007820472", "P1", new_split_order_id(rng),
                       "split", "{}", NOW, [line], unfreeze_unsplit=False)
    pending = tf_splits.split_order_from(split_order_json(order))
    assert pending.state is ChannelSplitState.PROCESSING
    assert (pending.receivers[0].result, pending.receivers[0].finished_at) == (ChannelSplitResult.PENDING, None)
    line.result, line.fail_reason, line.finished_at, order.state = "CLOSED", "ACCOUNT_ABNORMAL", NOW, "FINISHED"
    done = tf_splits.split_order_from(split_order_json(order))
    assert (done.receivers[0].result, done.receivers[0].fail_reason, done.receivers[0].finished_at) == (
        ChannelSplitResult.CLOSED, "ACCOUNT_ABNORMAL", NOW)
    assert len(done.order_id) == 28 and done.order_id.isdigit()


def test_emulator_split_return_reads_back():
    split_return = SplitReturn("1900000109", "3008", "P1", "R1", "3008999", "1900000301", 10, "refund", "{}", NOW,
                               "SUCCESS", None, NOW)
    parsed = tf_splits.split_return_from(split_return_json(split_return))
    assert (parsed.result, parsed.amount_fen, parsed.finished_at) == (ChannelSplitReturnResult.SUCCESS, 10, NOW)


def test_emulator_refund_and_its_notice_read_back():
    refund = Refund("1900000100", "1900000109", "RF1", new_refund_id(random.Random(1), NOW), "42", "OUT1", None,
                    None, "UNSETTLED", 3_333, 10_000, 19, "{}", NOW)
    parsed = tf_refunds.refund_from(refund_json(refund))
    assert (parsed.status, parsed.refund_fen, parsed.refund_fee_fen, parsed.success_at) == (
        ChannelRefundState.PROCESSING, 3_333, 19, None)
    assert len(parsed.refund_id) == 29 and parsed.refund_id.startswith("5000")
    refund.status, refund.success_at = "SUCCESS", NOW
    notice = tf_refunds.refund_notice_from("EV-1", "REFUND.SUCCESS", refund_notice_resource(refund))
    assert (notice.status, notice.success_at, notice.refund_fen) == (ChannelRefundState.SUCCESS, NOW, 3_333)
    with pytest.raises(tf.UnexpectedChannelResponse):
        tf_refunds.refund_notice_from("EV-1", "REFUND.ABNORMAL", refund_notice_resource(refund))


def test_refund_body():
    request = ChannelRefundRequest("1900000109", None, "OUT1", "RF1", 100, 1_000, "CNY", "尺码不合适",
                                   "https://mall.example/notify")
    assert tf_refunds.refund_body(request) == {
        "sub_mchid": "1900000109", "out_trade_no": "OUT1", "out_refund_no": "RF1", "reason": "尺码不合适",
        "notify_url": "https://mall.example/notify", "amount": {"refund": 100, "total": 1_000, "currency": "CNY"},
    }


def test_bad_shapes_are_unexpected_responses():
    good = {"transaction_id": "42", "unsplit_amount": 5}
    assert tf_splits.unsplit_fen_from(good, "42") == 5
    for bad in ({**good, "transaction_id": "43"}, {**good, "unsplit_amount": -1}, {**good, "unsplit_amount": "5"}):
        with pytest.raises(tf.UnexpectedChannelResponse):
            tf_splits.unsplit_fen_from(bad, "42")
    with pytest.raises(tf.UnexpectedChannelResponse):
        tf_splits.max_ratio_bps_from({"sub_mchid": "1", "max_ratio": 10_001}, "1")
