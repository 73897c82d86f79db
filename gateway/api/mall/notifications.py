"""Notification delivery for operators: /v3/mall/notifications."""

from __future__ import annotations

from aiohttp import web

from gateway.api import caller_of, services_of
from gateway.api.mall.common import paging, require_role
from gateway.api.orders import json_response
from gateway.repo import outbox as outbox_repo

routes = web.RouteTableDef()


@routes.get("/v3/mall/notifications")
async def notifications(request: web.Request) -> web.Response:
    caller = caller_of(request)
    require_role(caller, "admin")
    limit, _ = paging(request)
    async with services_of(request).pool.acquire() as conn:
        counts = await outbox_repo.counts(conn, caller.mall_id)
        dead = await outbox_repo.dead_letters(conn, caller.mall_id, limit)
    return json_response({
        "counts": counts,
        "dead": [{"id": str(r["notification_id"]), "event_type": r["event_type"], "ref": r["ref"],
                  "client_mchid": r["client_id"], "attempts": r["attempts"],
                  "last_error": r["last_error"]} for r in dead],
    })
