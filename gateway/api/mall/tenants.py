"""Stores, their contracts and high-ratio approvals: /v3/mall/tenants."""

from __future__ import annotations

from aiohttp import web

from gateway.api import caller_of, services_of
from gateway.api.middleware import json_body
from gateway.api.mall.common import paging, require_role
from gateway.api.orders import json_response
from gateway.errors import ResourceNotExists
from gateway.repo import tenants as tenants_repo
from gateway.repo import guides as guides_repo
from gateway.services import onboarding, receivers

routes = web.RouteTableDef()


@routes.post("/v3/mall/tenants")
async def create_tenant(request: web.Request) -> web.Response:
    caller = caller_of(request)
    require_role(caller, "admin")
    tenant = onboarding.tenant_from_fields(caller.mall_id, await json_body(request))
    created = await onboarding.create_tenant(services_of(request).pool, tenant)
    return json_response(created.as_json())


@routes.get("/v3/mall/tenants")
async def list_tenants(request: web.Request) -> web.Response:
    caller = caller_of(request)
    require_role(caller, "admin", "mall_app", "finance", "tenant")
    limit, offset = paging(request)
    async with services_of(request).pool.acquire() as conn:
        if caller.role == "tenant":  # a store's list is itself
            own = await tenants_repo.tenant(conn, caller.mall_id, caller.sub_mchid)
            found = [own][offset:offset + limit] if own else []
            total = 1 if own else 0
        else:
            found, total = await tenants_repo.tenants(conn, caller.mall_id, limit, offset)
    return json_response({"total_count": total, "offset": offset, "limit": limit,
                          "data": [t.as_json() for t in found]})


@routes.get("/v3/mall/tenants/{sub_mchid}")
async def get_tenant(request: web.Request) -> web.Response:
    caller = caller_of(request)
    sub_mchid = request.match_info["sub_mchid"]
    async with services_of(request).pool.acquire() as conn:
        tenant = await tenants_repo.tenant(conn, caller.mall_id, sub_mchid)
    if tenant is None or not caller.sees_store(tenant.sub_mchid):
        raise ResourceNotExists("tenant_not_found")
    return json_response(tenant.as_json())


@routes.patch("/v3/mall/tenants/{sub_mchid}/contract")
async def change_contract(request: web.Request) -> web.Response:
    caller = caller_of(request)
    require_role(caller, "admin")
    tenant = await onboarding.change_contract(services_of(request).pool, caller.mall_id,
                                              request.match_info["sub_mchid"], await json_body(request))
    return json_response(tenant.as_json())


@routes.put("/v3/mall/tenants/{sub_mchid}/points-rule")
async def set_points_rule(request: web.Request) -> web.Response:
    caller = caller_of(request)
    require_role(caller, "admin")
    return json_response(await onboarding.set_points_rule(services_of(request), caller.mall_id,
                                                          request.match_info["sub_mchid"], await json_body(request)))


@routes.get("/v3/mall/tenants/{sub_mchid}/points-rule")
async def get_points_rule(request: web.Request) -> web.Response:
    caller = caller_of(request)
    require_role(caller, "admin", "finance", "tenant")
    sub_mchid = request.match_info["sub_mchid"]
    if not caller.sees_store(sub_mchid):
        raise ResourceNotExists("tenant_not_found")
    return json_response(await onboarding.points_rule(services_of(request), caller.mall_id, sub_mchid))


@routes.post("/v3/mall/tenants/{sub_mchid}/approvals")
async def approve_high_ratio(request: web.Request) -> web.Response:
    caller = caller_of(request)
    require_role(caller, "admin")
    svc = services_of(request)
    return json_response(await receivers.approve_high_ratio(
        svc, caller.mall_id, request.match_info["sub_mchid"], await json_body(request)))


@routes.get("/v3/mall/tenants/{sub_mchid}/approvals")
async def list_approvals(request: web.Request) -> web.Response:
    caller = caller_of(request)
    require_role(caller, "admin", "finance")
    async with services_of(request).pool.acquire() as conn:
        rows = await guides_repo.approvals(conn, caller.mall_id, request.match_info["sub_mchid"])
    return json_response({"data": [{"approval_id": r["approval_id"], "approved_by": r["approved_by"],
                                    "approved_at": r["approved_at"].isoformat(), "reason": r["reason"],
                                    "max_ratio_bps": r["max_ratio_bps"]} for r in rows]})
