"""The drop-in rule for revenue splitting (SPEC 2, 5): a mall backend using the public
`wechatpayv3` SDK's profit-sharing and refund methods, unchanged, against the gateway.

The SDK verifies the gateway's signature on every 2xx answer itself (a 200 here is a
verified 200), and encrypts a receiver's name under the public key it was given: the
gateway's. After each step the books are checked fen by fen.
"""

from __future__ import annotations

import asyncio
import json

from tests.support import balances, pay_order, transfers_of, wait_until, wechatpay_sdk

BRAND_HQ = "1900009911"
GUIDE_ID, GUIDE_OPENID = "G-SDK-1", "oGuideSdkLin0001"
TOTAL = 10_000
FEE = 60  # 0.6 % of 10 000, the stores' contract rate
FLOAT_TOTAL, FLOAT_FEE = 1_000, 6  # a plain sale, so the store can carry the guide's share of refunds


async def call(method, *args, **kwargs) -> tuple[int, dict]:
    """One blocking SDK call, off the event loop the gateway runs on."""
    code, text = await asyncio.to_thread(method, *args, **kwargs)
    return code, (json.loads(text) if text else {})


async def until_state(method, field: str, wanted: str, **kwargs) -> dict:
    """Poll an SDK query until `field` reads `wanted` (the split or refund has ended)."""
    seen: list = []

    async def reached():
        code, body = await call(method, **kwargs)
        assert code == 200, body
        seen.append(body.get(field))
        return body if body.get(field) == wanted else None

    try:
        return await wait_until(reached, timeout_s=10, step_s=0.05, what=f"{field} == {wanted}")
    except AssertionError:
        raise AssertionError(f"{field} never became {wanted}; last seen {seen[-3:]}") from None


