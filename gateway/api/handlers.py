"""What handlers of several resources share: the mall app's commands, lookups that
answer as missing what the caller may not see, and the admin's listings by state."""

from __future__ import annotations

from typing import Awaitable, Callable

from aiohttp import web

from gateway.api import caller_of, json_or_missing, json_response, mall_app_of, services_of
from gateway.api.mall.common import caller_in_role, paging
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


async def admin_listing_by_state(request: web.Request, parse_state: Callable[[str | None], object],
                                 listing: Callable[..., Awaitable[dict]]) -> web.Response:
    """A page of what the admin watches, in the state `?state` names (`parse_state`):
    `listing(svc, mall_id, state, limit, offset)` answered as JSON."""
    caller = caller_in_role(request, "admin")
    limit, offset = paging(request)
    state = parse_state(request.query.get("state"))
    return json_response(await listing(services_of(request), caller.mall_id, state, limit, offset))
