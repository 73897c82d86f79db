"""/v3/mall/jobs: the scheduler's work that gave up, for admins to retry or resolve."""

from __future__ import annotations

from aiohttp import web

from gateway.api import json_response, services_of
from gateway.api.handlers import admin_listing_by_state
from gateway.api.mall.common import caller_in_role, path_number
from gateway.api.middleware import json_body
from gateway.api.requests import body_object
from gateway.api.requests.mall import parse_job_reason, parse_job_state
from gateway.domain_errors import NotFound
from gateway.services import stuck_jobs

routes = web.RouteTableDef()


def _job_id(request: web.Request) -> int:
    return path_number(request, "job_id", "job")


@routes.get("/v3/mall/jobs")
async def list_jobs(request: web.Request) -> web.Response:
    return await admin_listing_by_state(request, parse_job_state, stuck_jobs.list_jobs)


@routes.get("/v3/mall/jobs/{job_id}")
async def get_job(request: web.Request) -> web.Response:
    caller = caller_in_role(request, "admin")
    return json_response(await stuck_jobs.job_with_actions(services_of(request), caller.mall_id, _job_id(request)))


@routes.post("/v3/mall/jobs/{job_id}/{action}")
async def act_on_job(request: web.Request) -> web.Response:
    caller = caller_in_role(request, "admin")
    action = request.match_info["action"]
    if action not in stuck_jobs.ACTIONS:
        raise NotFound("action")
    body = body_object(await json_body(request))
    job_id = _job_id(request)
    reason = parse_job_reason(body)
    return json_response(await stuck_jobs.act(services_of(request), caller.mall_id, job_id, action,
                                              caller.client_id, reason))
