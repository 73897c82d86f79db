"""`/health`: the process is up. `/health/ready`: it can do its work — every required
check of `gateway.health` passed (database reachable, every background loop running);
503 otherwise, so a load balancer stops sending it requests."""

from __future__ import annotations

from aiohttp import web

from gateway.health import HEALTH
from gateway.wire import json_bytes

routes = web.RouteTableDef()


@routes.get("/health")
async def up(_request: web.Request) -> web.Response:
    return web.Response(body=json_bytes({"status": "up"}), content_type="application/json", charset="utf-8")


@routes.get("/health/ready")
async def ready(request: web.Request) -> web.Response:
    is_ready, checks = await request.app[HEALTH].run(request.app)
    body = {"status": "ready" if is_ready else "not_ready", "checks": checks}
    return web.Response(status=200 if is_ready else 503, body=json_bytes(body),
                        content_type="application/json", charset="utf-8")
