"""Attribution and uplift from real decisions: held-out and treated shoppers, their later
visits at the target store, through the API and `mallpay coupons report`."""

from __future__ import annotations

import asyncio
import json

from gateway import cli
from tests.e2e.test_coupons import campaign_body, decided, pay
from tests.e2e.test_order_flow import wait_for

SHOPPERS = [f"oShopper{i:02d}" for i in range(8)]


async def test_report_counts_visits_per_arm_and_the_cli_prints_it(make_mall, database_url, monkeypatch, capsys):
    mall = await make_mall(coupon_holdout_bps=5000, coupon_issue_budget_ms=3000)
    a, b = mall.stores[0], mall.stores[1]
    created = await mall.admin.post("/v3/mall/coupon-campaigns", campaign_body(b, discount={
        "type": "amount_off", "amount": 500}))
    cid = created.json["campaign_id"]
    for i, openid in enumerate(SHOPPERS):
        await pay(mall, a, f"TRIG-{i:04d}", 3000, payer={"sp_openid": openid})
        await decided(mall, f"TRIG-{i:04d}")
    async with mall.pool.acquire() as conn:
        held = {r["openid"]: r["held_out"] for r in await conn.fetch("SELECT openid, held_out FROM coupon_decisions")}
        coupons = {r["openid"]: r["coupon_id"] for r in await conn.fetch("SELECT openid, coupon_id FROM coupons")}
    assert set(held) == set(SHOPPERS)
    assert {o for o, h in held.items() if not h} == set(coupons)  # only treated shoppers got one
    visitors = SHOPPERS[:4]
    for i, openid in enumerate(visitors):
        if openid in coupons:  # treated visitors redeem theirs; held-out ones pay full price
            info = {"coupon_id": coupons[openid], "original_total": 4000}
            await pay(mall, b, f"VISIT-{i:04d}", 3500, payer={"sp_openid": openid}, mall_info=info)
        else:
            await pay(mall, b, f"VISIT-{i:04d}", 4000, payer={"sp_openid": openid})

    async def visits_paid():
        async with mall.pool.acquire() as conn:
            return await conn.fetchval("SELECT count(*) FROM orders WHERE out_trade_no LIKE 'VISIT-%'"
                                       " AND state = 'SUCCESS'") == len(visitors)
    await wait_for(visits_paid)
    report = (await mall.admin.get(f"/v3/mall/coupon-campaigns/{cid}/report?window_days=3")).json
    too_long = await mall.admin.get(f"/v3/mall/coupon-campaigns/{cid}/report?window_days=91")
    assert (too_long.status, too_long.json) == (400, {"code": "PARAM_ERROR", "message": "window_days must be 1 to 90",
                                                      "detail": {"field": "window_days", "issue": "out_of_range"}})
    missing = await mall.admin.get("/v3/mall/coupon-campaigns/999999/report?window_days=91")
    assert missing.status == 404, "the campaign is found before the window is read"
    treated_visitors = [o for o in visitors if not held[o]]
    assert report["issued"] == len(coupons)
    uplift = report["uplift"]
    assert uplift["treated"]["decisions"] == sum(1 for h in held.values() if not h)
    assert uplift["treated"]["visits"] == len(treated_visitors)
    assert uplift["held_out"]["visits"] == len(visitors) - len(treated_visitors)
    assert uplift["treated"]["sales"] == 3500 * len(treated_visitors)

    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("MALLPAY_SP_MCHID", mall.settings.sp_mchid)
    assert await asyncio.to_thread(cli.main, ["coupons", "report", "--window-days", "0"]) == 1
    assert "PARAM_ERROR out_of_range: window_days must be 1 to 90" in capsys.readouterr().err
    assert await asyncio.to_thread(cli.main, ["coupons", "report", "--json", "--window-days", "3"]) == 0
    out = capsys.readouterr().out
    printed, _ = json.JSONDecoder().raw_decode(out[out.index("{\n"):])  # after the migration's log lines
    assert printed["campaigns"][0]["uplift"] == uplift
    assert printed["overall"]["uplift"]["treated"]["visits"] == len(treated_visitors)
