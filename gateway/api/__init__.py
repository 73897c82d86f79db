"""The HTTP edge: one module per API resource, plus the middlewares every request passes."""

from aiohttp import web

from gateway.repo.clients import Caller
from gateway.services.context import Services

SERVICES = web.AppKey("services", Services)
CALLER = web.RequestKey("caller", Caller)  # set by the authentication middleware


def caller_of(request: web.Request) -> Caller:
    return request[CALLER]


def services_of(request: web.Request) -> Services:
    return request.app[SERVICES]
