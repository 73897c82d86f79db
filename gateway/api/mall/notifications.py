"""Notification delivery for operators: /v3/mall/notifications."""

from __future__ import annotations

from aiohttp import web

from gateway.api import json_response, services_of
from gateway.api.mall.common import caller_in_role, paging
from gateway.services import notifications

routes = web.RouteTableDef()


@routes.get("/v3/mall/notifications")
async def list_notifications(request: web.Request) -> web.Response:
    caller = caller_in_role(request, "admin")
    limit, _ = paging(request)
    return json_response(await notifications.delivery_report(services_of(request), caller.mall_id, limit))
