"""The ledger for finance: /v3/mall/ledger."""

from __future__ import annotations

from aiohttp import web

from gateway.api import caller_of, services_of
from gateway.api.mall.common import require_role
from gateway.api.orders import json_response
from ledger import repo as ledger_repo

routes = web.RouteTableDef()


@routes.get("/v3/mall/ledger/trial-balance")
async def trial_balance(request: web.Request) -> web.Response:
    caller = caller_of(request)
    require_role(caller, "finance", "admin")
    async with services_of(request).pool.acquire() as conn:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            rows = await ledger_repo.trial_balance(conn, caller.mall_id)
    totals: dict[str, int] = {}
    for _, currency, balance in rows:
        totals[currency] = totals.get(currency, 0) + balance
    return json_response({
        "accounts": [{"account": a, "currency": c, "balance": b} for a, c, b in rows],
        "totals": totals, "balanced": all(v == 0 for v in totals.values()),
    })
