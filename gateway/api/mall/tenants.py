"""Stores, their contracts and high-ratio approvals: /v3/mall/tenants."""

from __future__ import annotations

from aiohttp import web

from gateway.api import json_response, services_of
from gateway.api.mall.common import caller_in_role, paging
from gateway.api.handlers import found_or_missing
from gateway.api.middleware import json_body
from gateway.api.requests.mall import parse_approval, parse_contract_change, parse_points_rule, parse_tenant
from gateway.domain_errors import NotFound
from gateway.services import onboarding, receivers

routes = web.RouteTableDef()


@routes.post("/v3/mall/tenants")
async def create_tenant(request: web.Request) -> web.Response:
    caller = caller_in_role(request, "admin")
    tenant = parse_tenant(caller.mall_id, await json_body(request))
    created = await onboarding.create_tenant(services_of(request), tenant)
    return json_response(created.as_json())


@routes.get("/v3/mall/tenants")
async def list_tenants(request: web.Request) -> web.Response:
    caller = caller_in_role(request, "admin", "mall_app", "finance", "tenant")
    limit, offset = paging(request)
    return json_response(await onboarding.tenants_page(services_of(request), caller, limit, offset))


@routes.get("/v3/mall/tenants/{sub_mchid}")
async def get_tenant(request: web.Request) -> web.Response:
    return await found_or_missing(request, onboarding.visible_tenant, NotFound("tenant"),
                                  request.match_info["sub_mchid"])


async def _admin_command_on_store(request: web.Request, parse, run):
    """An admin's command on the path's store: the body parsed by `parse`, then
    `run(svc, mall_id, sub_mchid, parsed)`'s result."""
    caller = caller_in_role(request, "admin")
    parsed = parse(await json_body(request))
    return await run(services_of(request), caller.mall_id, request.match_info["sub_mchid"], parsed)


@routes.patch("/v3/mall/tenants/{sub_mchid}/contract")
async def change_contract(request: web.Request) -> web.Response:
    tenant = await _admin_command_on_store(request, parse_contract_change, onboarding.change_contract)
    return json_response(tenant.as_json())


@routes.put("/v3/mall/tenants/{sub_mchid}/points-rule")
async def set_points_rule(request: web.Request) -> web.Response:
    return json_response(await _admin_command_on_store(request, parse_points_rule, onboarding.set_points_rule))


@routes.get("/v3/mall/tenants/{sub_mchid}/points-rule")
async def get_points_rule(request: web.Request) -> web.Response:
    caller = caller_in_role(request, "admin", "finance", "tenant")
    sub_mchid = request.match_info["sub_mchid"]
    if not caller.sees_store(sub_mchid):
        raise NotFound("tenant")
    return json_response(await onboarding.points_rule(services_of(request), caller.mall_id, sub_mchid))


@routes.post("/v3/mall/tenants/{sub_mchid}/approvals")
async def approve_high_ratio(request: web.Request) -> web.Response:
    return json_response(await _admin_command_on_store(request, parse_approval, receivers.approve_high_ratio))


@routes.get("/v3/mall/tenants/{sub_mchid}/approvals")
async def list_approvals(request: web.Request) -> web.Response:
    caller = caller_in_role(request, "admin", "finance")
    return json_response(await receivers.approvals(services_of(request), caller.mall_id,
                                                   request.match_info["sub_mchid"]))
