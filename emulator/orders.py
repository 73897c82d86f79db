"""Partner (service-provider) JSAPI orders: create, query by either id, close.

Paths, field names, statuses and error codes follow WeChat Pay API v3's partner
documentation. Validation happens before any state change; a create that repeats an
existing out_trade_no with identical fields answers the same prepay_id, with any field
changed 400 INVALID_REQUEST, as WeChat does.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

import structlog
from aiohttp import web

from emulator import keys
from emulator.auth import caller_mchid
from emulator.fields import notify_url as checked_notify_url
from emulator.fields import APPID_CHARS_MAX, MCHID_RE, optional_text, text
from emulator.fields import mchid as checked_mchid
from emulator.state import CLOSED, PAID_STATES, Order, new_prepay_id, transaction_json
from emulator.wire import (
    EmulatorError,
    json_response,
    no_content,
    param_error,
    parse_time,
    read_json_object,
    required_query,
)

log = structlog.get_logger(__name__)
routes = web.RouteTableDef()

BASE = "/v3/pay/partner/transactions"
# WeChat: out_trade_no is 6..32 of digits, letters, _ - | * (unique per merchant).
OUT_TRADE_NO_RE = re.compile(r"[0-9A-Za-z_\-|*]{6,32}")
DESCRIPTION_CHARS_MAX = 127
ATTACH_CHARS_MAX = 128
OPENID_CHARS_MAX = 128


@routes.post(BASE + "/jsapi")
async def create_jsapi(request: web.Request) -> web.Response:
    body = await read_json_object(request)
    config, orders = request.app[keys.CONFIG], request.app[keys.ORDERS]
    now = request.app[keys.CLOCK]()
    fields = _validated_jsapi(body, caller_mchid(request), config.notify_http_hosts)
    fingerprint = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    existing = orders.get(fields["sub_mchid"], fields["out_trade_no"])
    if existing is not None:
        if existing.request_fingerprint != fingerprint:
            raise EmulatorError(400, "INVALID_REQUEST", "201 商户订单号重复 (out_trade_no used)")
        if existing.state in PAID_STATES:
            raise EmulatorError(400, "ORDERPAID", "该订单已支付")
        if existing.state == CLOSED:
            raise EmulatorError(400, "ORDER_CLOSED", "订单已关闭")
        return json_response({"prepay_id": existing.prepay_id})
    order = Order(**fields, created_at=now, request_fingerprint=fingerprint,
                  prepay_id=new_prepay_id(config.rng, now))
    orders.add(order)
    log.info("emulator.order_created", sub_mchid=order.sub_mchid, out_trade_no=order.out_trade_no,
             total_fen=order.total_fen)
    return json_response({"prepay_id": order.prepay_id})


@routes.get(BASE + "/out-trade-no/{out_trade_no}")
async def query_by_out_trade_no(request: web.Request) -> web.Response:
    sub_mchid = _query_merchants(request)
    order = request.app[keys.ORDERS].get(sub_mchid, request.match_info["out_trade_no"])
    return json_response(transaction_json(_visible(order, request)))


@routes.get(BASE + "/id/{transaction_id}")
async def query_by_transaction_id(request: web.Request) -> web.Response:
    sub_mchid = _query_merchants(request)
    order = request.app[keys.ORDERS].by_transaction_id(request.match_info["transaction_id"])
    if order is not None and order.sub_mchid != sub_mchid:
        order = None
    return json_response(transaction_json(_visible(order, request)))


@routes.post(BASE + "/out-trade-no/{out_trade_no}/close")
async def close(request: web.Request) -> web.Response:
    body = await read_json_object(request)
    sp_mchid, sub_mchid = body.get("sp_mchid"), body.get("sub_mchid")
    if not isinstance(sp_mchid, str) or not isinstance(sub_mchid, str) or not MCHID_RE.fullmatch(sub_mchid):
        raise param_error("sp_mchid and sub_mchid are required")
    _require_caller(request, sp_mchid)
    order = _visible(request.app[keys.ORDERS].get(sub_mchid, request.match_info["out_trade_no"]), request)
    if order.state in PAID_STATES:
        raise EmulatorError(400, "ORDERPAID", "订单已支付")
    if order.state != CLOSED:
        order.close()
        log.info("emulator.order_closed", sub_mchid=order.sub_mchid, out_trade_no=order.out_trade_no)
    return no_content()


def _query_merchants(request: web.Request) -> str:
    sp_mchid, sub_mchid = required_query(request, "sp_mchid", "sub_mchid")
    _require_caller(request, sp_mchid)
    return sub_mchid


def _require_caller(request: web.Request, sp_mchid: str) -> None:
    if sp_mchid != caller_mchid(request):
        raise param_error("sp_mchid does not match the merchant that signed the request")


def _visible(order: Order | None, request: web.Request) -> Order:
    if order is None or order.sp_mchid != caller_mchid(request):
        raise EmulatorError(404, "ORDER_NOT_EXIST", "订单不存在")
    return order


def _validated_jsapi(body: dict[str, Any], mchid: str, http_hosts: tuple[str, ...]) -> dict[str, Any]:
    """The create request's fields as Order arguments, or PARAM_ERROR naming the first fault."""
    sp_mchid = text(body, "sp_mchid", 32)
    if sp_mchid != mchid:
        raise param_error("sp_mchid does not match the merchant that signed the request")
    sub_mchid = checked_mchid(body, "sub_mchid")
    out_trade_no = text(body, "out_trade_no", 32)
    if not OUT_TRADE_NO_RE.fullmatch(out_trade_no):
        raise param_error("out_trade_no must be 6-32 of [0-9A-Za-z_-|*]")
    sub_appid = optional_text(body, "sub_appid", APPID_CHARS_MAX)
    total_fen, currency = _amount(body.get("amount"))
    payer_sp_openid, payer_sub_openid = _payer(body.get("payer"), sub_appid)
    return {
        "sp_appid": text(body, "sp_appid", APPID_CHARS_MAX),
        "sp_mchid": sp_mchid,
        "sub_appid": sub_appid,
        "sub_mchid": sub_mchid,
        "out_trade_no": out_trade_no,
        "description": text(body, "description", DESCRIPTION_CHARS_MAX),
        "attach": optional_text(body, "attach", ATTACH_CHARS_MAX),
        "notify_url": _notify_url(body, http_hosts),
        "total_fen": total_fen,
        "currency": currency,
        "payer_sp_openid": payer_sp_openid,
        "payer_sub_openid": payer_sub_openid,
        "profit_sharing": _profit_sharing(body.get("settle_info")),
        "expire_at": _time_expire(body),
    }


