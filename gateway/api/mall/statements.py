"""A store's statement: GET /v3/mall/statements?sub_mchid&date[&to][&format=csv|json]."""

from __future__ import annotations

from aiohttp import web

from gateway.api import services_of
from gateway.api.mall.common import caller_in_role
from gateway.api.requests.ledger import parse_day, statement_period
from gateway.domain_errors import InvalidField
from gateway.services import statements
from gateway.formats import MCHID_RE
from ledger.statement_formats import rendered_csv, rendered_json_bytes

routes = web.RouteTableDef()
FORMATS = ("json", "csv")


@routes.get("/v3/mall/statements")
async def get_statement(request: web.Request) -> web.Response:
    caller = caller_in_role(request, "tenant", "finance", "admin")
    sub_mchid = request.query.get("sub_mchid", "")
    if not MCHID_RE.fullmatch(sub_mchid):
        raise InvalidField("sub_mchid", "required" if not sub_mchid else "bad_format")
    from_on = parse_day(request.query.get("date"), "date")
    to_on = parse_day(request.query["to"], "to") if "to" in request.query else from_on
    fmt = request.query.get("format", "json")
    if fmt not in FORMATS:
        raise InvalidField("format", "unknown_format", "format is csv or json")
    from_on, to_on = statement_period(from_on, to_on)
    statement = await statements.rendered(services_of(request), caller.mall_id, sub_mchid, from_on, to_on,
                                          visible=caller.sees_store(sub_mchid), csv=fmt == "csv", json=fmt == "json")
    if fmt == "json":
        return web.Response(body=rendered_json_bytes(statement), content_type="application/json",
                            charset="utf-8")
    name = f"statement-{sub_mchid}-{from_on.isoformat()}-{to_on.isoformat()}.csv"
    return web.Response(body=rendered_csv(statement), content_type="text/csv", charset="utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})
