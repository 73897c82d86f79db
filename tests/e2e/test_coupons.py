"""Coupons end to end: campaigns through the API, issuing after a payment (in the
notification and the member's list), redemption at another store, release on close."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

from coupons import repo as coupons_repo
from coupons.targeting import NextStoreModel
from gateway.api import SERVICES
from gateway.services import next_store
from tests.e2e.test_order_flow import wait_for
from tests.support import open_notification, order_body, register_client, SignedClient

SHOPPER = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"  # order_body's payer


def campaign_body(store: str, **over) -> dict:
    now = datetime.now(timezone.utc)
    body = {"name": f"20 off 100 at {store}", "sub_mchid": store, "funded_by": "mall",
            "discount": {"type": "threshold", "amount": 2000, "threshold": 10000},
            "budget": {"amount": 200000, "count": 100}, "per_shopper_max": 1,
            "starts_at": (now - timedelta(hours=1)).isoformat(), "ends_at": (now + timedelta(days=30)).isoformat(),
            "coupon_valid_seconds": 7 * 86400}
    body.update(over)
    return body


async def pay(mall, store: str, out_trade_no: str, total_fen: int, **extra) -> dict:
    created = await mall.app.post("/v3/pay/partner/transactions/jsapi",
                                  order_body(mall, store, out_trade_no, total_fen, **extra))
    assert created.status == 200, created.json
    return await mall.shopper_pays(store, out_trade_no)


async def notified(mall, out_trade_no: str) -> dict:
    async def find():
        for headers, body in mall.sink.received:
            event = open_notification(headers, body, mall.gateway_public_key, mall.app.creds.apiv3_key)
            if event["resource"]["out_trade_no"] == out_trade_no:
                return event
        return None
    return await wait_for(find)


async def test_campaigns_are_validated_and_scoped_to_their_store(mall):
    a, b = mall.stores[0], mall.stores[1]
    created = await mall.admin.post("/v3/mall/coupon-campaigns", campaign_body(b))
    assert created.status == 200, created.json
    cid = created.json["campaign_id"]
    assert created.json["budget"] == {"amount": 200000, "count": 100, "committed_amount": 0, "committed_count": 0}

    float_money = await mall.admin.post("/v3/mall/coupon-campaigns",
                                        campaign_body(b, budget={"amount": 100.5, "count": 1}))
    assert float_money.status == 400 and float_money.json["code"] == "PARAM_ERROR"
    assert float_money.json["detail"] == {"field": "budget.amount", "issue": "not_integer_fen"}

    store_b = SignedClient(mall.gateway_url, await register_client(
        mall.pool, mall_id=mall.settings.sp_mchid, role="tenant", sub_mchid=b), mall.gateway_public_key, mall.session)
    store_a = SignedClient(mall.gateway_url, await register_client(
        mall.pool, mall_id=mall.settings.sp_mchid, role="tenant", sub_mchid=a), mall.gateway_public_key, mall.session)
    mall_money = await store_b.post("/v3/mall/coupon-campaigns", campaign_body(b))
    assert mall_money.status == 403 and mall_money.json["detail"]["reason"] == "mall_funding_needs_admin"
    own = await store_b.post("/v3/mall/coupon-campaigns", campaign_body(b, funded_by="store"))
    assert own.status == 200, own.json
    own_id = own.json["campaign_id"]
    # Another store's campaign answers exactly as a campaign that does not exist.
    other = await store_a.get(f"/v3/mall/coupon-campaigns/{own_id}")
    missing = await store_a.get("/v3/mall/coupon-campaigns/999999")
    assert other.status == missing.status == 404 and other.json == missing.json
    assert (await store_b.get(f"/v3/mall/coupon-campaigns/{cid}")).status == 404  # mall-funded: admin's
    listed = await store_b.get("/v3/mall/coupon-campaigns")
    assert [c["campaign_id"] for c in listed.json["data"]] == [own_id]

    async with mall.pool.acquire() as conn:  # issuing committed 3 coupons' worth
        await conn.execute("UPDATE coupon_campaigns SET committed_fen = 6000, committed_count = 3"
                           " WHERE campaign_id = $1", int(cid))
    cut = await mall.admin.request("PATCH", f"/v3/mall/coupon-campaigns/{cid}", {"budget": {"amount": 5999}})
    assert cut.status == 400 and cut.json["detail"]["reason"] == "below_committed"
    paused = await mall.admin.request("PATCH", f"/v3/mall/coupon-campaigns/{cid}",
                                      {"state": "paused", "budget": {"amount": 6000, "count": 3}})
    assert paused.status == 200 and paused.json["state"] == "paused" and paused.json["budget"]["amount"] == 6000
    ended = await mall.admin.request("PATCH", f"/v3/mall/coupon-campaigns/{cid}", {"state": "ended"})
    assert ended.json["state"] == "ended"
    again = await mall.admin.request("PATCH", f"/v3/mall/coupon-campaigns/{cid}", {"state": "active"})
    assert again.status == 400 and again.json["detail"]["reason"] == "campaign_ended"


async def test_a_payment_hands_out_coupons_of_other_stores(make_mall):
    mall = await make_mall(coupon_holdout_bps=0, coupon_issue_budget_ms=2000)
    a, b, c = mall.stores
    for store in (a, b, c):
        assert (await mall.admin.post("/v3/mall/coupon-campaigns", campaign_body(store))).status == 200
    await pay(mall, a, "PAY-A-0001", 5000)
    event = await notified(mall, "PAY-A-0001")
    in_notification = event["resource"]["mall_info"]["coupons"]
    assert sorted(cp["sub_mchid"] for cp in in_notification) == [b, c]  # never the store just paid at
    assert all(cp["amount"] == 2000 and cp["min_spend"] == 10000 for cp in in_notification)
    coupons = await member_coupons(mall, 2)
    assert sorted(cp["coupon_id"] for cp in coupons) == sorted(cp["coupon_id"] for cp in in_notification)
    assert {cp["state"] for cp in coupons} == {"issued"}
    # The per-shopper limit (1) holds for the next payment.
    await pay(mall, a, "PAY-A-0002", 5000)
    await notified(mall, "PAY-A-0002")
    await decided(mall, "PAY-A-0002")
    assert (await mall.app.get(f"/v3/mall/members/{SHOPPER}/coupons")).json["total_count"] == 2


async def member_coupons(mall, count: int) -> list[dict]:
    async def listed():
        reply = await mall.app.get(f"/v3/mall/members/{SHOPPER}/coupons")
        return reply.json["data"] if reply.json["total_count"] >= count else None
    return await wait_for(listed)


async def decided(mall, out_trade_no: str) -> None:
    async def found():
        async with mall.pool.acquire() as conn:
            return await conn.fetchval("SELECT count(*) FROM coupon_decisions WHERE out_trade_no = $1", out_trade_no)
    await wait_for(found)


async def test_broken_issuing_never_holds_the_notification_past_its_deadline(make_mall):
    mall = await make_mall(coupon_holdout_bps=0, coupon_issue_budget_ms=200)
    a, b = mall.stores[0], mall.stores[1]
    assert (await mall.admin.post("/v3/mall/coupon-campaigns", campaign_body(b))).status == 200

    class Broken:
        def rank(self, **_):
            raise RuntimeError("model broke")
    mall.gateway_app[SERVICES].coupons.model = Broken()
    await pay(mall, a, "PAY-A-0003", 5000)
    event = await notified(mall, "PAY-A-0003")
    assert event["resource"]["trade_state"] == "SUCCESS" and "coupons" not in event["resource"]["mall_info"]


async def issued_coupon(mall, store_paid: str, store_target: str, out_trade_no: str) -> str:
    assert (await mall.admin.post("/v3/mall/coupon-campaigns", campaign_body(store_target))).status == 200
    await pay(mall, store_paid, out_trade_no, 5000)
    (coupon,) = await member_coupons(mall, 1)
    return coupon["coupon_id"]


async def ordered_with_coupon(mall, store_paid: str, store_target: str, paid_no: str, out_trade_no: str) -> dict:
    """A coupon issued by a payment at `store_paid`, then an order of 10000 fen at
    `store_target` redeeming it (12000 before its 2000 off); the order's mall_info."""
    info = {"coupon_id": await issued_coupon(mall, store_paid, store_target, paid_no), "original_total": 12000}
    created = await mall.app.post("/v3/pay/partner/transactions/jsapi",
                                  order_body(mall, store_target, out_trade_no, 10000, mall_info=info))
    assert created.status == 200, created.json
    return info


