"""Refunds, service-provider mode: POST /v3/refund/domestic/refunds and the query.

WeChat's rules (v3 申请退款 docs and error table):
  * the order must be paid (else 404 RESOURCE_NOT_EXISTS 订单不存在);
  * amount.total must be the order's total, amount.refund positive, the refunds of one
    order together at most its total and at most 50 of them (400 INVALID_REQUEST);
  * the money must be there (403 NOT_ENOUGH 余额不足): the refund's net amount -- the refund
    minus the fee WeChat gives back in proportion -- comes from the order's unsplit (frozen)
    money first, then from the store's available balance; funds_account=AVAILABLE takes it
    from the available balance only. Money already split to receivers is not the store's:
    it has to be returned (split return) before it can be refunded;
  * the same out_refund_no again answers the same refund if the request is the same, else
    400 INVALID_REQUEST.
PROCESSING becomes SUCCESS (or, at `refund_abnormal_rate`, ABNORMAL) after
`refund_finish_delay_ms`, then REFUND.SUCCESS / REFUND.ABNORMAL goes to the refund's
notify_url (none is sent without one: WeChat's merchant-platform default is not emulated).
"""

from __future__ import annotations

from typing import Any

import structlog
from aiohttp import web

from emulator import fields, keys
from emulator.auth import caller_mchid
from emulator.notify import EVENT_REFUND_ABNORMAL, EVENT_REFUND_SUCCESS
from emulator.refund_book import (
    ABNORMAL, FUNDS_AVAILABLE, FUNDS_UNSETTLED, SUCCESS, Refund, refund_json, refund_notice_resource,
)
from emulator.state import PAID_STATES, Order, new_refund_id
from emulator.wire import EmulatorError, json_response, param_error, read_json_object, required_query

log = structlog.get_logger(__name__)
routes = web.RouteTableDef()

BASE = "/v3/refund/domestic/refunds"
REFUNDS_PER_ORDER_MAX = 50  # WeChat: 一笔订单最多支持50次部分退款
REASON_CHARS_MAX = 80


@routes.post(BASE)
async def create_refund(request: web.Request) -> web.Response:
    body = await read_json_object(request)
    app = request.app
    config, funds, book, notifier, jobs = (app[keys.CONFIG], app[keys.FUNDS], app[keys.REFUNDS],
                                           app[keys.NOTIFIER], app[keys.JOBS])
    now = app[keys.CLOCK]()
    funds.sweep(now)
    wanted = _validated_refund(body, config.notify_http_hosts)
    existing = book.get(wanted["sub_mchid"], wanted["out_refund_no"])
    if existing is not None:
        if existing.fingerprint != fields.fingerprint(wanted):
            raise EmulatorError(400, "INVALID_REQUEST", "商户退款单号重复，且请求参数与原请求不一致")
        return json_response(refund_json(existing))
    order = _paid_order(request, wanted)
    trade = funds.trade(order.transaction_id or "")
    if trade is None:
        raise EmulatorError(404, "RESOURCE_NOT_EXISTS", "订单不存在")
    if wanted["total"] != order.total_fen:
        raise EmulatorError(400, "INVALID_REQUEST", "订单金额与原订单不一致")
    if wanted["refund"] > trade.refund_left_fen:
        raise EmulatorError(400, "INVALID_REQUEST", "申请退款金额超过订单可退金额")
    if trade.refunds >= REFUNDS_PER_ORDER_MAX:
        raise EmulatorError(400, "INVALID_REQUEST", "订单退款次数已达上限")
    if not jobs.has_capacity() or (wanted["notify_url"] and not notifier.has_capacity()):
        raise EmulatorError(429, "FREQUENCY_LIMITED", "频率限制")
    taken = funds.take_for_refund(trade, wanted["refund"], available_only=wanted["funds_account"] is not None)
    if taken is None:
        raise EmulatorError(403, "NOT_ENOUGH", "余额不足")
    fee_back_fen, from_frozen_fen = taken
    refund = Refund(
        sp_mchid=order.sp_mchid, sub_mchid=order.sub_mchid, out_refund_no=wanted["out_refund_no"],
        refund_id=new_refund_id(config.rng, now), transaction_id=trade.transaction_id,
        out_trade_no=order.out_trade_no, reason=wanted["reason"], notify_url=wanted["notify_url"],
        funds_account=FUNDS_UNSETTLED if from_frozen_fen else FUNDS_AVAILABLE, refund_fen=wanted["refund"],
        total_fen=order.total_fen, refund_fee_fen=fee_back_fen, fingerprint=fields.fingerprint(wanted),
        created_at=now,
    )
    book.add(refund)
    jobs.after(config.refund_finish_delay_ms / 1000, lambda: _finish(app, refund, order),
               name=f"refund-{refund.refund_id}")
    log.info("emulator.refund_accepted", sub_mchid=refund.sub_mchid, out_refund_no=refund.out_refund_no,
             fen=refund.refund_fen, fee_back_fen=fee_back_fen)
    return json_response(refund_json(refund))


