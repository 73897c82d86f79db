"""A coupon that expires unused gives its amount back to its campaign's budget, once; a
coupon an order holds is not taken, and an expired one cannot be redeemed."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from coupons import repo as coupons_repo
from gateway.api import SERVICES
from gateway.services import coupon_campaigns
from tests.e2e.test_coupons import SHOPPER, campaign_body, member_coupons, pay
from tests.support import order_body, wait_until


async def test_expired_unused_coupons_return_their_amount_to_the_budget(make_mall):
    mall = await make_mall(coupon_holdout_bps=0, coupon_issue_budget_ms=2000)
    a, b, c = mall.stores
    ids = {}
    for store in (b, c):
        created = await mall.admin.post("/v3/mall/coupon-campaigns", campaign_body(
            store, budget={"amount": 2000, "count": 1}, coupon_valid_seconds=3600))
        ids[store] = int(created.json["campaign_id"])
    await pay(mall, a, "EXP-A-0001", 5000)
    coupons = {cp["sub_mchid"]: cp["coupon_id"] for cp in await member_coupons(mall, 2)}
    # The coupon for B is held by an order at B; the one for C stays unused.
    held = await mall.app.post("/v3/pay/partner/transactions/jsapi", order_body(
        mall, b, "EXP-B-0001", 10000, mall_info={"coupon_id": coupons[b], "original_total": 12000}))
    assert held.status == 200, held.json
    assert await _budgets(mall, ids) == {b: (2000, 1), c: (2000, 1)}

    svc = mall.gateway_app[SERVICES]
    assert await coupon_campaigns.release_expired(svc) == 0  # nothing has expired yet
    later = dataclasses.replace(svc, clock=lambda: svc.clock() + timedelta(hours=2))
    assert await coupon_campaigns.release_expired(later) == 1
    assert await coupon_campaigns.release_expired(later) == 0  # released once
    assert await _budgets(mall, ids) == {b: (2000, 1), c: (0, 0)}
    async with mall.pool.acquire() as conn:
        states = {r["sub_mchid"]: r["state"] for r in await conn.fetch("SELECT sub_mchid, state FROM coupons")}
    assert states == {b: "reserved", c: "expired"}
    listed = (await mall.app.get(f"/v3/mall/members/{SHOPPER}/coupons")).json["data"]
    assert {cp["sub_mchid"]: cp["state"] for cp in listed} == {b: "reserved", c: "expired"}

    refused = await mall.app.post("/v3/pay/partner/transactions/jsapi", order_body(
        mall, c, "EXP-C-0001", 10000, mall_info={"coupon_id": coupons[c], "original_total": 12000}))
    assert refused.status == 400 and refused.json["detail"]["why"] == "coupon_expired"
    # The budget given back is the campaign's to spend again: C's (one coupon, spent before
    # it expired) issues to the next shopper; B's, still held by an order, does not.
    await pay(mall, a, "EXP-A-0002", 5000, payer={"sp_openid": "oNextShopper"})
    async def decided():
        async with mall.pool.acquire() as conn:
            return await conn.fetchval("SELECT count(*) FROM coupon_decisions WHERE out_trade_no = 'EXP-A-0002'")
    await wait_until(decided, what="issuing for the next shopper")
    async with mall.pool.acquire() as conn:
        again = await conn.fetch("SELECT sub_mchid FROM coupons WHERE openid = 'oNextShopper'")
    assert [r["sub_mchid"] for r in again] == [c]
    assert await _budgets(mall, ids) == {b: (2000, 1), c: (2000, 1)}
    assert await mall.invariants() == []


async def _budgets(mall, ids: dict) -> dict:
    budgets = {}
    async with mall.pool.acquire() as conn:
        for store, cid in ids.items():
            row = await coupons_repo.campaign(conn, mall.settings.sp_mchid, cid)
            budgets[store] = (row["committed_fen"], row["committed_count"])
    return budgets
