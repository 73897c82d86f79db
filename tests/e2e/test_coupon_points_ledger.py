"""Money and points through a whole coupon's life: a mall-funded coupon redeemed at
another store, points earned, then refunds; the books balance at every step."""

from __future__ import annotations

from coupons import repo as coupons_repo
from tests.e2e.test_coupons import SHOPPER, notified, ordered_with_coupon
from tests.e2e.test_order_flow import wait_for


async def balances(mall) -> dict:
    from ledger import repo
    async with mall.pool.acquire() as conn:
        return {name: balance for name, _, balance in await repo.trial_balance(conn, mall.settings.sp_mchid)}


async def test_a_mall_funded_redemption_is_owed_to_the_store_and_points_follow_refunds(make_mall):
    mall = await make_mall(coupon_holdout_bps=0, coupon_issue_budget_ms=2000)
    a, b = mall.stores[0], mall.stores[1]
    # Pays 5000 at A (50 points), then orders 10000 at B with the coupon.
    coupon_id = (await ordered_with_coupon(mall, a, b, "LEDGER-A-01", "LEDGER-B-01"))["coupon_id"]
    await mall.shopper_pays(b, "LEDGER-B-01")
    event = await notified(mall, "LEDGER-B-01")
    assert event["resource"]["amount"]["total"] == 10000
    assert event["resource"]["mall_info"]["points"] == {"earned": 100}
    async with mall.pool.acquire() as conn:
        coupon = await coupons_repo.coupon(conn, mall.settings.sp_mchid, coupon_id)
    assert coupon["state"] == "used"
    books = await balances(mall)
    assert books[f"tenant:{b}:coupon_receivable"] == 2000  # the mall owes B the discount
    assert books["mall:coupon_subsidy"] == -2000
    points = (await mall.app.get(f"/v3/mall/members/{SHOPPER}/points")).json
    assert points["total_points"] == 50 + 100

    report = (await mall.admin.get("/v3/mall/coupon-campaigns?limit=10")).json["data"][0]
    detail = (await mall.admin.get(f"/v3/mall/coupon-campaigns/{report['campaign_id']}/report")).json
    assert (detail["issued"], detail["redeemed"], detail["discount_spent"], detail["sales_driven"]) == (1, 1, 2000, 10000)
    assert detail["flows"] == [{"trigger_sub_mchid": a, "redeeming_sub_mchid": b, "redeemed": 1, "sales": 10000}]

    # A partial refund keeps the coupon used and takes back the points of what left.
    await refund(mall, b, "LEDGER-B-01", "R-B-01", 3050, 10000)
    assert (await mall.app.get(f"/v3/mall/members/{SHOPPER}/points")).json["total_points"] == 50 + 69
    async with mall.pool.acquire() as conn:
        assert (await coupons_repo.coupon(conn, mall.settings.sp_mchid, coupon_id))["state"] == "used"
    # The rest refunded: the order is fully refunded, the coupon is the shopper's again.
    await refund(mall, b, "LEDGER-B-01", "R-B-02", 6950, 10000)
    assert (await mall.app.get(f"/v3/mall/members/{SHOPPER}/points")).json["total_points"] == 50
    async with mall.pool.acquire() as conn:
        coupon = await coupons_repo.coupon(conn, mall.settings.sp_mchid, coupon_id)
        syncs = await conn.fetch("SELECT kind, increased_points, total_points FROM points_syncs ORDER BY sync_id")
    assert (coupon["state"], coupon["order_out_trade_no"]) == ("issued", None)
    assert [tuple(r) for r in syncs] == [("points_earn", 50, 50), ("points_earn", 100, 150),
                                         ("points_reverse", -31, 119), ("points_reverse", -69, 50)]
    assert await mall.invariants() == []


async def refund(mall, store: str, out_trade_no: str, out_refund_no: str, refund_fen: int, total_fen: int) -> None:
    reply = await mall.app.post("/v3/refund/domestic/refunds", {
        "sub_mchid": store, "out_trade_no": out_trade_no, "out_refund_no": out_refund_no,
        "amount": {"refund": refund_fen, "total": total_fen, "currency": "CNY"}})
    assert reply.status == 200, reply.json

    async def done():
        async with mall.pool.acquire() as conn:
            return await conn.fetchval("SELECT state FROM refunds WHERE out_refund_no = $1", out_refund_no) == "SUCCESS"
    await wait_for(done, timeout_s=20)
