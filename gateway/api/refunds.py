"""/v3/refund/domestic/refunds and /v3/profitsharing/return-orders."""

from __future__ import annotations

from aiohttp import web

from gateway.api import services_of
from gateway.api.handlers import found_or_missing, mall_app_command
from gateway.api.requests import store_query
from gateway.api.requests.refunds import parse_refund, parse_return
from gateway.domain_errors import NotFound
from gateway.services import refunds, returns

routes = web.RouteTableDef()


@routes.post("/v3/refund/domestic/refunds")
async def create_refund(request: web.Request) -> web.Response:
    allow_loopback_http = services_of(request).settings.channel_is_emulator
    return await mall_app_command(request, lambda body: parse_refund(body, allow_loopback_http),
                                  refunds.request_refund)


@routes.get("/v3/refund/domestic/refunds/{out_refund_no}")
async def query_refund(request: web.Request) -> web.Response:
    return await found_or_missing(request, refunds.find_refund, NotFound("refund"), store_query(request),
                                  request.match_info["out_refund_no"])


@routes.post("/v3/profitsharing/return-orders")
async def create_return(request: web.Request) -> web.Response:
    return await mall_app_command(request, parse_return, returns.request_return)


@routes.get("/v3/profitsharing/return-orders/{out_return_no}")
async def query_return(request: web.Request) -> web.Response:
    return await found_or_missing(request, returns.find_return, NotFound("return"), store_query(request),
                                  request.query.get("out_order_no"), request.match_info["out_return_no"])
