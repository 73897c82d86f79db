"""An order in WeChat's transaction shape: the query answer and the TRANSACTION.SUCCESS
resource are the same JSON, built here for both the API and the outbox."""

from __future__ import annotations

from gateway.shapes.notifications import Notice
from gateway.wire import to_wechat_time

TRADE_STATE_DESC = {"NOTPAY": "未支付", "SUCCESS": "支付成功", "CLOSED": "已关闭"}


def order_json(row) -> dict:
    """An order in WeChat's partner query shape, plus the mall's own `mall_info`."""
    body = {
        "sp_appid": row["sp_appid"], "sp_mchid": row["mall_id"], "sub_mchid": row["sub_mchid"],
        "out_trade_no": row["out_trade_no"], "trade_type": "JSAPI",
        "trade_state": row["state"], "trade_state_desc": TRADE_STATE_DESC[row["state"]],
        "payer": _payer(row),
        "amount": {"total": row["total_fen"], "currency": row["currency"]},
    }
    if row["sub_appid"]:
        body["sub_appid"] = row["sub_appid"]
    if row["attach"] is not None:
        body["attach"] = row["attach"]
    if row["state"] == "SUCCESS":
        body["transaction_id"] = row["transaction_id"]
        body["bank_type"] = row["bank_type"]
        body["success_time"] = to_wechat_time(row["success_at"])
        body["amount"].update(payer_total=row["payer_total_fen"], payer_currency=row["currency"])
    if row["mall_info"]:
        body["mall_info"] = row["mall_info"]
    return body


def transaction_resource(order, paid: dict) -> dict:
    """The decrypted resource of TRANSACTION.SUCCESS: the order as a query will show it once
    paid (`paid`: the columns the payment sets), with mall_info always present."""
    resource = order_json({**dict(order), **paid, "state": "SUCCESS"})
    resource["mall_info"] = dict(order["mall_info"])
    return resource


def paid_notice(order, paid: dict) -> Notice:
    return Notice("TRANSACTION.SUCCESS", "支付成功", "transaction", transaction_resource(order, paid))


def created_json(prepay_id: str, pay_params: dict) -> dict:
    """The answer to an order's creation, kept and given again to every duplicate."""
    return {"prepay_id": prepay_id, "mall_info": {"pay_params": pay_params}}


def _payer(row) -> dict:
    if row["payer_sub_openid"]:
        return {"sub_openid": row["payer_sub_openid"]}
    return {"sp_openid": row["payer_sp_openid"]}
