"""/v3/pay/partner/transactions: create, query (two ways), close."""

from __future__ import annotations

from aiohttp import web

from gateway.api import caller_of, json_response, services_of
from gateway.api.middleware import json_body, nonce_of, spends_nonce
from gateway.api.requests.orders import (
    close_scope, out_trade_no_of, parse_order_request, query_scope, transaction_id_of,
)
from gateway.services import orders

routes = web.RouteTableDef()
__all__ = ["json_response", "routes"]  # json_response: still importable from here


@routes.post("/v3/pay/partner/transactions/jsapi")
@spends_nonce  # in the order's insert
async def create(request: web.Request) -> web.Response:
    svc, caller = services_of(request), caller_of(request)
    body = await json_body(request)
    order_request = parse_order_request(
        body, caller, now=svc.clock(), allow_loopback_http=svc.settings.channel_is_emulator,
    )
    return json_response(await orders.create_order(svc, caller, order_request, nonce_of(request)))


@routes.get("/v3/pay/partner/transactions/out-trade-no/{out_trade_no}")
@spends_nonce  # in the order's read
async def query_by_out_trade_no(request: web.Request) -> web.Response:
    return await _query(request, out_trade_no=out_trade_no_of(request))


@routes.get("/v3/pay/partner/transactions/id/{transaction_id}")
@spends_nonce  # in the order's read
async def query_by_transaction_id(request: web.Request) -> web.Response:
    return await _query(request, transaction_id=transaction_id_of(request))


async def _query(request: web.Request, **number: str) -> web.Response:
    sp_mchid, sub_mchid = query_scope(request)
    return json_response(await orders.query_order(services_of(request), caller_of(request), sp_mchid, sub_mchid,
                                                  nonce=nonce_of(request), **number))


@routes.post("/v3/pay/partner/transactions/out-trade-no/{out_trade_no}/close")
async def close(request: web.Request) -> web.Response:
    out_trade_no = out_trade_no_of(request)
    sp_mchid, sub_mchid = close_scope(await json_body(request))
    await orders.close_order(services_of(request), caller_of(request), sp_mchid, sub_mchid, out_trade_no)
    return web.Response(status=204)