@routes.get(BASE + "/{out_refund_no}")
async def query_refund(request: web.Request) -> web.Response:
    (sub_mchid,) = required_query(request, "sub_mchid")
    refund = request.app[keys.REFUNDS].get(sub_mchid, request.match_info["out_refund_no"])
    if refund is None or refund.sp_mchid != caller_mchid(request):
        raise EmulatorError(404, "RESOURCE_NOT_EXISTS", "退款单不存在")
    return json_response(refund_json(refund))


def _finish(app: web.Application, refund: Refund, order: Order) -> None:
    config, notifier = app[keys.CONFIG], app[keys.NOTIFIER]
    abnormal = bool(config.refund_abnormal_rate) and config.rng.random() < config.refund_abnormal_rate
    if abnormal:
        refund.status = ABNORMAL  # the money stays out: WeChat leaves an abnormal refund to be handled by hand
    else:
        refund.status, refund.success_at = SUCCESS, app[keys.CLOCK]()
        if order.state in PAID_STATES:
            order.mark_refunded()
    log.info("emulator.refund_finished", out_refund_no=refund.out_refund_no, status=refund.status)
    if refund.notify_url is None:
        return
    if not notifier.has_capacity():
        log.warning("emulator.refund_notice_dropped", out_refund_no=refund.out_refund_no)
        return
    notifier.submit(EVENT_REFUND_ABNORMAL if abnormal else EVENT_REFUND_SUCCESS, refund_notice_resource(refund),
                    sp_mchid=refund.sp_mchid, sub_mchid=refund.sub_mchid, out_trade_no=refund.out_trade_no,
                    notify_url=refund.notify_url)


def _paid_order(request: web.Request, wanted: dict[str, Any]) -> Order:
    orders = request.app[keys.ORDERS]
    if wanted["transaction_id"] is not None:
        order = orders.by_transaction_id(wanted["transaction_id"])
    else:
        order = orders.get(wanted["sub_mchid"], wanted["out_trade_no"])
    if order is None or order.sub_mchid != wanted["sub_mchid"] or order.sp_mchid != caller_mchid(request) \
            or order.state not in PAID_STATES:
        raise EmulatorError(404, "RESOURCE_NOT_EXISTS", "订单不存在")
    return order


def _validated_refund(body: dict[str, Any], http_hosts: tuple[str, ...]) -> dict[str, Any]:
    amount = body.get("amount")
    if not isinstance(amount, dict):
        raise param_error("amount is required")
    if amount.get("currency", "CNY") != "CNY":
        raise param_error("amount.currency must be CNY")
    funds_account = body.get("funds_account")
    if funds_account not in (None, FUNDS_AVAILABLE):
        raise param_error("funds_account may only be AVAILABLE")
    wanted = {
        "sub_mchid": fields.mchid(body, "sub_mchid"),
        "transaction_id": fields.optional_text(body, "transaction_id", 32),
        "out_trade_no": fields.optional_text(body, "out_trade_no", 32),
        "out_refund_no": fields.out_no(body, "out_refund_no"),
        "reason": fields.optional_text(body, "reason", REASON_CHARS_MAX),
        "notify_url": None if body.get("notify_url") is None else fields.notify_url(body, "notify_url", http_hosts),
        "funds_account": funds_account,
        "refund": fields.fen(amount.get("refund"), "amount.refund"),
        "total": fields.fen(amount.get("total"), "amount.total"),
    }
    if wanted["transaction_id"] is None and wanted["out_trade_no"] is None:
        raise param_error("transaction_id or out_trade_no is required")
    if wanted["refund"] > wanted["total"]:
        raise param_error("amount.refund must not exceed amount.total")
    return wanted
