"""The mall paying stores what mall-funded coupons owe them: /v3/mall/coupon-subsidies."""

from __future__ import annotations

from aiohttp import web

from gateway.api import json_or_missing, services_of
from gateway.api.middleware import json_body
from gateway.api.mall.common import caller_in_role, listed_store, paging
from gateway.api.orders import json_response
from gateway.api.requests.mall import parse_subsidy_payout
from gateway.domain_errors import NotFound
from gateway.services import coupon_redemption

routes = web.RouteTableDef()


@routes.post("/v3/mall/coupon-subsidies/payouts")
async def pay_out(request: web.Request) -> web.Response:
    caller = caller_in_role(request, "admin", "finance")
    payout = parse_subsidy_payout(await json_body(request))
    return json_response(await coupon_redemption.pay_out_subsidy(services_of(request), caller.mall_id, payout))


@routes.get("/v3/mall/coupon-subsidies/payouts")
async def list_payouts(request: web.Request) -> web.Response:
    caller = caller_in_role(request, "admin", "finance", "tenant")
    limit, offset = paging(request)
    sub_mchid = listed_store(request, caller)
    found = await coupon_redemption.subsidy_payouts(services_of(request), caller, sub_mchid, limit, offset)
    return json_or_missing(found, NotFound("tenant"))
