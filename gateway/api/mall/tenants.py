"""Stores, their contracts and high-ratio approvals: /v3/mall/tenants."""

from __future__ import annotations

from aiohttp import web

from gateway.api import caller_of, json_or_missing, json_response, services_of
from gateway.api.mall.common import paging, require_role
from gateway.api.middleware import json_body
from gateway.api.requests.mall import parse_approval, parse_contract_change, parse_points_rule, parse_tenant
from gateway.domain_errors import NotFound
from gateway.services import onboarding, receivers

routes = web.RouteTableDef()


@routes.post("/v3/mall/tenants")
async def create_tenant(request: web.Request) -> web.Response:
    caller = caller_of(request)
    require_role(caller, "admin")
    tenant = parse_tenant(caller.mall_id, await json_body(request))
    created = await onboarding.create_tenant(services_of(request), tenant)
    return json_response(created.as_json())


@routes.get("/v3/mall/tenants")
async def list_tenants(request: web.Request) -> web.Response:
    caller = caller_of(request)
    require_role(caller, "admin", "mall_app", "finance", "tenant")
    limit, offset = paging(request)
    return json_response(await onboarding.tenants_page(services_of(request), caller, limit, offset))


@routes.get("/v3/mall/tenants/{sub_mchid}")
async def get_tenant(request: web.Request) -> web.Response:
    found = await onboarding.visible_tenant(services_of(request), caller_of(request),
                                            request.match_info["sub_mchid"])
    return json_or_missing(found, NotFound("tenant"))


@routes.patch("/v3/mall/tenants/{sub_mchid}/contract")
async def change_contract(request: web.Request) -> web.Response:
    caller = caller_of(request)
    require_role(caller, "admin")
    change = parse_contract_change(await json_body(request))
    tenant = await onboarding.change_contract(services_of(request), caller.mall_id, request.match_info["sub_mchid"],
                                              change)
    return json_response(tenant.as_json())


@routes.put("/v3/mall/tenants/{sub_mchid}/points-rule")
async def set_points_rule(request: web.Request) -> web.Response:
    caller = caller_of(request)
    require_role(caller, "admin")
    points_per_yuan = parse_points_rule(await json_body(request))
    return json_response(await onboarding.set_points_rule(services_of(request), caller.mall_id,
                                                          request.match_info["sub_mchid"], points_per_yuan))


@routes.get("/v3/mall/tenants/{sub_mchid}/points-rule")
async def get_points_rule(request: web.Request) -> web.Response:
    caller = caller_of(request)
    require_role(caller, "admin", "finance", "tenant")
    sub_mchid = request.match_info["sub_mchid"]
    if not caller.sees_store(sub_mchid):
        raise NotFound("tenant")
    return json_response(await onboarding.points_rule(services_of(request), caller.mall_id, sub_mchid))


@routes.post("/v3/mall/tenants/{sub_mchid}/approvals")
async def approve_high_ratio(request: web.Request) -> web.Response:
    caller = caller_of(request)
    require_role(caller, "admin")
    approval = parse_approval(await json_body(request))
    return json_response(await receivers.approve_high_ratio(services_of(request), caller.mall_id,
                                                            request.match_info["sub_mchid"], approval))


@routes.get("/v3/mall/tenants/{sub_mchid}/approvals")
async def list_approvals(request: web.Request) -> web.Response:
    caller = caller_of(request)
    require_role(caller, "admin", "finance")
    return json_response(await receivers.approvals(services_of(request), caller.mall_id,
                                                   request.match_info["sub_mchid"]))
