"""The ledger for finance: /v3/mall/ledger (trial balance and balances, now or at an instant)."""

from __future__ import annotations

from datetime import datetime, timezone

from aiohttp import web

from gateway.api import json_response, services_of
from gateway.api.mall.common import caller_in_role
from gateway.domain_errors import InvalidField, NotFound
from gateway.api.mall.statements import parse_day
from gateway.services import exports, statements
from ledger import export as formats
from ledger.statements import PeriodError, period_bounds

routes = web.RouteTableDef()
ACCOUNTS_PER_REQUEST_MAX = 100
ACCOUNT_CHARS_MAX = 128


def parse_instant(value: str | None, field: str = "at") -> datetime | None:
    """An ISO 8601 instant with its offset (`2026-11-30T16:00:00Z`, `...+08:00`)."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidField(field, "bad_format", f"{field} is an ISO 8601 instant with offset") from None
    if parsed.tzinfo is None:
        raise InvalidField(field, "offset_required", f"{field} needs an offset (Z or +08:00)")
    return parsed.astimezone(timezone.utc)


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


def export_range(from_value: str | None, to_value: str | None) -> tuple[datetime, datetime]:
    """`from`/`to` as China-time days (YYYY-MM-DD, `to` inclusive) or as instants (ISO 8601
    with offset, `to` exclusive)."""
    if from_value is None or to_value is None:
        raise InvalidField("from" if from_value is None else "to", "required")
    if len(from_value) == 10 and len(to_value) == 10:
        from_on, to_on = parse_day(from_value, "from"), parse_day(to_value, "to")
        if to_on < from_on:
            raise InvalidField("to", "to_before_from")
        try:
            from_at, _ = period_bounds(from_on, from_on)
            _, to_at = period_bounds(to_on, to_on)
        except PeriodError as error:
            raise InvalidField("to", str(error)) from None
    else:
        from_at, to_at = parse_instant(from_value, "from"), parse_instant(to_value, "to")
    if to_at < from_at:
        raise InvalidField("to", "to_before_from")
    return from_at, to_at


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
