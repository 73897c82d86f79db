"""A refund in WeChat's shape: the API's answer and query, and the REFUND.* resource."""

from __future__ import annotations

from gateway.shapes.notifications import Notice
from gateway.wire import to_wechat_time
from splitting.funds import RefundPlan

STATUS = {"PREPARED": "PROCESSING", "PROCESSING": "PROCESSING", "SUCCESS": "SUCCESS", "ABNORMAL": "ABNORMAL",
          "CLOSED": "CLOSED"}
USER_RECEIVED_ACCOUNT = "支付用户零钱"
EVENTS = {"SUCCESS": ("REFUND.SUCCESS", "退款成功"), "ABNORMAL": ("REFUND.ABNORMAL", "退款异常"),
          "CLOSED": ("REFUND.CLOSED", "退款关闭")}


def refund_json(row) -> dict:
    """A refund in WeChat's shape (the API's answer and query)."""
    plan = RefundPlan.from_json(row["plan"])
    body = {
        "refund_id": row["refund_id"], "out_refund_no": row["out_refund_no"],
        "transaction_id": row["transaction_id"], "out_trade_no": row["out_trade_no"],
        "channel": "ORIGINAL", "user_received_account": USER_RECEIVED_ACCOUNT,
        "create_time": to_wechat_time(row["created_at"]), "status": STATUS[row["state"]],
        # Where the store's part came from: the order's frozen (unsettled) money, or, once
        # that ran short, the store's available balance.
        "funds_account": "AVAILABLE" if plan.from_available_fen > 0 else "UNSETTLED",
        "amount": {"total": row["total_fen"], "refund": row["amount_fen"], "payer_total": row["total_fen"],
                   "payer_refund": row["amount_fen"], "settlement_total": row["total_fen"],
                   "settlement_refund": row["amount_fen"], "discount_refund": 0, "currency": "CNY",
                   "refund_fee": plan.fee_back_fen},
    }
    if row["success_at"]:
        body["success_time"] = to_wechat_time(row["success_at"])
    return body


def refund_resource(row) -> dict:
    """The decrypted resource of REFUND.SUCCESS / ABNORMAL / CLOSED."""
    body = refund_json(row)
    return {
        "sp_mchid": row["mall_id"], "sub_mchid": row["sub_mchid"], "out_trade_no": row["out_trade_no"],
        "transaction_id": row["transaction_id"], "out_refund_no": row["out_refund_no"],
        "refund_id": row["refund_id"], "refund_status": body["status"],
        "success_time": body.get("success_time"), "user_received_account": USER_RECEIVED_ACCOUNT,
        "amount": {k: body["amount"][k] for k in ("total", "refund", "payer_total", "payer_refund")},
    }


def refund_notice(row) -> Notice:
    """The refund's end (SUCCESS, ABNORMAL or CLOSED), as the client is told it."""
    event_type, summary = EVENTS[row["state"]]
    return Notice(event_type, summary, "refund", refund_resource(row))
