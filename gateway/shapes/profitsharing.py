"""Profit sharing in WeChat's shapes: split orders (answer, query, the stored result),
split returns, an order's unsplit amount, and the PROFITSHARING.* notification resource."""

from __future__ import annotations

from gateway.channel import ChannelSplitOrder
from gateway.shapes.notifications import Notice
from gateway.wire import to_wechat_time

RETURN_RESULT = {"PREPARED": "PROCESSING", "PROCESSING": "PROCESSING", "SUCCESS": "SUCCESS", "FAILED": "FAILED"}


def split_json(split, answer: ChannelSplitOrder | None = None) -> dict:
    """A split order in WeChat's shape, as the API answers it; `mall_info.approval_id`
    names the high-ratio approval the split used, when it went above 30 %."""
    details = {(d.type.value, d.account): d for d in (answer.receivers if answer else ())}
    receivers = []
    for part in split["parts"]:
        detail = details.get((part["type"], part["account"]))
        line = {"amount": part["amount"], "description": part["description"], "type": part["type"],
                "account": part["account"], "result": detail.result.value if detail else "PENDING"}
        if detail is not None:
            line["detail_id"] = detail.detail_id
            line["create_time"] = to_wechat_time(detail.created_at)
            if detail.finished_at:
                line["finish_time"] = to_wechat_time(detail.finished_at)
            if detail.fail_reason:
                line["fail_reason"] = detail.fail_reason
        receivers.append(line)
    return _split_order(split, answer.state.value if answer else "PROCESSING", receivers)


def closed_json(split, reason: str, now) -> dict:
    """A split that will not happen, answered as WeChat answers a split it refused:
    FINISHED, every receiver CLOSED with the reason."""
    receivers = [{"amount": p["amount"], "description": p["description"], "type": p["type"],
                  "account": p["account"], "result": "CLOSED", "fail_reason": reason,
                  "create_time": to_wechat_time(split["created_at"]), "finish_time": to_wechat_time(now)}
                 for p in split["parts"]]
    return _split_order(split, "FINISHED", receivers)


def split_answer(split) -> dict:
    """What the API answers for a split order row: the channel's result as recorded, or,
    before there is one, the request as sent."""
    return split["result"] or split_json(split)


def _split_order(split, state: str, receivers: list[dict]) -> dict:
    body = {"sub_mchid": split["sub_mchid"], "transaction_id": split["transaction_id"],
            "out_order_no": split["out_order_no"], "order_id": split["order_id"], "state": state,
            "receivers": receivers}
    if split["approval_id"] is not None:
        body["mall_info"] = {"approval_id": split["approval_id"]}
    return body


def split_notice(split, part: dict, fail_reason: str | None, now) -> Notice:
    """One receiver's line of a finished split, in WeChat's profit-sharing notification
    resource (`receiver`: type, account, amount, description): PROFITSHARING.SUCCESS when
    it was paid; else the mall's own PROFITSHARING.CLOSED, the same resource with
    `mall_info.fail_reason`."""
    resource = {
        "sp_mchid": split["mall_id"], "sub_mchid": split["sub_mchid"],
        "transaction_id": split["transaction_id"], "order_id": split["order_id"],
        "out_order_no": split["out_order_no"],
        "receiver": {"type": part["type"], "account": part["account"], "amount": part["amount"],
                     "description": part["description"]},
        "success_time": to_wechat_time(now),
    }
    if fail_reason is None:
        return Notice("PROFITSHARING.SUCCESS", "分账成功", "profitsharing", resource)
    resource["mall_info"] = {"fail_reason": fail_reason}
    return Notice("PROFITSHARING.CLOSED", "分账失败", "profitsharing", resource)


def return_json(row) -> dict:
    """A split return in WeChat's shape (the API's answer and query)."""
    result = row["result"] or {}
    body = {"sub_mchid": row["sub_mchid"], "order_id": result.get("order_id") or "",
            "out_order_no": row["out_order_no"], "out_return_no": row["out_return_no"],
            "return_id": row["return_id"] or "", "return_mchid": row["return_mchid"],
            "amount": row["amount_fen"], "description": "分账回退", "result": RETURN_RESULT[row["state"]],
            "create_time": to_wechat_time(row["created_at"])}
    if row["finished_at"]:
        body["finish_time"] = to_wechat_time(row["finished_at"])
    if result.get("fail_reason"):
        body["fail_reason"] = result["fail_reason"]
    return body


def unsplit_amount_json(transaction_id: str, funds) -> dict:
    """WeChat's unsplit_amount is what is still frozen (to split or to unfreeze); what the
    mall may still split within the cap, less what is kept for the gateway's own splits
    (guide reward, commission), is the mall's own field beside it."""
    return {"transaction_id": transaction_id,
            "unsplit_amount": 0 if funds.unfrozen else funds.frozen_fen,
            "mall_info": {"splittable_amount": funds.splittable_fen, "set_aside_amount": funds.set_aside_fen}}
