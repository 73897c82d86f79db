"""API clients and their keys (rotation, revocation): /v3/mall/clients."""

from __future__ import annotations

from aiohttp import web

from gateway.api import json_response, services_of
from gateway.api.mall.common import caller_in_role
from gateway.api.middleware import CLIENT_KEYS, json_body
from gateway.api.requests.mall import parse_client_key, parse_new_client
from gateway.domain_errors import NotFound
from gateway.services import onboarding

routes = web.RouteTableDef()


@routes.post("/v3/mall/clients")
async def create_client(request: web.Request) -> web.Response:
    caller = caller_in_role(request, "admin")
    client = parse_new_client(await json_body(request))
    svc = services_of(request)
    created = await onboarding.create_client(svc, caller.mall_id, client)
    return json_response({
        "mchid": created.client_id, "sp_mchid": caller.mall_id, "appid": caller.sp_appid,
        "merchant_serial_no": created.serial_no, "apiv3_key": created.apiv3_key.reveal().decode(),
        "public_key_id": svc.identity.public_key_id,
        "public_key": svc.identity.public_key_pem.decode(),
        "verification": created.verification,
    })


@routes.post("/v3/mall/clients/{mchid}/keys")
async def add_client_key(request: web.Request) -> web.Response:
    caller = caller_in_role(request, "admin")
    key = parse_client_key(await json_body(request))
    serial_no = await onboarding.add_client_key(services_of(request), caller.mall_id, request.match_info["mchid"], key)
    return json_response({"mchid": request.match_info["mchid"], "serial_no": serial_no})


@routes.delete("/v3/mall/clients/{mchid}/keys/{serial_no}")
async def revoke_key(request: web.Request) -> web.Response:
    caller = caller_in_role(request, "admin")
    mchid, serial_no = request.match_info["mchid"], request.match_info["serial_no"]
    if not await onboarding.revoke_client_key(services_of(request), caller.mall_id, mchid, serial_no):
        raise NotFound("key")
    request.app[CLIENT_KEYS].forget(mchid)
    return web.Response(status=204)
