"""Revenue splitting end to end: a franchise store, a shopping guide, the mall's
commission, refunds that claw back — checked in the ledger, fen by fen."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

from gateway import signing
from tests.support import balances, order_body, wait_until

BRAND_HQ = "1900009999"
GUIDE_OPENID = "oGuideLinLin0001"


async def onboard(mall, sub_mchid: str, **contract) -> None:
    reply = await mall.admin.post("/v3/mall/tenants", {
        "sub_mchid": sub_mchid, "name": "Linen & Co", "floor": "2F", "category": "fashion",
        "contract": contract})
    assert reply.status == 200, reply.json


async def paid_order(mall, sub_mchid: str, out_trade_no: str, total_fen: int, guide_id: str | None = None,
                     profit_sharing: bool = True) -> str:
    extra = {"settle_info": {"profit_sharing": profit_sharing}}
    if guide_id:
        extra["mall_info"] = {"guide_id": guide_id}
    created = await mall.app.post("/v3/pay/partner/transactions/jsapi",
                                  order_body(mall, sub_mchid, out_trade_no, total_fen, **extra))
    assert created.status == 200, created.json
    paid = await mall.shopper_pays(sub_mchid, out_trade_no)
    await wait_until(lambda: _is_paid(mall, sub_mchid, out_trade_no), what="payment applied")
    return paid["transaction_id"]


async def _is_paid(mall, sub_mchid, out_trade_no) -> bool:
    async with mall.pool.acquire() as conn:
        return await conn.fetchval("SELECT state = 'SUCCESS' FROM orders WHERE sub_mchid = $1 AND out_trade_no = $2",
                                   sub_mchid, out_trade_no)


async def test_guide_reward_split_unfreeze_and_refund_with_clawback(make_mall):
    mall = await make_mall(emulator={"split_after_payment_s": 1})
    store = "1900000301"
    await onboard(mall, store, commission_bps=500, guide_reward_bps=200)
    guide = await mall.admin.post("/v3/mall/guides", {"guide_id": "G001", "sub_mchid": store,
                                                      "openid": GUIDE_OPENID, "name": "Lin"})
    assert guide.status == 200, guide.json
    transaction_id = await paid_order(mall, store, "SPLIT-0001", 10_000, guide_id="G001")

    # The channel refuses splits for a second after payment; the gateway retries alone.
    await wait_until(lambda: _balance_is(mall, "guide:G001:rewards", 200), timeout_s=15, what="guide reward")

    split = await mall.app.post("/v3/profitsharing/orders", {
        "sub_mchid": store, "appid": mall.settings.sp_appid, "transaction_id": transaction_id,
        "out_order_no": "P-0001", "unfreeze_unsplit": False,
        "receivers": [{"type": "MERCHANT_ID", "account": mall.settings.sp_mchid, "amount": 500,
                       "description": "商场佣金"}]})
    assert split.status == 200, split.json
    await wait_until(lambda: _balance_is(mall, "mall:commission", 500), what="commission split")
    queried = await mall.app.get(f"/v3/profitsharing/orders/P-0001?sub_mchid={store}&transaction_id={transaction_id}")
    assert queried.json["state"] == "FINISHED" and queried.json["receivers"][0]["result"] == "SUCCESS"
    left = await mall.app.get(f"/v3/profitsharing/transactions/{transaction_id}/amounts")
    frozen = (await balances(mall.pool, mall.settings.sp_mchid))[f"tenant:{store}:frozen"]
    # Still frozen at the channel; the mall may still split 30% of 10000 less the 700 split
    # and the 500 kept for the contract's automatic commission.
    assert left.json == {"transaction_id": transaction_id, "unsplit_amount": frozen,
                         "mall_info": {"splittable_amount": 3000 - 700 - 500, "set_aside_amount": 500}}

    too_much = await mall.app.post("/v3/profitsharing/orders", {
        "sub_mchid": store, "transaction_id": transaction_id, "out_order_no": "P-0002",
        "unfreeze_unsplit": False, "receivers": [{"type": "MERCHANT_ID", "account": mall.settings.sp_mchid,
                                                  "amount": 1801, "description": "too much"}]})
    assert too_much.status == 400 and too_much.json["detail"] == {
        "reason": "ratio_exceeded", "asked": 1801, "allowed": 1800, "reserved": 500, "cap": 3000, "already": 700}

    unfrozen = await mall.app.post("/v3/profitsharing/orders/unfreeze", {
        "sub_mchid": store, "transaction_id": transaction_id, "out_order_no": "UF-0001",
        "description": "解冻"})
    assert unfrozen.status == 200, unfrozen.json
    fee = 60
    await wait_until(lambda: _balance_is(mall, f"tenant:{store}:available", 10_000 - fee - 700), what="unfreeze")
    book = await balances(mall.pool, mall.settings.sp_mchid)
    assert book[f"tenant:{store}:frozen"] == 0

    # A second sale so the store can carry the guide's share of the refund below.
    await paid_order(mall, store, "SPLIT-0002", 5_000, profit_sharing=False)
    refund = await mall.app.post("/v3/refund/domestic/refunds", {
        "sub_mchid": store, "transaction_id": transaction_id, "out_refund_no": "RF-0001",
        "amount": {"refund": 10_000, "total": 10_000, "currency": "CNY"}})
    assert refund.status == 200, refund.json
    assert refund.json["funds_account"] == "AVAILABLE", "the order was unfrozen: the store's balance pays"
    await wait_until(lambda: _refund_state(mall, store, "RF-0001", "SUCCESS"), timeout_s=15, what="refund")
    book = await balances(mall.pool, mall.settings.sp_mchid)
    assert book["mall:commission"] == 0  # returned through the channel
    assert book["guide:G001:rewards"] == 200  # a person keeps what was paid out...
    assert book["guide:G001:clawback"] == -200  # ...and owes it
    assert book[f"tenant:{store}:owed_by_guides"] == 200
    assert book["payer"] == -5_000
    again = await mall.app.post("/v3/refund/domestic/refunds", {
        "sub_mchid": store, "transaction_id": transaction_id, "out_refund_no": "RF-0002",
        "amount": {"refund": 1, "total": 10_000}})
    assert again.status == 400 and again.json["detail"]["reason"] == "amount_exceeds_refundable"


async def test_high_ratio_needs_an_approval(make_mall):
    mall = await make_mall()
    store = "1900000302"
    await onboard(mall, store)
    refused = await mall.admin.post("/v3/mall/tenants", {
        "sub_mchid": "1900000303", "name": "Franchise", "contract": {"max_ratio_bps": 6000}})
    assert refused.status == 400 and refused.json["detail"] == {
        "reason": "approval_required", "asked": 6000, "allowed": 3000}
    added = await mall.app.post("/v3/profitsharing/receivers/add", {
        "sub_mchid": store, "appid": mall.settings.sp_appid, "type": "MERCHANT_ID", "account": BRAND_HQ,
        "name": signing.oaep_encrypt(mall.gateway_public_key, "Linen Brand HQ Co., Ltd."),
        "relation_type": "HEADQUARTER"}, headers={"Wechatpay-Serial": mall.gateway_key_id})
    assert added.status == 200, added.json
    transaction_id = await paid_order(mall, store, "BRAND-0001", 10_000)
    split = {"sub_mchid": store, "transaction_id": transaction_id, "out_order_no": "B-0001",
             "unfreeze_unsplit": True,
             "receivers": [{"type": "MERCHANT_ID", "account": BRAND_HQ, "amount": 6000, "description": "品牌分成"}]}
    over = await mall.app.post("/v3/profitsharing/orders", split)
    assert over.status == 400 and over.json["detail"]["reason"] == "ratio_exceeded"

    approval = await mall.admin.post(f"/v3/mall/tenants/{store}/approvals", {
        "approved_by": "mall finance director", "reason": "franchise contract 2026-11", "max_ratio_bps": 6000})
    assert approval.status == 200, approval.json
    async with mall.session.post(mall.emulator_url + "/sandbox/merchant-configs",
                                 json={"sub_mchid": store, "max_ratio": 6000}) as resp:
        assert resp.status == 200
    # The cap of an order is fixed when it is paid: a new order gets the approved cap.
    transaction_id = await paid_order(mall, store, "BRAND-0002", 10_000)
    split["transaction_id"], split["out_order_no"] = transaction_id, "B-0002"
    ok = await mall.app.post("/v3/profitsharing/orders", split)
    assert ok.status == 200, ok.json
    # Which approval the split above 30 % used is in its answer, and in its query.
    assert ok.json["mall_info"] == {"approval_id": approval.json["approval_id"]}
    await wait_until(lambda: _balance_is(mall, f"receiver:{BRAND_HQ}", 6000), what="brand split")
    await wait_until(lambda: _balance_is(mall, f"tenant:{store}:frozen", 10_000 - 60), what="rest unfrozen")
    queried = await mall.app.get(f"/v3/profitsharing/orders/B-0002?sub_mchid={store}&transaction_id={transaction_id}")
    assert queried.json["mall_info"] == {"approval_id": approval.json["approval_id"]}


async def test_gateway_finishes_orders_before_the_auto_unfreeze(make_mall):
    now = [datetime.now(timezone.utc)]
    mall = await make_mall(clock=lambda: now[0])
    store = "1900000304"
    await onboard(mall, store, commission_bps=800)
    await paid_order(mall, store, "LATE-0001", 20_000)
    now[0] += timedelta(days=29, minutes=1)  # past finish_by = paid + 30 days - 1 day
    await wait_until(lambda: _balance_is(mall, "mall:commission", 1600), timeout_s=15, what="commission")
    await wait_until(lambda: _balance_is(mall, f"tenant:{store}:available", 20_000 - 120 - 1600),
                     timeout_s=15, what="rest unfrozen")


async def test_ten_concurrent_full_refunds_refund_once(make_mall):
    store = "1900000305"
    mall, replies = await _paid_then_raced(make_mall, store, 3_000, "/v3/refund/domestic/refunds", 10, lambda m, i, t: {
        "sub_mchid": store, "transaction_id": t, "out_refund_no": f"MR-{i:04d}",
        "amount": {"refund": 3_000, "total": 3_000}})
    accepted = [r for r in replies if r.status == 200]
    assert len(accepted) == 1, [(r.status, r.json) for r in replies]
    assert all(r.json["detail"]["reason"] == "amount_exceeds_refundable" for r in replies if r.status != 200)
    await wait_until(lambda: _balance_is(mall, "payer", 0), timeout_s=15, what="refund")


async def test_concurrent_splits_never_exceed_the_cap(make_mall):
    store = "1900000306"
    mall, replies = await _paid_then_raced(make_mall, store, 10_000, "/v3/profitsharing/orders", 8, lambda m, i, t: {
        "sub_mchid": store, "transaction_id": t, "out_order_no": f"C-{i:04d}", "unfreeze_unsplit": False,
        "receivers": [{"type": "MERCHANT_ID", "account": m.settings.sp_mchid, "amount": 700,
                       "description": "佣金"}]})
    assert sum(r.status == 200 for r in replies) == 4  # 4 × 700 ≤ 3000 < 5 × 700
    await wait_until(lambda: _balance_is(mall, "mall:commission", 2800), what="splits")


async def _paid_then_raced(make_mall, store: str, total_fen: int, path: str, times: int, body_of):
    """A mall with `store` onboarded and one order of `total_fen` paid there, then `times`
    POSTs to `path` at once, the i-th with body_of(mall, i, transaction_id): (mall, the replies)."""
    mall = await make_mall()
    await onboard(mall, store)
    transaction_id = await paid_order(mall, store, f"RACE-{store}", total_fen)
    return mall, await asyncio.gather(*(mall.app.post(path, body_of(mall, i, transaction_id)) for i in range(times)))


async def _balance_is(mall, account: str, expected: int) -> bool:
    return (await balances(mall.pool, mall.settings.sp_mchid)).get(account) == expected


async def _refund_state(mall, store, out_refund_no, state) -> bool:
    reply = await mall.app.get(f"/v3/refund/domestic/refunds/{out_refund_no}?sub_mchid={store}")
    return reply.json["status"] == state


async def test_an_admin_changes_a_contract_but_not_its_cap(make_mall):
    mall = await make_mall()
    store = "1900000307"
    await onboard(mall, store, commission_bps=500, guide_reward_bps=200)
    changed = await mall.admin.request("PATCH", f"/v3/mall/tenants/{store}/contract", {"commission_bps": 800})
    assert changed.status == 200, changed.json
    assert changed.json["contract"]["commission_bps"] == 800
    assert changed.json["contract"]["guide_reward_bps"] == 200  # untouched terms stay
    raised = await mall.admin.request("PATCH", f"/v3/mall/tenants/{store}/contract", {"max_ratio_bps": 6000})
    assert raised.status == 400 and raised.json["detail"]["reason"] == "approval_required"
    too_much = await mall.admin.request("PATCH", f"/v3/mall/tenants/{store}/contract", {"commission_bps": 2900})
    assert too_much.status == 400 and too_much.json["detail"]["reason"] == "ratio_exceeded"
    by_app = await mall.app.request("PATCH", f"/v3/mall/tenants/{store}/contract", {"commission_bps": 0})
    assert by_app.status == 403
    async with mall.pool.acquire() as conn:
        assert await conn.fetchval("SELECT commission_bps FROM tenants WHERE sub_mchid = $1", store) == 800


async def test_an_order_naming_an_unknown_guide_or_another_stores_guide_is_refused(make_mall):
    mall = await make_mall()
    store, other = "1900000308", "1900000309"
    await onboard(mall, store, guide_reward_bps=200)
    await onboard(mall, other, guide_reward_bps=200)
    guide = await mall.admin.post("/v3/mall/guides", {"guide_id": "G308", "sub_mchid": other,
                                                      "openid": "oGuideOfOther0308", "name": "Wu"})
    assert guide.status == 200, guide.json
    for guide_id, reason in (("G404", "guide_not_found"), ("G308", "guide_of_another_store")):
        created = await mall.app.post("/v3/pay/partner/transactions/jsapi", order_body(
            mall, store, f"GUIDE-{guide_id}", 1_000, mall_info={"guide_id": guide_id}))
        assert created.status == 400 and created.json["detail"] == {"reason": reason, "guide_id": guide_id}
    async with mall.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM orders WHERE out_trade_no LIKE 'GUIDE-%'") == 0

    # A refund of a still frozen order is paid from the order's unsettled money.
    transaction_id = await paid_order(mall, store, "GUIDE-OK", 1_000)
    refund = await mall.app.post("/v3/refund/domestic/refunds", {
        "sub_mchid": store, "transaction_id": transaction_id, "out_refund_no": "GRF-1",
        "amount": {"refund": 400, "total": 1_000, "currency": "CNY"}})
    assert refund.status == 200 and refund.json["funds_account"] == "UNSETTLED", refund.json
