"""Local-only levers that WeChat Pay does not have: "the shopper pays", the delivery log,
a store's maximum split ratio (set in WeChat's merchant platform for real) and a look at
the money model's balances.

Unsigned on purpose (SPEC 8): they stand in for the shopper's phone and for an operator
looking at WeChat's merchant console, and the emulator is meant for loopback use.

Paying an already-paid order answers 200 with the existing transaction_id and sends no
second notification, so a test or load script that retries its trigger is harmless.
"""

from __future__ import annotations

import structlog
from aiohttp import web

from emulator import keys
from emulator.config import BPS_WHOLE
from emulator.fields import MCHID_RE
from emulator.funds import FundsFull
from emulator.split_book import RECEIVER_TYPES, BookFull
from emulator.state import CLOSED, PAID_STATES, Order, new_transaction_id, transaction_json
from emulator.wire import (
    EmulatorError, fields_json, format_time, json_response, param_error, parse_time, read_json_object,
)

log = structlog.get_logger(__name__)
routes = web.RouteTableDef()


@routes.post("/sandbox/transactions/pay")
async def pay(request: web.Request) -> web.Response:
    body = await read_json_object(request)
    sub_mchid, out_trade_no = body.get("sub_mchid"), body.get("out_trade_no")
    if not isinstance(sub_mchid, str) or not isinstance(out_trade_no, str):
        raise param_error("sub_mchid and out_trade_no are required")
    orders, notifier = request.app[keys.ORDERS], request.app[keys.NOTIFIER]
    rng, now = request.app[keys.CONFIG].rng, request.app[keys.CLOCK]()
    order = orders.get(sub_mchid, out_trade_no)
    if order is None:
        raise EmulatorError(404, "ORDER_NOT_EXIST", "订单不存在")
    if order.state in PAID_STATES:
        return json_response(_paid_json(order, already_paid=True))
    if order.state == CLOSED:
        raise EmulatorError(400, "ORDER_CLOSED", "订单已关闭")
    if order.expire_at is not None and now > order.expire_at:
        raise EmulatorError(400, "ORDER_CLOSED", "订单已过期 (time_expire passed)")
    if not notifier.has_capacity():
        raise EmulatorError(429, "FREQUENCY_LIMITED", "too many notifications pending")
    transaction_id = new_transaction_id(rng, now)
    while orders.by_transaction_id(transaction_id) is not None:
        transaction_id = new_transaction_id(rng, now)
    try:
        request.app[keys.FUNDS].settle_payment(
            transaction_id=transaction_id, sp_mchid=order.sp_mchid, sub_mchid=order.sub_mchid,
            out_trade_no=order.out_trade_no, total_fen=order.total_fen, profit_sharing=order.profit_sharing,
            paid_at=now,
        )
    except FundsFull:
        raise EmulatorError(429, "FREQUENCY_LIMITED", "too many stores (merchants_max)") from None
    orders.pay(order, transaction_id, now)
    record = notifier.submit_transaction_success(order, transaction_json(order))
    log.info("emulator.order_paid", sub_mchid=sub_mchid, out_trade_no=out_trade_no, event_id=record.event_id)
    return json_response(_paid_json(order, already_paid=False))


@routes.get("/sandbox/notifications")
async def notifications(request: web.Request) -> web.Response:
    records = request.app[keys.NOTIFIER].records()
    out_trade_no = request.query.get("out_trade_no")
    if out_trade_no:
        records = [record for record in records if record.out_trade_no == out_trade_no]
    return json_response({"data": [record.as_json() for record in records], "total_count": len(records)})