async def test_redemption_checks_the_discounted_total_and_a_close_releases_the_coupon(make_mall):
    mall = await make_mall(coupon_holdout_bps=0, coupon_issue_budget_ms=2000)
    a, b = mall.stores[0], mall.stores[1]
    coupon_id = await issued_coupon(mall, a, b, "PAY-A-0010")
    info = {"coupon_id": coupon_id, "original_total": 12000}

    wrong = await mall.app.post("/v3/pay/partner/transactions/jsapi",
                                order_body(mall, b, "USE-B-0001", 12000, mall_info=info))
    assert wrong.status == 400 and wrong.json["detail"] == {
        "reason": "coupon_not_applicable", "why": "amount_not_discounted", "expected_total": 10000}
    below = await mall.app.post("/v3/pay/partner/transactions/jsapi", order_body(
        mall, b, "USE-B-0002", 7000, mall_info={"coupon_id": coupon_id, "original_total": 9000}))
    assert below.json["detail"]["why"] == "below_min_spend"
    at_a = await mall.app.post("/v3/pay/partner/transactions/jsapi",
                               order_body(mall, a, "USE-A-0001", 10000, mall_info=info))
    assert at_a.json["detail"]["why"] == "other_store"

    first = await mall.app.post("/v3/pay/partner/transactions/jsapi",
                                order_body(mall, b, "USE-B-0003", 10000, mall_info=info))
    assert first.status == 200, first.json
    second = await mall.app.post("/v3/pay/partner/transactions/jsapi",
                                 order_body(mall, b, "USE-B-0004", 10000, mall_info=info))
    assert second.json["detail"]["why"] == "coupon_in_use"
    closed = await mall.app.post("/v3/pay/partner/transactions/out-trade-no/USE-B-0003/close",
                                 {"sp_mchid": mall.settings.sp_mchid, "sub_mchid": b})
    assert closed.status == 204
    assert await _coupon_state(mall, coupon_id) == ("issued", None)
    third = await mall.app.post("/v3/pay/partner/transactions/jsapi",
                                order_body(mall, b, "USE-B-0005", 10000, mall_info=info))
    assert third.status == 200, third.json
    assert await _coupon_state(mall, coupon_id) == ("reserved", "USE-B-0005")


