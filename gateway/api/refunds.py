"""/v3/refund/domestic/refunds and /v3/profitsharing/return-orders."""

from __future__ import annotations

from aiohttp import web

from gateway.api import caller_of, json_or_missing, json_response, mall_app_of, services_of
from gateway.api.middleware import json_body
from gateway.api.requests import store_query
from gateway.api.requests.refunds import parse_refund, parse_return
from gateway.domain_errors import NotFound
from gateway.services import refunds, returns

routes = web.RouteTableDef()


@routes.post("/v3/refund/domestic/refunds")
async def create_refund(request: web.Request) -> web.Response:
    svc, caller = services_of(request), mall_app_of(request)
    fields = parse_refund(await json_body(request), svc.settings.channel_is_emulator)
    return json_response(await refunds.request_refund(svc, caller, fields))


@routes.get("/v3/refund/domestic/refunds/{out_refund_no}")
async def query_refund(request: web.Request) -> web.Response:
    sub_mchid = store_query(request)
    found = await refunds.find_refund(services_of(request), caller_of(request), sub_mchid,
                                      request.match_info["out_refund_no"])
    return json_or_missing(found, NotFound("refund"))


@routes.post("/v3/profitsharing/return-orders")
async def create_return(request: web.Request) -> web.Response:
    svc, caller = services_of(request), mall_app_of(request)
    fields = parse_return(await json_body(request))
    return json_response(await returns.request_return(svc, caller, fields))


@routes.get("/v3/profitsharing/return-orders/{out_return_no}")
async def query_return(request: web.Request) -> web.Response:
    sub_mchid = store_query(request)
    found = await returns.find_return(services_of(request), caller_of(request), sub_mchid,
                                      request.query.get("out_order_no"), request.match_info["out_return_no"])
    return json_or_missing(found, NotFound("return"))
