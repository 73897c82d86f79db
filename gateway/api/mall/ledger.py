"""The ledger for finance: /v3/mall/ledger (trial balance and balances, now or at an instant)."""

from __future__ import annotations

from datetime import datetime

from aiohttp import web

from gateway.api import json_response, services_of
from gateway.api.mall.common import caller_in_role
from gateway.domain_errors import InvalidField, NotFound
from gateway.api.requests.ledger import export_range, parse_instant
from gateway.services import exports, statements
from ledger import export as formats

routes = web.RouteTableDef()
ACCOUNTS_PER_REQUEST_MAX = 100
ACCOUNT_CHARS_MAX = 128


def _balances_json(rows, at: datetime | None) -> dict:
    totals: dict[str, int] = {}
    for _, currency, balance in rows:
        totals[currency] = totals.get(currency, 0) + balance
    return {"at": None if at is None else at.isoformat(),
            "accounts": [{"account": a, "currency": c, "balance": b} for a, c, b in rows],
            "totals": totals, "balanced": all(v == 0 for v in totals.values())}


@routes.get("/v3/mall/ledger/trial-balance")
async def trial_balance(request: web.Request) -> web.Response:
    caller = caller_in_role(request, "finance", "admin")
    at = parse_instant(request.query.get("at"))
    rows = await statements.trial_balance_at(services_of(request), caller.mall_id, at)
    return json_response(_balances_json(rows, at))


@routes.get("/v3/mall/ledger/balances")
async def balances(request: web.Request) -> web.Response:
    caller = caller_in_role(request, "finance", "admin")
    names = request.query.getall("account", [])
    if not names:
        raise InvalidField("account", "required")
    if len(names) > ACCOUNTS_PER_REQUEST_MAX or any(len(n) > ACCOUNT_CHARS_MAX for n in names):
        raise InvalidField("account", "too_many_or_too_long", f"at most {ACCOUNTS_PER_REQUEST_MAX} accounts")
    at = parse_instant(request.query.get("at"))
    rows = await statements.balances_at(services_of(request), caller.mall_id, names, at)
    if not rows:
        raise NotFound("account")
    body = _balances_json(rows, at)
    body["missing"] = sorted(set(names) - {a for a, _, _ in rows})
    del body["balanced"]  # a selection of accounts need not sum to zero
    return json_response(body)


EXPORT_CONTENT_TYPES = {"csv": "text/csv", "jsonl": "application/x-ndjson", "beancount": "text/plain"}


@routes.get("/v3/mall/ledger/export")
async def export(request: web.Request) -> web.StreamResponse:
    """Streamed as PostgreSQL produces it: constant memory, one snapshot. A streamed body
    cannot be signed before it is sent, so this answer carries no Wechatpay-Signature;
    errors found before the first byte are signed WeChat bodies as usual."""
    caller = caller_in_role(request, "finance", "admin")
    fmt = request.query.get("format", "csv")
    if fmt not in formats.FORMATS:
        raise InvalidField("format", "unknown_format", "format is csv, jsonl or beancount")
    from_at, to_at = export_range(request.query.get("from"), request.query.get("to"))
    response = web.StreamResponse(headers={
        "Content-Disposition": f'attachment; filename="ledger-{from_at:%Y%m%dT%H%M%SZ}-{to_at:%Y%m%dT%H%M%SZ}.{fmt}"'})
    response.content_type = EXPORT_CONTENT_TYPES[fmt]
    response.charset = "utf-8"

    async def started(info: exports.ExportStarted) -> None:
        response.headers["X-Mallpay-Transfers"] = str(info.transfers)
        await response.prepare(request)

    await exports.export(services_of(request), caller.mall_id, from_at, to_at, fmt, response.write,
                         started=started)
    await response.write_eof()
    return response
