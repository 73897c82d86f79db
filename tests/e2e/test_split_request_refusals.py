"""A split request is read whole before anything happens: a malformed receiver anywhere
in the list is refused with its field, and nothing is written or asked of the channel,
not even the mall's own receiver that a well-formed request would register first."""

from __future__ import annotations

from tests.support import order_body, table_counts, wait_until


async def _receivers(mall) -> int:
    async with mall.pool.acquire() as conn:
        return await conn.fetchval("SELECT count(*) FROM receivers")


async def _paid(mall, store: str, out_trade_no: str) -> str:
    created = await mall.app.post("/v3/pay/partner/transactions/jsapi",
                                  order_body(mall, store, out_trade_no, 10_000, settle_info={"profit_sharing": True}))
    assert created.status == 200, created.json
    paid = await mall.shopper_pays(store, out_trade_no)

    async def applied() -> bool:
        async with mall.pool.acquire() as conn:
            return await conn.fetchval("SELECT state = 'SUCCESS' FROM orders WHERE out_trade_no = $1", out_trade_no)
    await wait_until(applied, what="payment applied")
    return paid["transaction_id"]


async def test_a_malformed_receiver_after_the_mall_is_refused_before_anything_is_written(mall):
    store = mall.stores[0]
    transaction_id = await _paid(mall, store, "SPLIT-REFUSED-01")
    receivers_before, tables_before = await _receivers(mall), await table_counts(mall.pool)
    reply = await mall.app.post("/v3/profitsharing/orders", {
        "sub_mchid": store, "transaction_id": transaction_id, "out_order_no": "P-REFUSED-01",
        "unfreeze_unsplit": False,
        "receivers": [{"type": "MERCHANT_ID", "account": mall.settings.sp_mchid, "amount": 100, "description": "佣金"},
                      {"type": "PERSONAL_OPENID", "account": "not an openid", "amount": 100, "description": "x"}]})
    assert reply.status == 400, reply.json
    assert reply.json["code"] == "PARAM_ERROR"
    assert reply.json["detail"] == {"field": "receivers[1].account", "issue": "bad_format"}
    assert await _receivers(mall) == receivers_before  # the mall's receiver was not registered
    assert await table_counts(mall.pool) == tables_before
    assert await mall.invariants() == []


async def test_an_unregistered_receiver_names_its_place_in_the_list(mall):
    store = mall.stores[0]
    transaction_id = await _paid(mall, store, "SPLIT-REFUSED-02")
    reply = await mall.app.post("/v3/profitsharing/orders", {
        "sub_mchid": store, "transaction_id": transaction_id, "out_order_no": "P-REFUSED-02",
        "unfreeze_unsplit": False,
        "receivers": [{"type": "MERCHANT_ID", "account": "1900007777", "amount": 100, "description": "品牌"}]})
    assert reply.status == 400, reply.json
    assert reply.json["detail"]["reason"] == "receiver_not_registered"
    assert reply.json["message"] == "receivers[0] is not a receiver of this store"
    assert await mall.invariants() == []