@routes.post("/sandbox/merchant-configs")
async def set_max_ratio(request: web.Request) -> web.Response:
    """What a franchise store's owner sets in WeChat's merchant platform: the share of each
    order that may be split away from it, in 1/10000 (WeChat's default is 3000)."""
    body = await read_json_object(request)
    sub_mchid, max_ratio = body.get("sub_mchid"), body.get("max_ratio")
    if not isinstance(sub_mchid, str) or not MCHID_RE.fullmatch(sub_mchid):
        raise param_error("sub_mchid must be digits")
    if not isinstance(max_ratio, int) or isinstance(max_ratio, bool) or not 0 <= max_ratio <= BPS_WHOLE:
        raise param_error(f"max_ratio must be an integer within 0..{BPS_WHOLE}")
    try:
        request.app[keys.SPLITS].set_max_ratio_bps(sub_mchid, max_ratio)
    except BookFull:
        raise EmulatorError(429, "FREQUENCY_LIMITED", "too many stores (merchants_max)") from None
    return json_response({"sub_mchid": sub_mchid, "max_ratio": max_ratio})


@routes.get("/sandbox/merchants/{sub_mchid}/funds")
async def merchant_funds(request: web.Request) -> web.Response:
    """A store's money at the channel, after WeChat's own unfreeze of overdue orders."""
    funds, sub_mchid = request.app[keys.FUNDS], request.match_info["sub_mchid"]
    funds.sweep(request.app[keys.CLOCK]())
    return json_response({"sub_mchid": sub_mchid, "available_fen": funds.available_fen(sub_mchid),
                          "frozen_fen": funds.frozen_fen(sub_mchid)})


@routes.get("/sandbox/receivers/{type}/{account}/funds")
async def receiver_funds(request: web.Request) -> web.Response:
    """What a split receiver holds: sent to it by splits, less what it returned."""
    receiver_type, account = request.match_info["type"], request.match_info["account"]
    if receiver_type not in RECEIVER_TYPES:
        raise param_error("type must be MERCHANT_ID, PERSONAL_OPENID or PERSONAL_SUB_OPENID")
    received_fen = request.app[keys.FUNDS].received_fen(receiver_type, account)
    return json_response({"type": receiver_type, "account": account, "received_fen": received_fen})


@routes.get("/sandbox/clock")
async def read_clock(request: web.Request) -> web.Response:
    return json_response(_clock_json(request.app[keys.SANDBOX_CLOCK]))


@routes.post("/sandbox/clock")
async def move_clock(request: web.Request) -> web.Response:
    """Read (`{}`), set (`{"frozen_time": RFC 3339}`, as Stripe's test clocks name it) or
    advance (`{"advance_s": N}`) the sandbox clock. It only goes forward; the automatic
    unfreeze of orders past their freeze then happens at once."""
    body = await read_json_object(request)
    clock = request.app[keys.SANDBOX_CLOCK]
    unknown = set(body) - {"advance_s", "frozen_time"}
    if unknown or len(body) > 1:
        raise param_error("give advance_s or frozen_time, or nothing to read the clock")
    try:
        if "advance_s" in body:
            seconds = body["advance_s"]
            if not isinstance(seconds, int) or isinstance(seconds, bool) or seconds < 0:
                raise param_error("advance_s must be a whole number of seconds, not negative")
            clock.advance(seconds)
        elif "frozen_time" in body:
            at = parse_time(body["frozen_time"]) if isinstance(body["frozen_time"], str) else None
            if at is None:
                raise param_error("frozen_time must be an RFC 3339 time with its offset")
            clock.set_to(at)
    except ValueError as exc:
        raise param_error(str(exc)) from None
    request.app[keys.FUNDS].sweep(clock())
    log.info("emulator.clock_moved", offset_s=clock.offset_s)
    return json_response(_clock_json(clock))


def _clock_json(clock) -> dict:
    return {"frozen_time": format_time(clock()), "offset_s": clock.offset_s}


def _paid_json(order: Order, *, already_paid: bool) -> dict:
    assert order.success_at is not None
    return {
        **fields_json(order, "sub_mchid", "out_trade_no", "transaction_id"),
        "trade_state": order.state,
        "success_time": format_time(order.success_at),
        "already_paid": already_paid,
    }
