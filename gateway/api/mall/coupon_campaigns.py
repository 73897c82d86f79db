"""Coupon campaigns: /v3/mall/coupon-campaigns (admin, or a store for its own)."""

from __future__ import annotations

from aiohttp import web

from gateway.api import caller_of, services_of
from gateway.api.mall.common import caller_in_role, paging, path_number
from gateway.api.middleware import json_body
from gateway.api.orders import json_response
from gateway.api.requests.mall import parse_campaign_change, parse_new_campaign, parse_window_days
from gateway.services import coupon_campaigns, coupon_reports

routes = web.RouteTableDef()


@routes.post("/v3/mall/coupon-campaigns")
async def create_campaign(request: web.Request) -> web.Response:
    svc, caller = services_of(request), caller_in_role(request, *coupon_campaigns.MANAGERS)
    spec = parse_new_campaign(await json_body(request))
    return json_response(await coupon_campaigns.create_campaign(svc, caller, spec))


@routes.get("/v3/mall/coupon-campaigns")
async def list_campaigns(request: web.Request) -> web.Response:
    limit, offset = paging(request)
    svc, caller = services_of(request), caller_of(request)
    return json_response(await coupon_campaigns.list_campaigns(svc, caller, request.query.get("sub_mchid"),
                                                               limit, offset))


def _campaign_id(request: web.Request) -> int:
    return path_number(request, "campaign_id", "campaign")


@routes.get("/v3/mall/coupon-campaigns/{campaign_id}")
async def get_campaign(request: web.Request) -> web.Response:
    caller = caller_in_role(request, *coupon_campaigns.MANAGERS)
    row = await coupon_campaigns.campaign_row(services_of(request), caller, _campaign_id(request))
    return json_response(coupon_campaigns.campaign_json(row))


@routes.patch("/v3/mall/coupon-campaigns/{campaign_id}")
async def change_campaign(request: web.Request) -> web.Response:
    svc, caller = services_of(request), caller_in_role(request, *coupon_campaigns.MANAGERS)
    change = parse_campaign_change(await json_body(request))
    return json_response(await coupon_campaigns.change_campaign(svc, caller, _campaign_id(request), change))


@routes.get("/v3/mall/coupon-campaigns/{campaign_id}/report")
async def campaign_report(request: web.Request) -> web.Response:
    svc, caller = services_of(request), caller_in_role(request, *coupon_campaigns.MANAGERS)
    row = await coupon_campaigns.campaign_row(svc, caller, _campaign_id(request))
    window_days = parse_window_days(request.query.get("window_days"), svc.settings.coupon_report_window_days)
    return json_response(await coupon_reports.campaign_report(svc, caller.mall_id, row, window_days))