async def test_one_hundred_concurrent_redemptions_reserve_the_coupon_once(make_mall):
    mall = await make_mall(coupon_holdout_bps=0, coupon_issue_budget_ms=2000, db_pool_size_max=16)
    a, b = mall.stores[0], mall.stores[1]
    coupon_id = await issued_coupon(mall, a, b, "PAY-A-0020")
    info = {"coupon_id": coupon_id, "original_total": 12000}
    replies = await asyncio.gather(*(
        mall.app.post("/v3/pay/partner/transactions/jsapi", order_body(mall, b, f"RACE-B-{i:04d}", 10000,
                                                                       mall_info=info))
        for i in range(100)))
    assert sorted(r.status for r in replies) == [200] + [400] * 99
    assert {r.json["detail"]["why"] for r in replies if r.status == 400} == {"coupon_in_use"}
    async with mall.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM orders WHERE out_trade_no LIKE 'RACE-%'") == 1


async def test_a_redemption_racing_a_close_releases_exactly_once(make_mall):
    mall = await make_mall(coupon_holdout_bps=0, coupon_issue_budget_ms=2000)
    a, b = mall.stores[0], mall.stores[1]
    info = await ordered_with_coupon(mall, a, b, "PAY-A-0030", "CLOSE-B-01")
    coupon_id = info["coupon_id"]
    close = {"sp_mchid": mall.settings.sp_mchid, "sub_mchid": b}
    results = await asyncio.gather(
        *(mall.app.post("/v3/pay/partner/transactions/out-trade-no/CLOSE-B-01/close", close) for _ in range(5)),
        *(mall.app.post("/v3/pay/partner/transactions/jsapi", order_body(mall, b, f"AFTER-B-{i:02d}", 10000,
                                                                         mall_info=info)) for i in range(5)))
    assert all(r.status == 204 for r in results[:5])
    won = [r for r in results[5:] if r.status == 200]
    assert len(won) <= 1  # released once, so at most one later order can hold it
    state, holder = await _coupon_state(mall, coupon_id)
    if won:
        assert state == "reserved" and holder.startswith("AFTER-B-")
    else:
        assert (state, holder) == ("issued", None)


