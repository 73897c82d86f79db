"""Payouts: money the channel paid from a store's balance to its bank. /v3/mall/payouts.

A `tenant` client sees its own store's payouts only; another store's sub_mchid answers
exactly as an unknown store does (404 RESOURCE_NOT_EXISTS). finance and admin see all.
"""

from __future__ import annotations

from datetime import date

from aiohttp import web

from gateway.api import json_or_missing, services_of
from gateway.api.mall.common import caller_in_role, listed_store, paging
from gateway.domain_errors import InvalidField, NotFound
from gateway.services import payouts
from gateway.services.reconciliation import day_window
from gateway.wire import iso_day

routes = web.RouteTableDef()
RANGE_DAYS_MAX = 366


def day_param(request: web.Request, name: str) -> date:
    day = iso_day(request.query.get(name))
    if day is None:
        raise InvalidField(name, "bad_format", f"{name} must be yyyy-MM-DD (China time)")
    return day


@routes.get("/v3/mall/payouts")
async def list_payouts(request: web.Request) -> web.Response:
    caller = caller_in_role(request, "tenant", "finance", "admin")
    sub_mchid = listed_store(request, caller)
    first, last = day_param(request, "from"), day_param(request, "to")
    if last < first or (last - first).days >= RANGE_DAYS_MAX:
        raise InvalidField("to", "out_of_range", f"from ≤ to, at most {RANGE_DAYS_MAX} days")
    limit, offset = paging(request)
    found = await payouts.store_payouts(services_of(request), caller, sub_mchid, day_window(first)[0],
                                        day_window(last)[1], limit, offset)
    return json_or_missing(found, NotFound("tenant"))
