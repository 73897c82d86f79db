"""/v3/refund/domestic/refunds and /v3/profitsharing/return-orders."""

from __future__ import annotations

import re

from aiohttp import web

from gateway.api import caller_of, services_of
from gateway.api.middleware import json_body
from gateway.api.orders import json_response
from gateway.api.profitsharing import OUT_NO_RE, _field, _mall_app, _object
from gateway.errors import ParamError, ResourceNotExists
from gateway.repo import splitting as repo
from gateway.services import refunds, returns
from gateway.services.order_requests import MCHID_RE, OUT_TRADE_NO_RE, request_hash, _notify_url

routes = web.RouteTableDef()
REASON_CHARS_MAX = 80
TRANSACTION_ID_RE = re.compile(r"[0-9]{1,32}")


def _refund_fields(body: dict, allow_loopback_http: bool) -> dict:
    fields = {"sub_mchid": _field(body, "sub_mchid", MCHID_RE),
              "out_refund_no": _field(body, "out_refund_no", OUT_NO_RE),
              "transaction_id": _field(body, "transaction_id", TRANSACTION_ID_RE, required=False),
              "out_trade_no": _field(body, "out_trade_no", OUT_TRADE_NO_RE, required=False),
              "request_hash": request_hash(body)}
    if (fields["transaction_id"] is None) == (fields["out_trade_no"] is None):
        raise ParamError("transaction_id", "one_of_transaction_id_out_trade_no")
    reason = body.get("reason")
    if reason is not None and (not isinstance(reason, str) or len(reason) > REASON_CHARS_MAX):
        raise ParamError("reason", "bad_length_or_characters")
    fields["reason"] = reason
    fields["notify_url"] = _notify_url(body, allow_loopback_http) if body.get("notify_url") else None
    if body.get("funds_account") not in (None, "AVAILABLE", "UNSETTLED"):
        raise ParamError("funds_account", "unknown_funds_account")
    amount = body.get("amount")
    if not isinstance(amount, dict):
        raise ParamError("amount", "required")
    for name in ("refund", "total"):
        value = amount.get(name)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ParamError(f"amount.{name}", "not_a_positive_integer")
    if amount.get("currency", "CNY") != "CNY":
        raise ParamError("amount.currency", "unsupported_currency")
    fields["amount_fen"], fields["total_fen"] = amount["refund"], amount["total"]
    return fields


@routes.post("/v3/refund/domestic/refunds")
async def create_refund(request: web.Request) -> web.Response:
    svc, caller = services_of(request), _mall_app(request)
    fields = _refund_fields(_object(await json_body(request)), svc.settings.channel_is_emulator)
    return json_response(await refunds.request_refund(svc, caller, fields))


@routes.get("/v3/refund/domestic/refunds/{out_refund_no}")
async def query_refund(request: web.Request) -> web.Response:
    svc, caller = services_of(request), caller_of(request)
    sub_mchid = request.query.get("sub_mchid", "")
    if not MCHID_RE.fullmatch(sub_mchid):
        raise ParamError("sub_mchid", "required")
    key = (caller.mall_id, sub_mchid, request.match_info["out_refund_no"])
    async with svc.pool.acquire() as conn:
        row = await repo.refund(conn, *key)
    if row is None or not caller.sees_store(row["sub_mchid"]):
        raise ResourceNotExists("refund_not_found")
    return json_response(refunds.refund_json(row))


@routes.post("/v3/profitsharing/return-orders")
async def create_return(request: web.Request) -> web.Response:
    svc, caller = services_of(request), _mall_app(request)
    body = _object(await json_body(request))
    amount = body.get("amount")
    if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
        raise ParamError("amount", "not_a_positive_integer")
    if body.get("order_id") is not None and body.get("out_order_no") is None:
        raise ParamError("out_order_no", "required", "name the split by out_order_no")
    fields = {"sub_mchid": _field(body, "sub_mchid", MCHID_RE),
              "out_order_no": _field(body, "out_order_no", OUT_NO_RE),
              "out_return_no": _field(body, "out_return_no", OUT_NO_RE),
              "return_mchid": _field(body, "return_mchid", MCHID_RE),
              "amount_fen": amount, "description": body.get("description"),
              "request_hash": request_hash(body)}
    if not isinstance(fields["description"], str) or not fields["description"]:
        raise ParamError("description", "required")
    return json_response(await returns.request_return(svc, caller, fields))


@routes.get("/v3/profitsharing/return-orders/{out_return_no}")
async def query_return(request: web.Request) -> web.Response:
    svc, caller = services_of(request), caller_of(request)
    sub_mchid = request.query.get("sub_mchid", "")
    if not MCHID_RE.fullmatch(sub_mchid):
        raise ParamError("sub_mchid", "required")
    async with svc.pool.acquire() as conn:
        row = await repo.split_return(conn, caller.mall_id, sub_mchid, request.match_info["out_return_no"])
    if row is None or row["out_order_no"] != request.query.get("out_order_no") or not caller.sees_store(row["sub_mchid"]):
        raise ResourceNotExists("return_not_found")
    if row["state"] in ("PREPARED", "PROCESSING"):
        row = await returns.advance(svc, row)
    return json_response(returns.return_json(row))
