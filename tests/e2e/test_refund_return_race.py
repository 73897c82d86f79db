"""A refund's split return whose request is in flight when the refund closes: the books
follow what the channel did, whichever way the race goes."""

from __future__ import annotations

import asyncio
import json

from gateway import signing
from gateway.api import SERVICES
from gateway.services import refunds
from splitting import repo as splitting_repo
from tests.support import balances, order_funds_row, pay_order, wait_until

BRAND = "1900009944"


async def _store_with_a_split(mall, out_trade_no: str) -> tuple[str, str]:
    store = mall.stores[0]
    added = await mall.app.post("/v3/profitsharing/receivers/add", {
        "sub_mchid": store, "appid": mall.settings.sp_appid, "type": "MERCHANT_ID", "account": BRAND,
        "name": signing.oaep_encrypt(mall.gateway_public_key, "Brand HQ"), "relation_type": "HEADQUARTER"},
        headers={"Wechatpay-Serial": mall.gateway_key_id})
    assert added.status == 200, added.json
    transaction_id = await pay_order(mall, store, out_trade_no, 10_000)
    split = await mall.app.post("/v3/profitsharing/orders", {
        "sub_mchid": store, "transaction_id": transaction_id, "out_order_no": f"S-{out_trade_no}",
        "unfreeze_unsplit": False,
        "receivers": [{"type": "MERCHANT_ID", "account": BRAND, "amount": 2_000, "description": "分账"}]})
    assert split.status == 200, split.json

    async def split_booked():
        return (await balances(mall.pool, mall.settings.sp_mchid)).get(f"receiver:{BRAND}") == 2_000
    await wait_until(split_booked, what="the split booked")
    return store, transaction_id


async def _whole_refund_with_its_return_held(mall, monkeypatch, store: str, transaction_id: str,
                                             out_refund_no: str) -> tuple[asyncio.Task, asyncio.Event]:
    """The whole order refunded, its split return's request held on its way to the channel:
    the refund request (a task) and the event that lets the return go on."""
    channel = mall.gateway_app[SERVICES].channel
    in_flight, go_on = asyncio.Event(), asyncio.Event()
    request_split_return = channel.request_split_return

    async def held_request(req):
        in_flight.set()
        await go_on.wait()
        return await request_split_return(req)

    monkeypatch.setattr(channel, "request_split_return", held_request)
    refund = asyncio.create_task(mall.app.post("/v3/refund/domestic/refunds", {
        "sub_mchid": store, "transaction_id": transaction_id, "out_refund_no": out_refund_no,
        "amount": {"refund": 10_000, "total": 10_000, "currency": "CNY"}}))
    await asyncio.wait_for(in_flight.wait(), 10)
    return refund, go_on


async def _brand_at_channel(mall) -> int:
    async with mall.session.get(f"{mall.emulator_url}/sandbox/receivers/MERCHANT_ID/{BRAND}/funds") as resp:
        return (await resp.json())["received_fen"]


async def _returns(mall, store: str, out_refund_no: str) -> list:
    async with mall.pool.acquire() as conn:
        return await conn.fetch("SELECT * FROM split_returns WHERE sub_mchid = $1 AND out_refund_no = $2",
                                store, out_refund_no)


async def test_a_return_accepted_after_its_refund_closed_is_booked_as_a_return(make_mall, monkeypatch):
    mall = await make_mall()
    svc = mall.gateway_app[SERVICES]
    store, transaction_id = await _store_with_a_split(mall, "RACE-0001")
    refund, go_on = await _whole_refund_with_its_return_held(mall, monkeypatch, store, transaction_id, "RACE-R1")
    # Meanwhile another driver of the same refund closes it (a sibling return failed, say):
    # this return, still PREPARED in the books, is taken for never sent.
    async with mall.pool.acquire() as conn:
        row = await conn.fetchrow("SELECT * FROM refunds WHERE sub_mchid = $1 AND out_refund_no = 'RACE-R1'", store)
    assert await refunds._closed(svc, row, "split_return_failed") is True
    [closed_return] = await _returns(mall, store, "RACE-R1")
    assert splitting_repo.closed_unsent(closed_return)
    go_on.set()  # ... and then the channel accepts the request that was in flight
    answered = await refund
    assert answered.status == 200 and answered.json["status"] == "CLOSED", answered.json

    [returned] = await _returns(mall, store, "RACE-R1")
    assert returned["state"] == "SUCCESS"
    assert await _brand_at_channel(mall) == 0
    books = await balances(mall.pool, mall.settings.sp_mchid)
    assert books[f"receiver:{BRAND}"] == 0, "the books follow the channel: the brand's share came back"
    row = await order_funds_row(mall.pool, transaction_id)
    assert row["refunded_fen"] == 0
    lines = row["lines"] if isinstance(row["lines"], list) else json.loads(row["lines"])
    assert [(line["account"], line["split_fen"], line["back_fen"]) for line in lines] == [
        (f"receiver:{BRAND}", 2_000, 2_000)]
    assert await mall.invariants() == []


async def test_a_refund_does_not_close_while_one_of_its_returns_is_in_flight(make_mall, monkeypatch):
    mall = await make_mall()
    svc = mall.gateway_app[SERVICES]
    store, transaction_id = await _store_with_a_split(mall, "RACE-0002")
    refund, go_on = await _whole_refund_with_its_return_held(mall, monkeypatch, store, transaction_id, "RACE-R2")
    async with mall.pool.acquire() as conn:  # as when the channel answered PROCESSING (WeChat may take a while)
        await conn.execute("UPDATE split_returns SET state = 'PROCESSING' WHERE out_refund_no = 'RACE-R2'")
        row = await conn.fetchrow("SELECT * FROM refunds WHERE out_refund_no = 'RACE-R2'")
    assert await refunds._closed(svc, row, "split_return_failed") is False, "it could still go either way"
    assert await _refund_state_is(mall, store, "RACE-R2", "PREPARED")
    go_on.set()
    answered = await refund
    assert answered.status == 200, answered.json
    await wait_until(lambda: _refund_state_is(mall, store, "RACE-R2", "SUCCESS"), what="the refund")
    [returned] = await _returns(mall, store, "RACE-R2")
    assert returned["state"] == "SUCCESS"
    assert (await balances(mall.pool, mall.settings.sp_mchid))[f"receiver:{BRAND}"] == 0
    assert await _brand_at_channel(mall) == 0


async def _refund_state_is(mall, store: str, out_refund_no: str, state: str) -> bool:
    async with mall.pool.acquire() as conn:
        return await conn.fetchval("SELECT state FROM refunds WHERE sub_mchid = $1 AND out_refund_no = $2",
                                   store, out_refund_no) == state
