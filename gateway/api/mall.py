"""Mall extensions under /v3/mall: stores, API clients, the ledger, notifications."""

from __future__ import annotations

from aiohttp import web

from gateway.api import caller_of, services_of
from gateway.api.middleware import CLIENT_KEYS, json_body
from gateway.api.orders import json_response
from gateway.errors import NoAuth, ParamError, ResourceNotExists
from gateway.repo import outbox as outbox_repo
from gateway.repo import tenants as tenants_repo
from gateway.repo.clients import Caller, revoke_client_key
from gateway.repo import guides as guides_repo
from gateway.services import onboarding, receivers
from ledger import repo as ledger_repo

routes = web.RouteTableDef()
PAGE_LIMIT_MAX = 100
PAGE_OFFSET_MAX = 1_000_000


def require_role(caller: Caller, *roles: str) -> None:
    if caller.role not in roles:
        raise NoAuth("role_not_allowed", f"this needs role {' or '.join(roles)}")


def _paging(request: web.Request) -> tuple[int, int]:
    try:
        limit = int(request.query.get("limit", "20"))
        offset = int(request.query.get("offset", "0"))
    except ValueError:
        raise ParamError("limit", "not_an_integer") from None
    if not 1 <= limit <= PAGE_LIMIT_MAX:
        raise ParamError("limit", "out_of_range", f"limit 1 to {PAGE_LIMIT_MAX}")
    if not 0 <= offset <= PAGE_OFFSET_MAX:  # PostgreSQL's OFFSET is a bigint; far below it anyway
        raise ParamError("offset", "out_of_range", f"offset 0 to {PAGE_OFFSET_MAX}")
    return limit, offset


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
    require_role(caller, "admin", "mall_app", "finance")
    limit, offset = _paging(request)
    async with services_of(request).pool.acquire() as conn:
        found, total = await tenants_repo.tenants(conn, caller.mall_id, limit, offset)
    return json_response({"total_count": total, "offset": offset, "limit": limit,
                          "data": [t.as_json() for t in found]})


@routes.get("/v3/mall/tenants/{sub_mchid}")
async def get_tenant(request: web.Request) -> web.Response:
    caller = caller_of(request)
    sub_mchid = request.match_info["sub_mchid"]
    if caller.role == "tenant" and caller.sub_mchid != sub_mchid:
        raise NoAuth("other_store", "a store sees only itself")
    async with services_of(request).pool.acquire() as conn:
        tenant = await tenants_repo.tenant(conn, caller.mall_id, sub_mchid)
    if tenant is None:
        raise ResourceNotExists("tenant_not_found")
    return json_response(tenant.as_json())


@routes.post("/v3/mall/guides")
async def register_guide(request: web.Request) -> web.Response:
    caller = caller_of(request)
    require_role(caller, "admin")
    svc = services_of(request)
    return json_response(await receivers.register_guide(svc, caller.mall_id, await json_body(request)))


@routes.get("/v3/mall/guides")
async def list_guides(request: web.Request) -> web.Response:
    caller = caller_of(request)
    require_role(caller, "admin", "mall_app")
    limit, offset = _paging(request)
    async with services_of(request).pool.acquire() as conn:
        rows = await guides_repo.guides(conn, caller.mall_id, limit, offset)
    return json_response({"data": [receivers.guide_json(r) for r in rows], "offset": offset, "limit": limit})


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


@routes.patch("/v3/mall/tenants/{sub_mchid}/contract")
async def change_contract(request: web.Request) -> web.Response:
    caller = caller_of(request)
    require_role(caller, "admin")
    tenant = await onboarding.change_contract(services_of(request).pool, caller.mall_id,
                                              request.match_info["sub_mchid"], await json_body(request))
    return json_response(tenant.as_json())


@routes.post("/v3/mall/clients")
async def create_client(request: web.Request) -> web.Response:
    caller = caller_of(request)
    require_role(caller, "admin")
    body = await json_body(request)
    if not isinstance(body, dict):
        raise ParamError("body", "not_an_object")
    name = body.get("name") or body.get("role")
    if not isinstance(name, str) or len(name) > onboarding.NAME_CHARS_MAX:
        raise ParamError("name", "bad_length_or_characters")
    svc = services_of(request)
    created = await onboarding.create_client(
        svc.pool, mall_id=caller.mall_id, role=body.get("role"), sub_mchid=body.get("sub_mchid"),
        name=name, public_key_pem=body.get("public_key"),
    )
    return json_response({
        "mchid": created.client_id, "sp_mchid": caller.mall_id, "appid": caller.sp_appid,
        "merchant_serial_no": created.serial_no, "apiv3_key": created.apiv3_key.reveal().decode(),
        "public_key_id": svc.identity.public_key_id,
        "public_key": svc.identity.public_key_pem.decode(),
    })


@routes.post("/v3/mall/clients/{mchid}/keys")
async def add_client_key(request: web.Request) -> web.Response:
    caller = caller_of(request)
    require_role(caller, "admin")
    body = await json_body(request)
    if not isinstance(body, dict):
        raise ParamError("body", "not_an_object")
    serial_no = await onboarding.add_client_key(services_of(request).pool, caller.mall_id,
                                                request.match_info["mchid"], body.get("public_key"))
    return json_response({"mchid": request.match_info["mchid"], "serial_no": serial_no})


@routes.delete("/v3/mall/clients/{mchid}/keys/{serial_no}")
async def revoke_key(request: web.Request) -> web.Response:
    caller = caller_of(request)
    require_role(caller, "admin")
    svc = services_of(request)
    mchid, serial_no = request.match_info["mchid"], request.match_info["serial_no"]
    async with svc.pool.acquire() as conn:
        revoked = await revoke_client_key(conn, caller.mall_id, mchid, serial_no, svc.clock())
    if not revoked:
        raise ResourceNotExists("key_not_found")
    request.app[CLIENT_KEYS].forget(mchid)
    return web.Response(status=204)


@routes.get("/v3/mall/ledger/trial-balance")
async def trial_balance(request: web.Request) -> web.Response:
    caller = caller_of(request)
    require_role(caller, "finance", "admin")
    async with services_of(request).pool.acquire() as conn:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            rows = await ledger_repo.trial_balance(conn, caller.mall_id)
    totals: dict[str, int] = {}
    for _, currency, balance in rows:
        totals[currency] = totals.get(currency, 0) + balance
    return json_response({
        "accounts": [{"account": a, "currency": c, "balance": b} for a, c, b in rows],
        "totals": totals, "balanced": all(v == 0 for v in totals.values()),
    })


@routes.get("/v3/mall/notifications")
async def notifications(request: web.Request) -> web.Response:
    caller = caller_of(request)
    require_role(caller, "admin")
    limit, _ = _paging(request)
    async with services_of(request).pool.acquire() as conn:
        counts = await outbox_repo.counts(conn, caller.mall_id)
        dead = await outbox_repo.dead_letters(conn, caller.mall_id, limit)
    return json_response({
        "counts": counts,
        "dead": [{"id": str(r["notification_id"]), "event_type": r["event_type"], "ref": r["ref"],
                  "client_mchid": r["client_id"], "attempts": r["attempts"],
                  "last_error": r["last_error"]} for r in dead],
    })
