"""A store's points rule: set by the mall, read by the store itself, and what its
payments then earn (a store without a rule earns the mall's default)."""

from __future__ import annotations

from tests.e2e.test_coupons import SHOPPER, notified, pay
from tests.support import register_client, SignedClient


async def store_client(mall, sub_mchid: str) -> SignedClient:
    creds = await register_client(mall.pool, mall_id=mall.settings.sp_mchid, role="tenant", sub_mchid=sub_mchid)
    return SignedClient(mall.gateway_url, creds, mall.gateway_public_key, mall.session)


async def test_a_store_rule_is_validated_and_scoped(mall):
    a, b = mall.stores[0], mall.stores[1]
    path = f"/v3/mall/tenants/{a}/points-rule"
    before = await mall.admin.get(path)
    assert before.status == 200, before.json
    assert before.json == {"sub_mchid": a, "points_per_yuan": mall.settings.points_per_yuan_default,
                           "source": "mall_default", "updated_at": None}

    for body, field, issue in [([1], "body", "not_an_object"), ({}, "points_per_yuan", "required"),
                               ({"points_per_yuan": 2.5}, "points_per_yuan", "not_an_integer"),
                               ({"points_per_yuan": "3"}, "points_per_yuan", "not_an_integer"),
                               ({"points_per_yuan": True}, "points_per_yuan", "not_an_integer"),
                               ({"points_per_yuan": -1}, "points_per_yuan", "out_of_range"),
                               ({"points_per_yuan": 1001}, "points_per_yuan", "out_of_range"),
                               ({"points_per_yuan": 2, "bonus": 1}, "bonus", "unknown_field")]:
        refused = await mall.admin.request("PUT", path, body)
        assert refused.status == 400, (body, refused.json)
        assert refused.json["code"] == "PARAM_ERROR" and refused.json["detail"] == {"field": field, "issue": issue}
    assert (await mall.admin.get(path)).json["source"] == "mall_default"  # refusals changed nothing

    missing = await mall.admin.request("PUT", "/v3/mall/tenants/1900099999/points-rule", {"points_per_yuan": 2})
    assert missing.status == 404 and missing.json["code"] == "RESOURCE_NOT_EXISTS"
    set_ = await mall.admin.request("PUT", path, {"points_per_yuan": 3})
    assert set_.status == 200, set_.json
    assert (set_.json["points_per_yuan"], set_.json["source"]) == (3, "store_rule")

    own, other = await store_client(mall, a), await store_client(mall, b)
    assert (await own.get(path)).json == set_.json
    foreign = await other.get(path)
    absent = await other.get("/v3/mall/tenants/1900099999/points-rule")
    assert (foreign.status, foreign.json) == (absent.status, absent.json) == (404, foreign.json)
    assert foreign.json["code"] == "RESOURCE_NOT_EXISTS"
    assert (await own.request("PUT", path, {"points_per_yuan": 9})).status == 403  # only the mall sets it
    assert (await mall.app.get(path)).status == 403


async def test_a_payment_earns_by_its_store_rule_and_elsewhere_by_the_default(mall):
    a, b = mall.stores[0], mall.stores[1]
    assert (await mall.admin.request("PUT", f"/v3/mall/tenants/{a}/points-rule", {"points_per_yuan": 3})).status == 200
    await pay(mall, a, "RULE-A-01", 12345)  # 123 whole yuan at 3 a yuan
    await pay(mall, b, "RULE-B-01", 5099)  # 50 whole yuan at the default
    default = mall.settings.points_per_yuan_default
    assert (await notified(mall, "RULE-A-01"))["resource"]["mall_info"]["points"] == {"earned": 369}
    assert (await notified(mall, "RULE-B-01"))["resource"]["mall_info"]["points"] == {"earned": 50 * default}
    points = (await mall.app.get(f"/v3/mall/members/{SHOPPER}/points")).json
    assert points["total_points"] == 369 + 50 * default
    not_an_openid = await mall.app.get("/v3/mall/members/o.shopper/points")
    assert (not_an_openid.status, not_an_openid.json) == (400, {
        "code": "PARAM_ERROR", "message": "openid: invalid_openid",
        "detail": {"field": "openid", "issue": "invalid_openid"}})

    # A changed rule applies to the next payment; the paid order keeps its own rate.
    assert (await mall.admin.request("PUT", f"/v3/mall/tenants/{a}/points-rule", {"points_per_yuan": 0})).status == 200
    await pay(mall, a, "RULE-A-02", 9900)
    assert (await notified(mall, "RULE-A-02"))["resource"]["mall_info"]["points"] == {"earned": 0}
    async with mall.pool.acquire() as conn:
        rates = await conn.fetch("SELECT out_trade_no, points_per_yuan FROM points_orders ORDER BY out_trade_no")
    assert [tuple(r) for r in rates] == [("RULE-A-01", 3), ("RULE-A-02", 0), ("RULE-B-01", default)]
    assert await mall.invariants() == []
