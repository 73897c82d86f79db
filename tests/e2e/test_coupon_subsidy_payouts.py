"""The mall paying a store what its mall-funded coupons owe, and refunds taking back the
unpaid share of the subsidy; the books balance at every step."""

from __future__ import annotations

from datetime import datetime

from ledger.statements import CHINA
from tests.e2e.test_coupon_points_ledger import balances, refund
from tests.e2e.test_coupons import notified, ordered_with_coupon
from tests.e2e.test_points_rule import store_client

PAYOUTS = "/v3/mall/coupon-subsidies/payouts"


async def test_the_mall_pays_out_the_receivable_and_refunds_take_back_the_unpaid_share(make_mall):
    mall = await make_mall(coupon_holdout_bps=0, coupon_issue_budget_ms=2000)
    a, b = mall.stores[0], mall.stores[1]
    await ordered_with_coupon(mall, a, b, "SUBSIDY-A-01", "SUBSIDY-B-01")
    await mall.shopper_pays(b, "SUBSIDY-B-01")
    await notified(mall, "SUBSIDY-B-01")
    receivable, available = f"tenant:{b}:coupon_receivable", f"tenant:{b}:available"
    before = await balances(mall)
    assert before[receivable] == 2000

    good = {"sub_mchid": b, "amount": 500, "out_payout_no": "SUBPAY-0001"}
    for body, field, issue in [([], "body", "not_an_object"), ({**good, "amount": 5.0}, "amount", "not_integer_fen"),
                               ({**good, "amount": 0}, "amount", "out_of_range"),
                               ({**good, "amount": "500"}, "amount", "not_integer_fen"),
                               ({**good, "sub_mchid": "shop-b"}, "sub_mchid", "bad_format"),
                               ({**good, "out_payout_no": "x"}, "out_payout_no", "bad_format"),
                               ({"sub_mchid": b, "amount": 500}, "out_payout_no", "required"),
                               ({**good, "memo": "x"}, "memo", "unknown_field")]:
        refused = await mall.admin.post(PAYOUTS, body)
        assert refused.status == 400 and refused.json["detail"] == {"field": field, "issue": issue}, body
    above = await mall.admin.post(PAYOUTS, {**good, "amount": 2001})
    assert above.status == 400 and above.json["detail"] == {"reason": "above_receivable", "receivable": 2000}
    unknown = await mall.admin.post(PAYOUTS, {**good, "sub_mchid": "1900099999"})
    assert unknown.status == 404 and unknown.json["code"] == "RESOURCE_NOT_EXISTS"
    assert (await (await store_client(mall, b)).post(PAYOUTS, good)).status == 403  # stores do not pay themselves
    assert (await mall.app.post(PAYOUTS, good)).status == 403
    assert await balances(mall) == before  # refusals changed nothing

    paid = await mall.admin.post(PAYOUTS, good)
    assert paid.status == 200, paid.json
    assert {k: paid.json[k] for k in ("sub_mchid", "amount", "out_payout_no")} == good
    after = await balances(mall)
    assert (after[receivable], after[available] - before[available]) == (1500, 500)
    again = await mall.admin.post(PAYOUTS, good)
    assert (again.status, again.json) == (200, paid.json)
    assert await balances(mall) == after  # the same payout once
    reused = await mall.admin.post(PAYOUTS, {**good, "amount": 600})
    assert reused.status == 400 and reused.json["detail"]["reason"] == "out_payout_no_reused"
    assert await mall.invariants() == []

    # Listed as /v3/mall/payouts lists: the admin sees every store's (or one's), a store its
    # own; another store, or an unknown one, is missing for them alike.
    listed = await mall.admin.get(PAYOUTS)
    assert (listed.status, listed.json["total_count"], listed.json["data"]) == (200, 1, [paid.json])
    assert (await mall.admin.get(f"{PAYOUTS}?sub_mchid={a}")).json["total_count"] == 0
    own = await (await store_client(mall, b)).get(PAYOUTS)
    assert (own.status, own.json["data"]) == (200, [paid.json])
    assert (await (await store_client(mall, b)).get(f"{PAYOUTS}?sub_mchid={b}")).json["data"] == [paid.json]
    for asking, sub_mchid in ((await store_client(mall, a), b), (mall.admin, "1900099999")):
        missing = await asking.get(f"{PAYOUTS}?sub_mchid={sub_mchid}")
        assert (missing.status, missing.json["code"]) == (404, "RESOURCE_NOT_EXISTS"), sub_mchid
    store_malformed = await (await store_client(mall, b)).get(f"{PAYOUTS}?sub_mchid=shop-b")
    assert (store_malformed.status, store_malformed.json["detail"]) == (400, {"field": "sub_mchid",
                                                                              "issue": "bad_format"})
    assert (await mall.app.get(PAYOUTS)).status == 403
    assert (await mall.app.get(f"{PAYOUTS}?sub_mchid=shop-b")).status == 403, "the role before the query"
    malformed = await mall.admin.get(f"{PAYOUTS}?sub_mchid=shop-b")
    assert (malformed.status, malformed.json) == (400, {"code": "PARAM_ERROR", "message": "sub_mchid: bad_format",
                                                        "detail": {"field": "sub_mchid", "issue": "bad_format"}})

    # A partial refund takes back the discount's share of what left: 2000 × 3050 / 10000.
    await refund(mall, b, "SUBSIDY-B-01", "SUBSIDY-R-01", 3050, 10000)
    books = await balances(mall)
    assert (books[receivable], books["mall:coupon_subsidy"]) == (1500 - 610, -2000 + 610)
    # The rest: 1390 more would be due, but only 890 is still unpaid; the 500 paid stays the store's.
    await refund(mall, b, "SUBSIDY-B-01", "SUBSIDY-R-02", 6950, 10000)
    books = await balances(mall)
    assert (books[receivable], books["mall:coupon_subsidy"]) == (0, -500)
    nothing_left = await mall.admin.post(PAYOUTS, {**good, "amount": 1, "out_payout_no": "SUBPAY-0002"})
    assert nothing_left.json["detail"] == {"reason": "above_receivable", "receivable": 0}

    # The statement: subsidy 2000 in, 610 + 890 taken back, the payout moves nothing out of the store.
    today = datetime.now(CHINA).date().isoformat()
    statement = await mall.admin.get(f"/v3/mall/statements?sub_mchid={b}&date={today}")
    assert statement.status == 200, statement.json
    assert statement.json["totals"]["coupon_subsidy"] == 500 and statement.json["ties_to_ledger"] is True
    assert await mall.invariants() == []
