"""What every mall resource's handlers share: role checks and paging."""

from __future__ import annotations

from aiohttp import web

from gateway.api import caller_of
from gateway.domain_errors import InvalidField, NotPermitted
from gateway.caller import Caller

PAGE_LIMIT_MAX = 100
PAGE_OFFSET_MAX = 1_000_000


def require_role(caller: Caller, *roles: str) -> None:
    if caller.role not in roles:
        raise NotPermitted("role_not_allowed", f"this needs role {' or '.join(roles)}")


def caller_in_role(request: web.Request, *roles: str) -> Caller:
    """The request's caller, refused unless its role is one of `roles`."""
    caller = caller_of(request)
    require_role(caller, *roles)
    return caller


def paging(request: web.Request) -> tuple[int, int]:
    try:
        limit = int(request.query.get("limit", "20"))
        offset = int(request.query.get("offset", "0"))
    except ValueError:
        raise InvalidField("limit", "not_an_integer") from None
    if not 1 <= limit <= PAGE_LIMIT_MAX:
        raise InvalidField("limit", "out_of_range", f"limit 1 to {PAGE_LIMIT_MAX}")
    if not 0 <= offset <= PAGE_OFFSET_MAX:  # PostgreSQL's OFFSET is a bigint; far below it anyway
        raise InvalidField("offset", "out_of_range", f"offset 0 to {PAGE_OFFSET_MAX}")
    return limit, offset
