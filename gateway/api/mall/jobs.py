"""/v3/mall/jobs: the scheduler's work that gave up, for admins to retry or resolve."""

from __future__ import annotations

from aiohttp import web

from gateway.api import json_response, services_of
from gateway.api.mall.common import caller_in_role, paging
from gateway.api.middleware import json_body
from gateway.api.requests import body_object
from gateway.api.requests.mall import parse_job_reason, parse_job_state
from gateway.domain_errors import NotFound
from gateway.services import stuck_jobs
from gateway.wire import ascii_int

routes = web.RouteTableDef()


def _job_id(request: web.Request) -> int:
    job_id = ascii_int(request.match_info["job_id"])
    if job_id is None:
        raise NotFound("job")
    return job_id


@routes.get("/v3/mall/jobs")
async def list_jobs(request: web.Request) -> web.Response:
    caller = caller_in_role(request, "admin")
    limit, offset = paging(request)
    state = parse_job_state(request.query.get("state"))
    return json_response(await stuck_jobs.list_jobs(services_of(request), caller.mall_id, state, limit, offset))


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
