"""What handlers of several resources share: the mall app's commands, and lookups that
answer as missing what the caller may not see."""

from __future__ import annotations

from typing import Awaitable, Callable

from aiohttp import web

from gateway.api import caller_of, json_or_missing, json_response, mall_app_of, services_of
from gateway.api.middleware import json_body
from gateway.domain_errors import DomainError


async def mall_app_command(request: web.Request, parse: Callable[[object], object],
                           run: Callable[..., Awaitable[dict]]) -> web.Response:
    """A command only the mall's app sends: its JSON body parsed by `parse` once the caller
    is known to be the mall's app, then `run(svc, caller, parsed)` answered as JSON."""
    svc, caller = services_of(request), mall_app_of(request)
    return json_response(await run(svc, caller, parse(await json_body(request))))


async def found_or_missing(request: web.Request, find: Callable[..., Awaitable[dict | None]], missing: DomainError,
                           *keys) -> web.Response:
    """`find(svc, caller, *keys)` answered as JSON, or `missing` raised when it found
    nothing the caller may see."""
    found = await find(services_of(request), caller_of(request), *keys)
    return json_or_missing(found, missing)