def _amount(amount: Any) -> tuple[int, str]:
    if not isinstance(amount, dict):
        raise param_error("amount is required")
    total = amount.get("total")
    if not isinstance(total, int) or isinstance(total, bool) or total <= 0:
        raise param_error("amount.total must be a positive integer of fen")
    currency = amount.get("currency", "CNY")
    if currency != "CNY":
        raise param_error("amount.currency must be CNY")
    return total, currency


def _payer(payer: Any, sub_appid: str | None) -> tuple[str | None, str | None]:
    if not isinstance(payer, dict):
        raise param_error("payer is required")
    sp_openid = optional_text(payer, "sp_openid", OPENID_CHARS_MAX)
    sub_openid = optional_text(payer, "sub_openid", OPENID_CHARS_MAX)
    if (sp_openid is None) == (sub_openid is None):
        raise param_error("payer needs exactly one of sp_openid and sub_openid")
    if sub_openid is not None and sub_appid is None:
        raise param_error("payer.sub_openid requires sub_appid")
    return sp_openid, sub_openid


def _profit_sharing(settle_info: Any) -> bool:
    if settle_info is None:
        return False
    if not isinstance(settle_info, dict) or not isinstance(settle_info.get("profit_sharing", False), bool):
        raise param_error("settle_info.profit_sharing must be a boolean")
    return settle_info.get("profit_sharing", False)


def _notify_url(body: dict[str, Any], http_hosts: tuple[str, ...]) -> str:
    return checked_notify_url(body, "notify_url", http_hosts)


def _time_expire(body: dict[str, Any]) -> datetime | None:
    raw = optional_text(body, "time_expire", 64)
    if raw is None:
        return None
    parsed = parse_time(raw)
    if parsed is None:
        raise param_error("time_expire must be RFC 3339 with an offset")
    return parsed
