"""/v3/mall/points/syncs: points changes WeChat never took, for admins to see and retry."""

from __future__ import annotations

from aiohttp import web

from gateway.api import services_of
from gateway.api.handlers import admin_listing_by_state
from gateway.api.mall.common import caller_in_role, path_number
from gateway.api.orders import json_response
from gateway.api.requests.mall import parse_sync_state
from gateway.domain_errors import NotFound, Refused
from gateway.services import points

routes = web.RouteTableDef()


@routes.get("/v3/mall/points/syncs")
async def list_syncs(request: web.Request) -> web.Response:
    return await admin_listing_by_state(request, parse_sync_state, points.list_syncs)


@routes.post("/v3/mall/points/syncs/{sync_id}/retry")
async def retry_sync(request: web.Request) -> web.Response:
    caller = caller_in_role(request, "admin")
    sync_id = path_number(request, "sync_id", "points_sync")
    sync, state = await points.retry_sync(services_of(request), caller.mall_id, sync_id)
    if sync is None and state is None:
        raise NotFound("points_sync")
    if sync is None:
        raise Refused("points_sync_not_dead", f"only a dead sync is retried; this one is {state}", state=state)
    return json_response(sync)
