"""Two gateway processes (two apps on one database) issuing for the same payments at
once never overspend a campaign's budget or a shopper's limit, and issue once per payment."""

from __future__ import annotations

import asyncio
import dataclasses

from coupons import repo as coupons_repo
from gateway.api import SERVICES
from gateway.app import create_app
from gateway.services import coupon_issuing
from tests.e2e.test_coupons import campaign_body, pay
from tests.e2e.test_order_flow import wait_for


async def _second_gateway(mall, database_url, aiohttp_client):
    app = create_app(mall.settings, database_url=database_url, run_workers=False)
    await aiohttp_client(app)
    return app[SERVICES]


def _issuing(svc):
    return dataclasses.replace(svc, settings=svc.settings.with_(coupons_per_payment_max=3, coupon_holdout_bps=0))


async def _both_issue_for(mall, other, keys) -> None:
    first, second = _issuing(mall.gateway_app[SERVICES]), _issuing(other)
    await asyncio.gather(*(coupon_issuing.issue_after_payment(svc, key) for key in keys for svc in (first, second)))


async def test_budget_holds_across_two_gateways(make_mall, database_url, aiohttp_client):
    mall = await make_mall(coupons_per_payment_max=0)  # the payments themselves issue nothing
    a, b = mall.stores[0], mall.stores[1]
    created = await mall.admin.post("/v3/mall/coupon-campaigns", campaign_body(
        b, discount={"type": "amount_off", "amount": 500}, budget={"amount": 3700, "count": 10}))
    cid = int(created.json["campaign_id"])
    keys = []
    for i in range(24):
        await pay(mall, a, f"BUDGET-{i:04d}", 3000, payer={"sp_openid": f"oBudget{i:02d}"})
        keys.append((mall.settings.sp_mchid, a, f"BUDGET-{i:04d}"))
    await _paid(mall, len(keys))
    await _both_issue_for(mall, await _second_gateway(mall, database_url, aiohttp_client), keys)
    async with mall.pool.acquire() as conn:
        campaign = await coupons_repo.campaign(conn, mall.settings.sp_mchid, cid)
        issued = await conn.fetchval("SELECT count(*) FROM coupons WHERE campaign_id = $1", cid)
        per_payment = await conn.fetchval("SELECT max(n) FROM (SELECT count(*) AS n FROM coupons"
                                          " GROUP BY trigger_out_trade_no) c")
    # 3700 fen pays for 7 coupons of 500, fewer than the count budget of 10.
    assert (issued, campaign["committed_count"], campaign["committed_fen"]) == (7, 7, 3500)
    assert per_payment == 1  # each payment decided once though both gateways tried


async def test_a_shoppers_limit_holds_across_two_gateways(make_mall, database_url, aiohttp_client):
    mall = await make_mall(coupons_per_payment_max=0)
    a, b = mall.stores[0], mall.stores[1]
    created = await mall.admin.post("/v3/mall/coupon-campaigns", campaign_body(
        b, discount={"type": "amount_off", "amount": 500}, per_shopper_max=2, daily_count_max=50))
    cid = int(created.json["campaign_id"])
    keys = []
    for i in range(12):
        await pay(mall, a, f"LIMIT-{i:04d}", 3000, payer={"sp_openid": "oSameShopper"})
        keys.append((mall.settings.sp_mchid, a, f"LIMIT-{i:04d}"))
    await _paid(mall, len(keys))
    await _both_issue_for(mall, await _second_gateway(mall, database_url, aiohttp_client), keys)
    async with mall.pool.acquire() as conn:
        issued = await conn.fetchval("SELECT count(*) FROM coupons WHERE campaign_id = $1", cid)
        campaign = await coupons_repo.campaign(conn, mall.settings.sp_mchid, cid)
        day = await conn.fetchval("SELECT sum(issued_count) FROM coupon_campaign_days WHERE campaign_id = $1", cid)
    assert issued == campaign["committed_count"] == day == 2  # the refused ones counted nothing


async def _paid(mall, count: int) -> None:
    async def all_paid():
        async with mall.pool.acquire() as conn:
            return await conn.fetchval("SELECT count(*) FROM orders WHERE state = 'SUCCESS'") == count
    await wait_for(all_paid, timeout_s=30)
