"""/v3/pay/partner/transactions: create, query (two ways), close."""

from __future__ import annotations

from aiohttp import web

from gateway.api import caller_of, services_of
from gateway.api.middleware import json_body
from gateway.errors import ParamError
from gateway.services import orders
from gateway.services.order_requests import MCHID_RE, OUT_TRADE_NO_RE, parse_order_request
from gateway.wire import json_bytes

routes = web.RouteTableDef()
TRANSACTION_ID_CHARS_MAX = 32


def json_response(body: dict, status: int = 200) -> web.Response:
    return web.Response(status=status, body=json_bytes(body), content_type="application/json",
                        charset="utf-8")


@routes.post("/v3/pay/partner/transactions/jsapi")
async def create(request: web.Request) -> web.Response:
    svc, caller = services_of(request), caller_of(request)
    body = await json_body(request)
    order_request = parse_order_request(
        body, caller, now=svc.clock(), allow_loopback_http=svc.settings.channel_is_emulator,
    )
    return json_response(await orders.create_order(svc, caller, order_request))


def _scope(request: web.Request) -> str:
    sp_mchid = request.query.get("sp_mchid")
    sub_mchid = request.query.get("sub_mchid")
    if not sp_mchid:
        raise ParamError("sp_mchid", "required")
    if not sub_mchid or not MCHID_RE.fullmatch(sub_mchid):
        raise ParamError("sub_mchid", "required" if not sub_mchid else "bad_format")
    orders.check_scope(caller_of(request), sp_mchid)
    return sub_mchid


@routes.get("/v3/pay/partner/transactions/out-trade-no/{out_trade_no}")
async def query_by_out_trade_no(request: web.Request) -> web.Response:
    out_trade_no = request.match_info["out_trade_no"]
    if not OUT_TRADE_NO_RE.fullmatch(out_trade_no):
        raise ParamError("out_trade_no", "bad_format")
    sub_mchid = _scope(request)
    body = await orders.query_order(services_of(request), caller_of(request), sub_mchid,
                                    out_trade_no=out_trade_no)
    return json_response(body)


@routes.get("/v3/pay/partner/transactions/id/{transaction_id}")
async def query_by_transaction_id(request: web.Request) -> web.Response:
    transaction_id = request.match_info["transaction_id"]
    if not transaction_id.isdigit() or len(transaction_id) > TRANSACTION_ID_CHARS_MAX:
        raise ParamError("transaction_id", "bad_format")
    sub_mchid = _scope(request)
    body = await orders.query_order(services_of(request), caller_of(request), sub_mchid,
                                    transaction_id=transaction_id)
    return json_response(body)


@routes.post("/v3/pay/partner/transactions/out-trade-no/{out_trade_no}/close")
async def close(request: web.Request) -> web.Response:
    out_trade_no = request.match_info["out_trade_no"]
    if not OUT_TRADE_NO_RE.fullmatch(out_trade_no):
        raise ParamError("out_trade_no", "bad_format")
    body = await json_body(request)
    if not isinstance(body, dict):
        raise ParamError("body", "not_an_object")
    for name in body:
        if name not in ("sp_mchid", "sub_mchid"):
            raise ParamError(name, "unknown_field")
    sub_mchid = body.get("sub_mchid")
    if not isinstance(sub_mchid, str) or not MCHID_RE.fullmatch(sub_mchid):
        raise ParamError("sub_mchid", "required")
    orders.check_scope(caller_of(request), body.get("sp_mchid"))
    await orders.close_order(services_of(request), caller_of(request), sub_mchid, out_trade_no)
    return web.Response(status=204)
