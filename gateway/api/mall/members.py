"""A shopper's coupons and points: /v3/mall/members/{openid}/... (admin, mall_app)."""

from __future__ import annotations

from aiohttp import web

from gateway.api import services_of
from gateway.api.mall.common import caller_in_role, paging
from gateway.api.orders import json_response
from gateway.api.requests.mall import parse_openid
from gateway.services import members

routes = web.RouteTableDef()


@routes.get("/v3/mall/members/{openid}/coupons")
async def member_coupons(request: web.Request) -> web.Response:
    caller = caller_in_role(request, "admin", "mall_app")
    limit, offset = paging(request)
    openid = parse_openid(request.match_info["openid"])
    return json_response(await members.coupons(services_of(request), caller.mall_id, openid, limit, offset))


@routes.get("/v3/mall/members/{openid}/points")
async def member_points(request: web.Request) -> web.Response:
    caller = caller_in_role(request, "admin", "mall_app")
    openid = parse_openid(request.match_info["openid"])
    return json_response(await members.points(services_of(request), caller.mall_id, openid))