async def _coupon_state(mall, coupon_id: str):
    async with mall.pool.acquire() as conn:
        row = await coupons_repo.coupon(conn, mall.settings.sp_mchid, coupon_id)
    return row["state"], row["order_out_trade_no"]


async def test_the_model_is_fitted_from_the_malls_payments_and_orders_the_offers(make_mall):
    mall = await make_mall(coupon_holdout_bps=0, coupon_issue_budget_ms=10000, coupons_per_payment_max=1)
    a, b, c = mall.stores
    svc = mall.gateway_app[SERVICES]
    for i in range(6):  # shoppers who pay at A then at C: C is the next store after A
        await pay(mall, a, f"HIST-A-{i:03d}", 3000, payer={"sp_openid": f"oHist{i}"})
        await pay(mall, c, f"HIST-C-{i:03d}", 3000, payer={"sp_openid": f"oHist{i}"})
    await next_store.refit(svc)
    assert isinstance(svc.coupons.model, NextStoreModel)
    for store in (b, c):
        assert (await mall.admin.post("/v3/mall/coupon-campaigns", campaign_body(store))).status == 200
    await pay(mall, a, "PAY-A-0040", 5000)
    (coupon,) = await member_coupons(mall, 1)  # K = 1: the model's first choice
    assert coupon["sub_mchid"] == c


async def test_a_payment_racing_a_close_settles_the_coupon_exactly_once(make_mall):
    """The channel's payment notice and the gateway's close reach the database together:
    one of them moves the order off NOTPAY; the coupon ends used or released, never both."""
    from datetime import datetime, timezone

    from gateway.channel import ChannelTrade, ChannelTradeState
    from gateway.repo import orders as orders_repo
    from gateway.services import payments

    mall = await make_mall(coupon_holdout_bps=0, coupon_issue_budget_ms=2000, db_pool_size_max=8)
    a, b = mall.stores[0], mall.stores[1]
    coupon_id = await issued_coupon(mall, a, b, "PAY-A-0050")
    svc = mall.gateway_app[SERVICES]
    info = {"coupon_id": coupon_id, "original_total": 12000}
    outcomes = set()
    for i in range(8):
        no = f"RACE-CLOSE-{i:02d}"
        assert (await mall.app.post("/v3/pay/partner/transactions/jsapi",
                                    order_body(mall, b, no, 10000, mall_info=info))).status == 200
        key = (mall.settings.sp_mchid, b, no)
        async with mall.pool.acquire() as conn:
            row = await orders_repo.order_to_pay(conn, *key)
        trade = ChannelTrade(sp_mchid=key[0], sub_mchid=b, out_trade_no=no, transaction_id=f"42000{i:010d}",
                             state=ChannelTradeState.SUCCESS, total_fen=10000, payer_total_fen=10000,
                             currency="CNY", bank_type="OTHERS", success_at=datetime.now(timezone.utc),
                             payer_sp_openid=SHOPPER, payer_sub_openid=None)

        async def close():
            async with mall.pool.acquire() as conn:
                return await orders_repo.close_order(conn, key, datetime.now(timezone.utc))

        async with mall.pool.acquire() as conn:
            joins = await payments._joins(svc, conn, row)

        async def pay_it():
            async with mall.pool.acquire() as conn:
                return await payments._apply(svc, conn, row, trade, joins=joins)
        closed, applied = await asyncio.gather(close(), pay_it())
        assert closed != (applied == "applied")  # exactly one of them won
        state, holder = await _coupon_state(mall, coupon_id)
        if closed:
            assert (state, holder) == ("issued", None)
        else:
            assert (state, holder) == ("used", no)
            outcomes.add("paid")
            break
        outcomes.add("closed")
    async with mall.pool.acquire() as conn:
        used = await conn.fetchval("SELECT count(*) FROM coupon_redemptions WHERE coupon_id = $1", coupon_id)
    assert used == (1 if "paid" in outcomes else 0)
