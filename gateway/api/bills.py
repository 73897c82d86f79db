"""The mall backend's bills, as WeChat serves them (SPEC 2): apply, then download.

  GET /v3/bill/tradebill?bill_date[&sub_mchid][&bill_type=ALL][&tar_type=GZIP]
  GET /v3/profitsharing/bills?bill_date[&sub_mchid][&tar_type=GZIP]
      -> {download_url, hash_type: "SHA1", hash_value}
  GET /v3/billdownload/file?token=...   the file (signed like every answer; SHA-1 = hash_value)

A `tenant` client gets its own store's bills only: another store's answer as a store with
nothing that day does (400 NO_STATEMENT_EXIST). The day is China time and, as at WeChat,
its bill is there from 10:00 on the next day (before: 400 STATEMENT_CREATING).
"""

from __future__ import annotations

import hashlib

from aiohttp import web

from gateway.api import caller_of, services_of
from gateway.api.mall.common import require_role
from gateway.api.orders import json_response
from gateway.api.requests.mall import parse_store_filter
from gateway.domain_errors import InvalidField, NotFound
from gateway.services import own_bills
from gateway.wire import iso_day

routes = web.RouteTableDef()
DOWNLOAD_PATH = "/v3/billdownload/file"


def _request(request: web.Request, bill: str) -> own_bills.BillRequest:
    caller = caller_of(request)
    require_role(caller, "mall_app", "tenant", "finance", "admin")
    bill_on = iso_day(request.query.get("bill_date"))
    if bill_on is None:
        raise InvalidField("bill_date", "bad_format", "bill_date must be yyyy-MM-DD")
    sub_mchid = parse_store_filter(request.query.get("sub_mchid"))
    if request.query.get("tar_type") not in (None, "GZIP"):
        raise InvalidField("tar_type", "bad_value", "tar_type must be GZIP or absent")
    if bill == "trade" and request.query.get("bill_type", "ALL") != "ALL":
        raise InvalidField("bill_type", "bad_value", "only bill_type=ALL is served")
    if caller.role == "tenant":
        if sub_mchid not in (None, caller.sub_mchid):
            raise own_bills.NoStatement()  # exactly what a store with nothing that day gets
        sub_mchid = caller.sub_mchid
    return own_bills.BillRequest(bill, bill_on, sub_mchid, request.query.get("tar_type") == "GZIP",
                                 caller.client_id)


async def _apply(request: web.Request, bill: str) -> web.Response:
    svc, req = services_of(request), _request(request, bill)
    data = await own_bills.bill_bytes(svc, caller_of(request).mall_id, req)
    url = f"{svc.settings.public_url.rstrip('/')}{DOWNLOAD_PATH}?token={own_bills.issue_token(svc, req)}"
    return json_response({"download_url": url, "hash_type": "SHA1", "hash_value": hashlib.sha1(data).hexdigest()})


@routes.get("/v3/bill/tradebill")
async def trade_bill(request: web.Request) -> web.Response:
    return await _apply(request, "trade")


@routes.get("/v3/profitsharing/bills")
async def profitsharing_bill(request: web.Request) -> web.Response:
    return await _apply(request, "profitsharing")


@routes.get(DOWNLOAD_PATH)
async def download(request: web.Request) -> web.Response:
    svc, caller = services_of(request), caller_of(request)
    req = own_bills.read_token(svc, request.query.get("token", ""), caller.client_id)
    if req is None:
        raise NotFound("bill")
    data = await own_bills.bill_bytes(svc, caller.mall_id, req)
    if req.gzip_it:
        return web.Response(body=data, content_type="application/x-gzip")
    return web.Response(body=data, content_type="text/csv", charset="utf-8")
