"""The HTTP edge: one module per API resource, plus the middlewares every request passes."""

from aiohttp import web

from gateway.caller import Caller
from gateway.domain_errors import DomainError, NotPermitted
from gateway.services.context import Services
from gateway.wire import json_bytes

SERVICES = web.AppKey("services", Services)
CALLER = web.RequestKey("caller", Caller)  # set by the authentication middleware


def caller_of(request: web.Request) -> Caller:
    return request[CALLER]


def services_of(request: web.Request) -> Services:
    return request.app[SERVICES]


def json_response(body: dict, status: int = 200) -> web.Response:
    return web.Response(status=status, body=json_bytes(body), content_type="application/json",
                        charset="utf-8")


def json_or_missing(body: dict | None, missing: DomainError) -> web.Response:
    """A service's answer, or `missing` raised when it found nothing the caller may see."""
    if body is None:
        raise missing
    return json_response(body)


def mall_app_of(request: web.Request) -> Caller:
    """The caller, who must be the mall's app: it alone asks for splits, refunds and returns."""
    caller = request[CALLER]
    if caller.role != "mall_app":
        raise NotPermitted("role_not_allowed", "splits are requested by the mall's app")
    return caller
