"""Shopping guides, each of one store: /v3/mall/guides."""

from __future__ import annotations

from aiohttp import web

from gateway.api import json_response, services_of
from gateway.api.mall.common import caller_in_role, paging
from gateway.api.middleware import json_body
from gateway.api.requests.mall import parse_guide
from gateway.services import receivers

routes = web.RouteTableDef()


@routes.post("/v3/mall/guides")
async def register_guide(request: web.Request) -> web.Response:
    caller = caller_in_role(request, "admin")
    guide = parse_guide(await json_body(request))
    return json_response(await receivers.register_guide(services_of(request), caller.mall_id, guide))


@routes.get("/v3/mall/guides")
async def list_guides(request: web.Request) -> web.Response:
    caller = caller_in_role(request, "admin", "mall_app")
    limit, offset = paging(request)
    return json_response(await receivers.guides_page(services_of(request), caller.mall_id, limit, offset))
