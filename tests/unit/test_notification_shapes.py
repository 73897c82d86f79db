"""gateway/shapes: a notification says what the API's query answers. The TRANSACTION.SUCCESS
resource is the paid order's query answer; a refund's REFUND.* resource carries the
query's status and amounts; a split's line names the split as its query does."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from gateway.shapes.profitsharing import split_json, split_notice
from gateway.shapes.refunds import refund_json, refund_notice
from gateway.shapes.transactions import order_json, paid_notice
from splitting.funds import RefundPlan

AT = datetime(2026, 11, 30, 8, 0, tzinfo=timezone.utc)
ORDER = {"sp_appid": "wx8888888888888888", "mall_id": "1900000100", "sub_mchid": "1900000201",
         "out_trade_no": "ORDER-0001", "state": "NOTPAY", "payer_sp_openid": "oShopper", "payer_sub_openid": None,
         "total_fen": 1000, "currency": "CNY", "sub_appid": None, "attach": None, "mall_info": {}}
PAID = {"transaction_id": "4200000001", "bank_type": "OTHERS", "success_at": AT, "payer_total_fen": 1000}


def test_the_payment_notice_is_the_paid_orders_query_answer():
    notice = paid_notice(ORDER, PAID)
    assert (notice.event_type, notice.summary, notice.original_type) == ("TRANSACTION.SUCCESS", "支付成功", "transaction")
    assert notice.resource == {**order_json({**ORDER, **PAID, "state": "SUCCESS"}), "mall_info": {}}
    assert notice.resource["trade_state"] == "SUCCESS" and notice.resource["success_time"] == "2026-11-30T16:00:00+08:00"


REFUND = {"refund_id": "5000000001", "out_refund_no": "R-1", "transaction_id": "4200000001",
          "out_trade_no": "ORDER-0001", "mall_id": "1900000100", "sub_mchid": "1900000201", "created_at": AT,
          "total_fen": 1000, "amount_fen": 400, "success_at": None,
          # the plan as refund rows store it
          "plan": RefundPlan(refund_fen=400, returns=(), owed=(), fee_back_fen=2, from_frozen_fen=398,
                             from_available_fen=0).to_json()}


@pytest.mark.parametrize("state, event_type", [("SUCCESS", "REFUND.SUCCESS"), ("ABNORMAL", "REFUND.ABNORMAL"),
                                               ("CLOSED", "REFUND.CLOSED")])
def test_a_refunds_end_says_what_its_query_says(state, event_type):
    row = {**REFUND, "state": state, "success_at": AT if state == "SUCCESS" else None}
    notice = refund_notice(row)
    answer = refund_json(row)
    assert (notice.event_type, notice.original_type) == (event_type, "refund")
    assert notice.resource["refund_status"] == answer["status"] == state
    assert notice.resource["amount"] == {k: answer["amount"][k] for k in ("total", "refund", "payer_total",
                                                                          "payer_refund")}
    assert notice.resource.get("success_time") == answer.get("success_time")


SPLIT = {"mall_id": "1900000100", "sub_mchid": "1900000201", "transaction_id": "4200000001",
         "order_id": "3000000001", "out_order_no": "P-1", "approval_id": None, "created_at": AT,
         "parts": [{"type": "MERCHANT_ID", "account": "1900000100", "amount": 50, "description": "佣金"}]}


def test_a_split_line_names_the_split_as_its_query_does():
    part = SPLIT["parts"][0]
    paid, refused = split_notice(SPLIT, part, None, AT), split_notice(SPLIT, part, "NO_RELATION", AT)
    assert (paid.event_type, refused.event_type) == ("PROFITSHARING.SUCCESS", "PROFITSHARING.CLOSED")
    answer = split_json(SPLIT)
    for name in ("sub_mchid", "transaction_id", "order_id", "out_order_no"):
        assert paid.resource[name] == answer[name]
    assert paid.resource["receiver"] == {k: answer["receivers"][0][k] for k in ("type", "account", "amount",
                                                                                "description")}
    assert "mall_info" not in paid.resource and refused.resource["mall_info"] == {"fail_reason": "NO_RELATION"}
