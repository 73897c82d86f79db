"""Split returns (分账回退): POST /v3/profitsharing/return-orders and its query.

WeChat's rules: only money that a split *successfully* sent to a MERCHANT_ID receiver can
come back (a person's share cannot); at most what that receiver got from that split minus
what it already returned (403 NOT_ENOUGH 剩余可回退的金额不足); at most 20 returns per
receiver of a split; within `split_return_window_days` of the split (WeChat: 180 days).
Returns are processed synchronously (WeChat: 此接口采用同步处理模式), so the answer is
SUCCESS; the money goes back to the store's available balance. Reusing out_return_no with
the same request answers the same return, with another 400 INVALID_REQUEST.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import structlog
from aiohttp import web

from emulator import fields
from emulator.notify import EVENT_PROFITSHARING_RETURN
from emulator.profitsharing import BASE, Context, context_of, not_found, notify_split
from emulator.split_book import (
    FAILED, FINISHED, KIND_SPLIT, MERCHANT_ID, SUCCESS, SplitOrder, SplitReturn, split_return_json,
)
from emulator.state import new_split_order_id
from emulator.wire import EmulatorError, json_response, param_error, read_json_object, required_query

log = structlog.get_logger(__name__)
routes = web.RouteTableDef()

RETURNS_PER_RECEIVER_MAX = 20  # WeChat: 对同一个分账接收方最多能发起20次分账回退请求
FAIL_REASON_BALANCE_NOT_ENOUGH = "BALANCE_NOT_ENOUGH"


@routes.post(BASE + "/return-orders")
async def create_return(request: web.Request) -> web.Response:
    body = await read_json_object(request)
    ctx = context_of(request)
    wanted = _validated_return(body)
    existing = ctx.book.split_return(wanted["sub_mchid"], wanted["out_return_no"])
    if existing is not None:
        if existing.fingerprint != fields.fingerprint(wanted):
            raise EmulatorError(400, "INVALID_REQUEST", "商户回退单号重复，且请求参数与原请求不一致")
        return json_response(split_return_json(existing))
    order = _returnable_order(ctx, wanted)
    account, amount_fen = wanted["return_mchid"], wanted["amount"]
    if order.returns.get(account, 0) >= RETURNS_PER_RECEIVER_MAX:
        raise EmulatorError(400, "INVALID_REQUEST", "对同一分账接收方的回退次数已达上限")
    if amount_fen > order.merchant_received_fen(account) - order.returned_fen.get(account, 0):
        raise EmulatorError(403, "NOT_ENOUGH", "剩余可回退的金额不足")
    done = ctx.funds.take_back(order.sub_mchid, account, amount_fen)
    split_return = SplitReturn(
        sub_mchid=order.sub_mchid, order_id=order.order_id, out_order_no=order.out_order_no,
        out_return_no=wanted["out_return_no"], return_id=new_split_order_id(ctx.config.rng),
        return_mchid=account, amount_fen=amount_fen, description=wanted["description"],
        fingerprint=fields.fingerprint(wanted), created_at=ctx.now,
        result=SUCCESS if done else FAILED, fail_reason=None if done else FAIL_REASON_BALANCE_NOT_ENOUGH,
        finished_at=ctx.now,
    )
    order.returns[account] = order.returns.get(account, 0) + 1
    if done:
        order.returned_fen[account] = order.returned_fen.get(account, 0) + amount_fen
    ctx.book.add_return(split_return)
    log.info("emulator.split_returned", sub_mchid=order.sub_mchid, out_return_no=split_return.out_return_no,
             result=split_return.result, fen=amount_fen)
    trade = ctx.funds.trade(order.transaction_id)
    if done and trade is not None:
        notify_split(request.app, order, trade, EVENT_PROFITSHARING_RETURN, split_return.return_id,
                     split_return.out_return_no, account, amount_fen, split_return.description, ctx.now)
    return json_response(split_return_json(split_return))


@routes.get(BASE + "/return-orders/{out_return_no}")
async def query_return(request: web.Request) -> web.Response:
    ctx = context_of(request)
    sub_mchid, out_order_no = required_query(request, "sub_mchid", "out_order_no")
    split_return = ctx.book.split_return(sub_mchid, request.match_info["out_return_no"])
    if split_return is None or split_return.out_order_no != out_order_no:
        raise not_found()
    ctx.own(ctx.book.order(sub_mchid, out_order_no))  # returns are seen through their split order
    return json_response(split_return_json(split_return))


def _returnable_order(ctx: Context, wanted: dict[str, Any]) -> SplitOrder:
    if wanted["out_order_no"] is not None:
        found = ctx.book.order(wanted["sub_mchid"], wanted["out_order_no"])
    else:
        found = ctx.book.order_by_id(wanted["order_id"])
    order = ctx.own(found)
    if order.sub_mchid != wanted["sub_mchid"]:
        raise not_found()
    has_merchant_line = any(line.type == MERCHANT_ID and line.account == wanted["return_mchid"]
                            for line in order.lines)
    if order.kind != KIND_SPLIT or not has_merchant_line:
        raise EmulatorError(400, "INVALID_REQUEST", "只能对原分账请求中成功分给商户接收方进行回退")
    if order.state != FINISHED:
        raise EmulatorError(400, "INVALID_REQUEST", "分账单处理中，请在分账完成后回退")
    finished_at = order.finished_at()
    assert finished_at is not None, "a finished split has finished lines"
    if ctx.now > finished_at + timedelta(days=ctx.config.split_return_window_days):
        raise EmulatorError(400, "INVALID_REQUEST", "分账单已超过可回退期限")
    return order


def _validated_return(body: dict[str, Any]) -> dict[str, Any]:
    wanted = {
        "sub_mchid": fields.mchid(body, "sub_mchid"),
        "order_id": fields.optional_text(body, "order_id", fields.OUT_NO_CHARS_MAX),
        "out_order_no": None if body.get("out_order_no") is None else fields.out_no(body, "out_order_no"),
        "out_return_no": fields.out_no(body, "out_return_no"),
        "return_mchid": fields.mchid(body, "return_mchid"),
        "amount": fields.fen(body.get("amount"), "amount"),
        "description": fields.text(body, "description", fields.DESCRIPTION_CHARS_MAX),
    }
    if (wanted["order_id"] is None) == (wanted["out_order_no"] is None):
        raise param_error("exactly one of order_id and out_order_no is required")
    return wanted
