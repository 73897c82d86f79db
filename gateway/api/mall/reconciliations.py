"""Reconciliation reports for finance: /v3/mall/reconciliations (SPEC 6).

  POST /v3/mall/reconciliations {"date": "yyyy-MM-DD"}   run the day now (answers its report)
  GET  /v3/mall/reconciliations[?date=]                  the reports, newest first
  GET  /v3/mall/reconciliations/{date}                   one day's report with its discrepancies
"""

from __future__ import annotations

from datetime import date

from aiohttp import web

from gateway.api import caller_of, services_of
from gateway.api.mall.common import paging, require_role
from gateway.api.mall.payouts import day_param
from gateway.api.middleware import json_body
from gateway.api.orders import json_response
from gateway.channel import BillNotReady, ChannelError
from gateway.errors import ChannelUnavailable, ParamError, ResourceNotExists
from gateway.repo import bills as repo
from gateway.services import reconciliation
from gateway.wire import to_wechat_time

routes = web.RouteTableDef()
ITEMS_MAX = 1_000


def _summary(row) -> dict:
    return {"date": row["bill_on"].isoformat(), "state": row["state"], "runs": row["runs"], "bills": row["bills"],
            "counts": row["counts"], "started_at": to_wechat_time(row["started_at"]),
            "finished_at": to_wechat_time(row["finished_at"]) if row["finished_at"] else None}


@routes.post("/v3/mall/reconciliations")
async def run(request: web.Request) -> web.Response:
    caller = caller_of(request)
    require_role(caller, "finance", "admin")
    body = await json_body(request)
    body = body if isinstance(body, dict) else {}
    try:
        bill_on = date.fromisoformat(body.get("date")) if isinstance(body.get("date"), str) else None
    except ValueError:
        bill_on = None
    svc = services_of(request)
    if bill_on is None or bill_on >= reconciliation.china_today(svc.clock()):
        raise ParamError("date", "bad_format", "date must be a past day, yyyy-MM-DD (China time)")
    try:
        await reconciliation.reconcile_day(svc, caller.mall_id, bill_on)
    except ChannelError as exc:
        raise ChannelUnavailable("bill_not_ready" if isinstance(exc, BillNotReady) else "channel_error",
                                 channel_code=exc.code) from None
    return await _report(svc, caller.mall_id, bill_on)


@routes.get("/v3/mall/reconciliations")
async def list_reports(request: web.Request) -> web.Response:
    caller = caller_of(request)
    require_role(caller, "finance", "admin")
    bill_on = day_param(request, "date") if "date" in request.query else None
    limit, offset = paging(request)
    async with services_of(request).pool.acquire() as conn:
        rows = await repo.reports(conn, caller.mall_id, bill_on, limit, offset)
    return json_response({"offset": offset, "limit": limit, "data": [_summary(r) for r in rows]})


@routes.get("/v3/mall/reconciliations/{date}")
async def get_report(request: web.Request) -> web.Response:
    caller = caller_of(request)
    require_role(caller, "finance", "admin")
    try:
        bill_on = date.fromisoformat(request.match_info["date"])
    except ValueError:
        raise ResourceNotExists("reconciliation_not_found") from None
    return await _report(services_of(request), caller.mall_id, bill_on)


async def _report(svc, mall_id: str, bill_on: date) -> web.Response:
    async with svc.pool.acquire() as conn:
        row = await repo.report(conn, mall_id, bill_on)
        if row is None:
            raise ResourceNotExists("reconciliation_not_found")
        items = await repo.items(conn, mall_id, bill_on, ITEMS_MAX, 0)
    body = _summary(row)
    body["discrepancies"] = [{
        "bill": i["bill"], "class": i["class"], "ref": i["ref"], "sub_mchid": i["sub_mchid"], "ours": i["ours"],
        "channel": i["channel"], "what": i["what"], "action": i["action"], "healed": i["healed_at"] is not None,
    } for i in items]
    return json_response(body)
