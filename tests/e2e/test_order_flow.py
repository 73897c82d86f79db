"""A mall backend's day: create, pay, get notified, query, close — over real sockets."""

from __future__ import annotations

import asyncio

from tests.support import open_notification, order_body, pay_order


async def wait_for(predicate, timeout_s: float = 10.0, step_s: float = 0.02):
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        result = await predicate()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(step_s)


async def test_order_is_paid_notified_and_queryable(mall):
    store = mall.stores[0]
    created = await mall.app.post("/v3/pay/partner/transactions/jsapi", order_body(mall, store, "ORDER-0001", 2599))
    assert created.status == 200, created.json
    prepay_id = created.json["prepay_id"]
    params = created.json["mall_info"]["pay_params"]
    assert params["package"] == f"prepay_id={prepay_id}" and params["signType"] == "RSA"

    paid = await mall.shopper_pays(store, "ORDER-0001")
    notified = await wait_for(lambda: _first(mall.sink.received))
    headers, body = notified
    event = open_notification(headers, body, mall.gateway_public_key, mall.app.creds.apiv3_key)
    assert event["event_type"] == "TRANSACTION.SUCCESS"
    resource = event["resource"]
    assert resource["out_trade_no"] == "ORDER-0001" and resource["trade_state"] == "SUCCESS"
    assert resource["amount"]["total"] == 2599
    assert resource["transaction_id"] == paid["transaction_id"]

    by_no = await mall.app.get(f"/v3/pay/partner/transactions/out-trade-no/ORDER-0001"
                               f"?sp_mchid={mall.settings.sp_mchid}&sub_mchid={store}")
    assert by_no.status == 200 and by_no.json["trade_state"] == "SUCCESS"
    by_id = await mall.app.get(f"/v3/pay/partner/transactions/id/{paid['transaction_id']}"
                               f"?sp_mchid={mall.settings.sp_mchid}&sub_mchid={store}")
    assert by_id.json == by_no.json

    balances = await _balances(mall)
    fee = (2599 * 60 + 5000) // 10000
    assert balances["payer"] == -2599
    assert balances["channel:fees"] == fee
    assert balances[f"tenant:{store}:available"] == 2599 - fee


async def test_closed_order_cannot_be_paid(mall):
    store = mall.stores[1]
    assert (await mall.app.post("/v3/pay/partner/transactions/jsapi",
                                order_body(mall, store, "ORDER-0002"))).status == 200
    closed = await mall.app.post("/v3/pay/partner/transactions/out-trade-no/ORDER-0002/close",
                                 {"sp_mchid": mall.settings.sp_mchid, "sub_mchid": store})
    assert closed.status == 204 and closed.body == b""
    async with mall.session.post(mall.emulator_url + "/sandbox/transactions/pay",
                                 json={"sub_mchid": store, "out_trade_no": "ORDER-0002"}) as resp:
        assert resp.status == 400
    queried = await mall.app.get(f"/v3/pay/partner/transactions/out-trade-no/ORDER-0002"
                                 f"?sp_mchid={mall.settings.sp_mchid}&sub_mchid={store}")
    assert queried.json["trade_state"] == "CLOSED"
    assert (await _balances(mall))["payer"] == 0


async def _first(items):
    return items[0] if items else None


async def _balances(mall) -> dict:
    from ledger import repo
    async with mall.pool.acquire() as conn:
        return {name: balance for name, _, balance in await repo.trial_balance(conn, mall.settings.sp_mchid)}


async def test_out_trade_no_with_a_pipe_is_created_paid_queried_and_closed(mall):
    # WeChat Pay's partner JSAPI allows `|` in out_trade_no: [0-9A-Za-z_\-|*], 6 to 32.
    store = mall.stores[2]
    transaction_id = await pay_order(mall, store, "SHOP|2025|0001", 1200, profit_sharing=False)
    # In a path `|` travels percent-encoded, and the client signs the path it sends.
    queried = await mall.app.get(f"/v3/pay/partner/transactions/out-trade-no/SHOP%7C2025%7C0001"
                                 f"?sp_mchid={mall.settings.sp_mchid}&sub_mchid={store}")
    assert queried.status == 200, queried.json
    assert (queried.json["out_trade_no"], queried.json["transaction_id"]) == ("SHOP|2025|0001", transaction_id)
    assert (await mall.app.post("/v3/pay/partner/transactions/jsapi",
                                order_body(mall, store, "SHOP|2025|0002"))).status == 200
    closed = await mall.app.post("/v3/pay/partner/transactions/out-trade-no/SHOP%7C2025%7C0002/close",
                                 {"sp_mchid": mall.settings.sp_mchid, "sub_mchid": store})
    assert closed.status == 204
    assert await mall.invariants() == []
