"""What every mall resource's handlers share: role checks and paging."""

from __future__ import annotations

from aiohttp import web

from gateway.api import caller_of
from gateway.api.requests.mall import parse_store_filter
from gateway.domain_errors import InvalidField, NotFound, NotPermitted
from gateway.caller import Caller
from gateway.wire import ascii_int

PAGE_LIMIT_MAX = 100
PAGE_OFFSET_MAX = 1_000_000
PAGING_DIGITS_MAX = 30  # longer numbers are out of range too, not malformed


def require_role(caller: Caller, *roles: str) -> None:
    if caller.role not in roles:
        raise NotPermitted("role_not_allowed", f"this needs role {' or '.join(roles)}")


def caller_in_role(request: web.Request, *roles: str) -> Caller:
    """The request's caller, refused unless its role is one of `roles`."""
    caller = caller_of(request)
    require_role(caller, *roles)
    return caller


def paging(request: web.Request) -> tuple[int, int]:
    limit = ascii_int(request.query.get("limit", "20"), PAGING_DIGITS_MAX)
    offset = ascii_int(request.query.get("offset", "0"), PAGING_DIGITS_MAX)
    if limit is None or offset is None:
        raise InvalidField("limit", "not_an_integer")
    if not 1 <= limit <= PAGE_LIMIT_MAX:
        raise InvalidField("limit", "out_of_range", f"limit 1 to {PAGE_LIMIT_MAX}")
    if not 0 <= offset <= PAGE_OFFSET_MAX:  # PostgreSQL's OFFSET is a bigint; far below it anyway
        raise InvalidField("offset", "out_of_range", f"offset 0 to {PAGE_OFFSET_MAX}")
    return limit, offset


def path_number(request: web.Request, name: str, resource: str) -> int:
    """The number a path names (a job, a points sync, a campaign); a malformed one names
    no resource, so it is missing like an unknown one."""
    number = ascii_int(request.match_info[name])
    if number is None:
        raise NotFound(resource)
    return number


def listed_store(request: web.Request, caller: Caller) -> str | None:
    """The one store a listing is limited to: the `?sub_mchid` named (the service answers
    a store the caller may not see as missing), else a store's own for its credentials,
    else every store's (None)."""
    sub_mchid = parse_store_filter(request.query.get("sub_mchid"))
    if caller.role == "tenant" and sub_mchid is None:
        return caller.sub_mchid
    return sub_mchid