async def test_profit_sharing_and_refunds_through_the_wechatpayv3_sdk(make_mall):
    mall = await make_mall()
    sdk, store, mall_mchid = wechatpay_sdk(mall), mall.stores[0], mall.settings.sp_mchid
    book = lambda: balances(mall.pool, mall_mchid)  # noqa: E731

    # Receivers: a brand HQ added with the SDK (name encrypted for the gateway, which
    # decrypts it and re-encrypts it for the channel), a guide registered by the admin.
    code, added = await call(sdk.profitsharing_add_receiver, account_type="MERCHANT_ID", account=BRAND_HQ,
                             relation_type="HEADQUARTER", name="Linen Brand HQ Co., Ltd.", sub_mchid=store)
    assert code == 200, added
    assert (added["account"], added["type"], added["relation_type"]) == (BRAND_HQ, "MERCHANT_ID", "HEADQUARTER")
    guide = await mall.admin.post("/v3/mall/guides", {"guide_id": GUIDE_ID, "sub_mchid": store,
                                                      "openid": GUIDE_OPENID, "name": "Lin"})
    assert guide.status == 200, guide.json

    code, config = await call(sdk.profitsharing_config_query, sub_mchid=store)
    assert (code, config) == (200, {"sub_mchid": store, "max_ratio": 3000})

    # The shopper pays 100.00 with profit sharing; the money stays frozen.
    code, created = await call(sdk.pay, description="Linen shirt", out_trade_no="SDKPS-1", amount={"total": TOTAL},
                               payer={"sp_openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"}, sub_mchid=store,
                               settle_info={"profit_sharing": True})
    assert code == 200 and created["prepay_id"], created
    transaction_id = (await mall.shopper_pays(store, "SDKPS-1"))["transaction_id"]
    await wait_until(lambda: _balance_is(mall, f"tenant:{store}:frozen", TOTAL - FEE), what="payment frozen")
    await pay_order(mall, store, "SDKPS-FLOAT", FLOAT_TOTAL, profit_sharing=False)

    code, left = await call(sdk.profitsharing_amount_query, transaction_id=transaction_id)
    # All of it is still frozen; the mall may split 30 % of it (nothing is set aside: no guide
    # named, no automatic commission).
    assert (code, left) == (200, {"transaction_id": transaction_id, "unsplit_amount": TOTAL - FEE,
                                  "mall_info": {"splittable_amount": 3000, "set_aside_amount": 0}})

    # One split to three receivers: the mall itself, the brand, the guide.
    receivers = [
        {"type": "MERCHANT_ID", "account": mall_mchid, "amount": 500, "description": "商场佣金"},
        {"type": "MERCHANT_ID", "account": BRAND_HQ, "amount": 1000, "description": "品牌分成"},
        {"type": "PERSONAL_OPENID", "account": GUIDE_OPENID, "amount": 300, "description": "导购奖励"},
    ]
    code, split = await call(sdk.profitsharing_order, transaction_id=transaction_id, out_order_no="SDKP-1",
                             receivers=[dict(r) for r in receivers], unfreeze_unsplit=False, sub_mchid=store)
    assert code == 200, split
    assert split["out_order_no"] == "SDKP-1" and split["state"] in ("PROCESSING", "FINISHED"), split
    done = await until_state(sdk.profitsharing_order_query, "state", "FINISHED", transaction_id=transaction_id,
                             out_order_no="SDKP-1", sub_mchid=store)
    assert [(r["account"], r["amount"], r["result"]) for r in done["receivers"]] == [
        (mall_mchid, 500, "SUCCESS"), (BRAND_HQ, 1000, "SUCCESS"), (GUIDE_OPENID, 300, "SUCCESS")]
    ledger = await book()
    assert ledger["mall:commission"] == 500
    assert ledger[f"receiver:{BRAND_HQ}"] == 1000
    assert ledger[f"guide:{GUIDE_ID}:rewards"] == 300
    assert ledger[f"tenant:{store}:frozen"] == TOTAL - FEE - 1800

    # The same request again answers the same split and moves nothing.
    code, again = await call(sdk.profitsharing_order, transaction_id=transaction_id, out_order_no="SDKP-1",
                             receivers=[dict(r) for r in receivers], unfreeze_unsplit=False, sub_mchid=store)
    assert code == 200 and again["state"] == "FINISHED" and again["order_id"] == done["order_id"]
    assert await book() == ledger

    code, left = await call(sdk.profitsharing_amount_query, transaction_id=transaction_id)
    assert (code, left["unsplit_amount"], left["mall_info"]["splittable_amount"]) == (
        200, TOTAL - FEE - 1800, 3000 - 1800)
    code, over = await call(sdk.profitsharing_order, transaction_id=transaction_id, out_order_no="SDKP-2",
                            receivers=[{"type": "MERCHANT_ID", "account": BRAND_HQ, "amount": 1201,
                                        "description": "超出上限"}], unfreeze_unsplit=False, sub_mchid=store)
    assert code == 400 and over["detail"]["reason"] == "ratio_exceeded", over
    assert await book() == ledger

    # The brand gives 4.00 back of its own accord (a split return).
    code, returned = await call(sdk.profitsharing_return, out_return_no="SDKR-1", return_mchid=BRAND_HQ,
                                amount=400, description="品牌让利退回", out_order_no="SDKP-1", sub_mchid=store)
    assert code == 200 and returned["result"] in ("PROCESSING", "SUCCESS"), returned
    code, queried = await call(sdk.profitsharing_return_query, out_order_no="SDKP-1", out_return_no="SDKR-1",
                               sub_mchid=store)
    assert code == 200 and (queried["result"], queried["amount"], queried["return_mchid"]) == (
        "SUCCESS", 400, BRAND_HQ), queried
    assert queried["order_id"] == done["order_id"], "a return names the split's order_id as the split answers it"
    ledger = await book()
    assert ledger[f"receiver:{BRAND_HQ}"] == 600
    assert ledger[f"tenant:{store}:available"] == FLOAT_TOTAL - FLOAT_FEE + 400

    # The rest goes back to the store.
    code, unfrozen = await call(sdk.profitsharing_unfreeze, transaction_id=transaction_id, out_order_no="SDKU-1",
                                description="解冻剩余资金", sub_mchid=store)
    assert code == 200, unfrozen
    await until_state(sdk.profitsharing_order_query, "state", "FINISHED", transaction_id=transaction_id,
                      out_order_no="SDKU-1", sub_mchid=store)
    ledger = await book()
    assert ledger[f"tenant:{store}:frozen"] == 0
    available = FLOAT_TOTAL - FLOAT_FEE + 400 + (TOTAL - FEE - 1800)
    assert ledger[f"tenant:{store}:available"] == available
    code, left = await call(sdk.profitsharing_amount_query, transaction_id=transaction_id)
    assert (code, left["unsplit_amount"], left["mall_info"]["splittable_amount"]) == (200, 0, 0)

    # Refunds: 20.00, then 30.00, then the rest. Each claws back from every receiver in
    # proportion: merchants return through the channel, the guide's share becomes owed.
    #   outstanding    mall 500 | brand 600 | guide 300 | fee 60, of 10 000 refundable
    #   RF-1  2 000 :       100 |       120 |        60 |     12
    #   RF-2  3 000 :       150 |       180 |        90 |     18   (of 8 000 refundable)
    #   RF-3  5 000 :       250 |       300 |       150 |     30   (everything left)
    steps = [("SDKRF-1", 2_000, 100, 120, 60, 12), ("SDKRF-2", 3_000, 150, 180, 90, 18),
             ("SDKRF-3", 5_000, 250, 300, 150, 30)]
    commission, brand, owed, fees, refunded = 500, 600, 0, FEE + FLOAT_FEE, 0
    for out_refund_no, amount, mall_back, brand_back, guide_owes, fee_back in steps:
        code, refund = await call(sdk.refund, out_refund_no=out_refund_no, transaction_id=transaction_id,
                                  amount={"refund": amount, "total": TOTAL, "currency": "CNY"},
                                  reason="顾客退货", sub_mchid=store)
        assert code == 200, refund
        assert (refund["out_refund_no"], refund["amount"]["refund"]) == (out_refund_no, amount)
        assert refund["status"] in ("PROCESSING", "SUCCESS")
        ended = await until_state(sdk.query_refund, "status", "SUCCESS", out_refund_no=out_refund_no,
                                  sub_mchid=store)
        assert ended["amount"]["refund"] == amount and ended["success_time"]
        assert ended["amount"]["refund_fee"] == fee_back, "the fee the channel gave back with this refund"
        commission, brand, owed, fees = commission - mall_back, brand - brand_back, owed + guide_owes, fees - fee_back
        available += mall_back + brand_back - (amount - fee_back)
        refunded += amount
        ledger = await book()
        assert ledger["payer"] == -(TOTAL + FLOAT_TOTAL - refunded), out_refund_no
        assert ledger["mall:commission"] == commission, out_refund_no
        assert ledger[f"receiver:{BRAND_HQ}"] == brand, out_refund_no
        assert ledger[f"guide:{GUIDE_ID}:rewards"] == 300, "a person keeps what was paid out"
        assert ledger[f"guide:{GUIDE_ID}:clawback"] == -owed, out_refund_no
        assert ledger[f"tenant:{store}:owed_by_guides"] == owed, out_refund_no
        assert ledger["channel:fees"] == fees, out_refund_no
        assert ledger[f"tenant:{store}:available"] == available, out_refund_no
        assert await transfers_of(mall.pool, "refund", f"{store}/{out_refund_no}") == 1

    assert (commission, brand, owed, fees) == (0, 0, 300, FLOAT_FEE)
    code, text = await asyncio.to_thread(sdk.refund, out_refund_no="SDKRF-4", transaction_id=transaction_id,
                                         amount={"refund": 1, "total": TOTAL, "currency": "CNY"}, sub_mchid=store)
    assert code == 400 and json.loads(text)["detail"]["reason"] == "amount_exceeds_refundable"
    # The same refund asked again answers the same refund, and nothing moves twice.
    code, repeated = await call(sdk.refund, out_refund_no="SDKRF-1", transaction_id=transaction_id,
                                amount={"refund": 2_000, "total": TOTAL, "currency": "CNY"},
                                reason="顾客退货", sub_mchid=store)
    assert code == 200 and repeated["status"] == "SUCCESS" and repeated["amount"]["refund"] == 2_000
    assert await book() == ledger

    # The backend's notify endpoint opens the gateway's notifications with the SDK itself:
    # each receiver of the split once (WeChat's resource has one `receiver`), each refund once.
    def opened():
        events = [sdk.callback(headers, body) for headers, body in list(mall.sink.received)]
        return events if sum(e is not None and e["event_type"] != "TRANSACTION.SUCCESS" for e in events) >= 6 else None

    events = await wait_until(lambda: asyncio.to_thread(opened), what="split and refund notifications")
    assert None not in events, "the SDK refused a notification of the gateway"
    split_events = [e["resource"] for e in events if e["event_type"] == "PROFITSHARING.SUCCESS"]
    assert sorted((r["out_order_no"], r["receiver"]["amount"]) for r in split_events) == [
        ("SDKP-1", 300), ("SDKP-1", 500), ("SDKP-1", 1000)]
    refund_events = sorted((e["resource"]["out_refund_no"], e["resource"]["amount"]["refund"],
                            e["resource"]["refund_status"]) for e in events if e["event_type"] == "REFUND.SUCCESS")
    assert refund_events == [("SDKRF-1", 2_000, "SUCCESS"), ("SDKRF-2", 3_000, "SUCCESS"),
                             ("SDKRF-3", 5_000, "SUCCESS")]


async def _balance_is(mall, account: str, expected: int) -> bool:
    return (await balances(mall.pool, mall.settings.sp_mchid)).get(account) == expected
