"""Reconciliation reports for finance: /v3/mall/reconciliations (SPEC 6).

  POST /v3/mall/reconciliations {"date": "yyyy-MM-DD"}   run the day now (answers its report)
  GET  /v3/mall/reconciliations[?date=]                  the reports, newest first
  GET  /v3/mall/reconciliations/{date}                   one day's report with its discrepancies
"""

from __future__ import annotations

from aiohttp import web

from gateway.api import json_or_missing, json_response, services_of
from gateway.api.mall.common import caller_in_role, paging
from gateway.api.mall.payouts import day_param
from gateway.api.middleware import json_body
from gateway.api.requests.mall import parse_reconciliation_day
from gateway.channel import BillNotReady, ChannelError
from gateway.domain_errors import ChannelUnavailable, NotFound
from gateway.services import reconciliation
from gateway.wire import iso_day

routes = web.RouteTableDef()
ITEMS_MAX = 1_000


@routes.post("/v3/mall/reconciliations")
async def run(request: web.Request) -> web.Response:
    caller = caller_in_role(request, "finance", "admin")
    svc = services_of(request)
    bill_on = parse_reconciliation_day(await json_body(request), reconciliation.china_today(svc.clock()))
    try:
        found = await reconciliation.reconcile_and_report(svc, caller.mall_id, bill_on, ITEMS_MAX)
    except ChannelError as exc:
        raise ChannelUnavailable("bill_not_ready" if isinstance(exc, BillNotReady) else "channel_error",
                                 channel_code=exc.code) from None
    return json_or_missing(found, NotFound("reconciliation"))


@routes.get("/v3/mall/reconciliations")
async def list_reports(request: web.Request) -> web.Response:
    caller = caller_in_role(request, "finance", "admin")
    bill_on = day_param(request, "date") if "date" in request.query else None
    limit, offset = paging(request)
    return json_response(await reconciliation.reports(services_of(request), caller.mall_id, bill_on, limit, offset))


@routes.get("/v3/mall/reconciliations/{date}")
async def get_report(request: web.Request) -> web.Response:
    caller = caller_in_role(request, "finance", "admin")
    bill_on = iso_day(request.match_info["date"])
    if bill_on is None:
        raise NotFound("reconciliation")
    found = await reconciliation.report(services_of(request), caller.mall_id, bill_on, ITEMS_MAX)
    return json_or_missing(found, NotFound("reconciliation"))
