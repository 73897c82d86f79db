"""What the mall backend hears about splits and refunds (SPEC 2.2, 5): PROFITSHARING.SUCCESS
once a split it asked for has moved money, REFUND.SUCCESS / REFUND.ABNORMAL when a refund
ends, each exactly once, however often the channel tells the gateway."""

from __future__ import annotations

import asyncio

import pytest

from gateway import signing
from tests.support import (
    NotificationRelay, balances, build_mall, notifications_of, order_funds_row, pay_order, transfers_of,
    wait_until,
)

BRAND_HQ = "1900009922"


async def add_brand(mall, store: str) -> None:
    added = await mall.app.post("/v3/profitsharing/receivers/add", {
        "sub_mchid": store, "appid": mall.settings.sp_appid, "type": "MERCHANT_ID", "account": BRAND_HQ,
        "name": signing.oaep_encrypt(mall.gateway_public_key, "Brand HQ Co., Ltd."),
        "relation_type": "HEADQUARTER"}, headers={"Wechatpay-Serial": mall.gateway_key_id})
    assert added.status == 200, added.json


async def split(mall, store: str, transaction_id: str, out_order_no: str, receivers: list[tuple[str, int]]):
    return await mall.app.post("/v3/profitsharing/orders", {
        "sub_mchid": store, "transaction_id": transaction_id, "out_order_no": out_order_no,
        "unfreeze_unsplit": False,
        "receivers": [{"type": "MERCHANT_ID", "account": account, "amount": fen, "description": "分账"}
                      for account, fen in receivers]})


async def paid_and_split(mall, store: str, out_trade_no: str, total_fen: int, out_order_no: str,
                         receivers: list[tuple[str, int]]) -> str:
    """An order paid (profit sharing on) and a split of it accepted; its transaction_id."""
    transaction_id = await pay_order(mall, store, out_trade_no, total_fen)
    created = await split(mall, store, transaction_id, out_order_no, receivers)
    assert created.status == 200, created.json
    return transaction_id


async def refund(mall, store: str, transaction_id: str, out_refund_no: str, amount: int, total: int, **extra):
    return await mall.app.post("/v3/refund/domestic/refunds", {
        "sub_mchid": store, "transaction_id": transaction_id, "out_refund_no": out_refund_no,
        "amount": {"refund": amount, "total": total, "currency": "CNY"}, **extra})


async def split_state(mall, store: str, out_order_no: str) -> str | None:
    async with mall.pool.acquire() as conn:
        return await conn.fetchval("SELECT state FROM split_orders WHERE sub_mchid = $1 AND out_order_no = $2",
                                   store, out_order_no)


async def refund_state(mall, store: str, out_refund_no: str) -> str | None:
    async with mall.pool.acquire() as conn:
        return await conn.fetchval("SELECT state FROM refunds WHERE sub_mchid = $1 AND out_refund_no = $2",
                                   store, out_refund_no)


async def outbox_drained(mall) -> bool:
    async with mall.pool.acquire() as conn:
        return await conn.fetchval("SELECT count(*) = 0 FROM outbox WHERE state = 'pending'")


async def outbox_rows(mall, event_type: str, ref: str) -> int:
    async with mall.pool.acquire() as conn:
        return await conn.fetchval("SELECT count(*) FROM outbox WHERE event_type = $1 AND ref = $2", event_type, ref)


async def channel_funds(mall, store: str) -> dict:
    async with mall.session.get(f"{mall.emulator_url}/sandbox/merchants/{store}/funds") as resp:
        assert resp.status == 200
        return await resp.json()


async def test_a_finished_split_is_announced_once_with_what_moved(make_mall):
    mall = await make_mall()
    store, mall_mchid = mall.stores[0], mall.settings.sp_mchid
    await add_brand(mall, store)
    transaction_id = await paid_and_split(mall, store, "NSPLIT-1", 10_000, "NS-1", [(mall_mchid, 700), (BRAND_HQ, 1200)])

    async def both():
        found = notifications_of(mall, "PROFITSHARING.SUCCESS")
        return found if len(found) >= 2 else None

    events = await wait_until(both, what="PROFITSHARING.SUCCESS at the mall backend, one per receiver")
    queried = await mall.app.get(f"/v3/profitsharing/orders/NS-1?sub_mchid={store}&transaction_id={transaction_id}")
    for event in events:  # WeChat's profit-sharing notification resource: one receiver each
        assert event["resource_type"] == "encrypt-resource"
        resource = event["resource"]
        assert (resource["sp_mchid"], resource["sub_mchid"], resource["transaction_id"], resource["out_order_no"],
                resource["order_id"]) == (mall_mchid, store, transaction_id, "NS-1", queried.json["order_id"])
        assert resource["success_time"]
    assert sorted((e["resource"]["receiver"]["type"], e["resource"]["receiver"]["account"],
                   e["resource"]["receiver"]["amount"]) for e in events) == sorted([
        ("MERCHANT_ID", mall_mchid, 700), ("MERCHANT_ID", BRAND_HQ, 1200)])
    books = await balances(mall.pool, mall_mchid)
    assert (books["mall:commission"], books[f"receiver:{BRAND_HQ}"]) == (700, 1200)
    assert books[f"tenant:{store}:frozen"] == 10_000 - 60 - 1900

    # The channel's own notices do not make the backend hear twice.
    await wait_until(lambda: outbox_drained(mall), what="outbox drained")
    await asyncio.sleep(0.2)
    assert len(notifications_of(mall, "PROFITSHARING.SUCCESS")) == 2
    assert await outbox_rows(mall, "PROFITSHARING.SUCCESS", f"{store}/NS-1/MERCHANT_ID/{BRAND_HQ}") == 1

    # A refused split is not announced and moves nothing.
    refused = await split(mall, store, transaction_id, "NS-2", [(BRAND_HQ, 1101)])
    assert refused.status == 400 and refused.json["detail"]["reason"] == "ratio_exceeded"
    assert await split_state(mall, store, "NS-2") is None
    assert await balances(mall.pool, mall_mchid) == books


async def test_a_split_that_fails_at_the_channel_is_announced_as_closed(make_mall):
    mall = await make_mall(emulator={"split_failure_rate": 1.0})
    store, mall_mchid = mall.stores[1], mall.settings.sp_mchid
    transaction_id = await paid_and_split(mall, store, "NSPLIT-2", 10_000, "NF-1", [(mall_mchid, 900)])
    queried = await wait_until(lambda: _finished_split(mall, store, transaction_id, "NF-1"), what="split finished")
    assert [(r["result"], r["fail_reason"]) for r in queried["receivers"]] == [("CLOSED", "ACCOUNT_ABNORMAL")]
    [event] = await wait_until(lambda: notifications_of(mall, "PROFITSHARING.CLOSED"), what="the backend told")
    assert (event["resource"]["out_order_no"], event["resource"]["receiver"]["amount"],
            event["resource"]["mall_info"]) == ("NF-1", 900, {"fail_reason": "ACCOUNT_ABNORMAL"})
    assert notifications_of(mall, "PROFITSHARING.SUCCESS") == []
    books = await balances(mall.pool, mall_mchid)
    assert books["mall:commission"] == 0 and books[f"tenant:{store}:frozen"] == 10_000 - 60
    # The failed split's amount is splittable again.
    left = await mall.app.get(f"/v3/profitsharing/transactions/{transaction_id}/amounts")
    assert (left.json["unsplit_amount"], left.json["mall_info"]["splittable_amount"]) == (10_000 - 60, 3000)


async def _finished_split(mall, store, transaction_id, out_order_no):
    reply = await mall.app.get(f"/v3/profitsharing/orders/{out_order_no}?sub_mchid={store}"
                               f"&transaction_id={transaction_id}")
    assert reply.status == 200, reply.json
    return reply.json if reply.json["state"] == "FINISHED" else None


async def test_a_successful_refund_is_announced_with_its_amounts(make_mall):
    mall = await make_mall()
    store, mall_mchid = mall.stores[0], mall.settings.sp_mchid
    transaction_id = await paid_and_split(mall, store, "NREF-1", 8_000, "NR-S1", [(mall_mchid, 800)])
    await wait_until(lambda: _is(split_state(mall, store, "NR-S1"), "FINISHED"), what="split")

    # One refund names its own notify_url, the other relies on the order's.
    first = await refund(mall, store, transaction_id, "NR-1", 3_000, 8_000, notify_url=mall.notify_url)
    assert first.status == 200, first.json
    await wait_until(lambda: _is(refund_state(mall, store, "NR-1"), "SUCCESS"), what="refund NR-1")
    second = await refund(mall, store, transaction_id, "NR-2", 5_000, 8_000)
    assert second.status == 200, second.json

    events = await wait_until(lambda: len(notifications_of(mall, "REFUND.SUCCESS")) == 2
                              and notifications_of(mall, "REFUND.SUCCESS"), what="two REFUND.SUCCESS")
    by_no = {e["resource"]["out_refund_no"]: e for e in events}
    assert set(by_no) == {"NR-1", "NR-2"}
    for out_refund_no, amount in (("NR-1", 3_000), ("NR-2", 5_000)):
        event = by_no[out_refund_no]
        assert event["summary"] == "退款成功" and event["resource"]["refund_status"] == "SUCCESS"
        resource = event["resource"]
        assert (resource["sub_mchid"], resource["transaction_id"], resource["out_trade_no"]) == (
            store, transaction_id, "NREF-1")
        assert resource["amount"] == {"total": 8_000, "refund": amount, "payer_total": 8_000,
                                      "payer_refund": amount}
        assert resource["success_time"] and resource["refund_id"]
        assert await transfers_of(mall.pool, "refund", f"{store}/{out_refund_no}") == 1
    books = await balances(mall.pool, mall_mchid)
    assert books["payer"] == 0 and books["mall:commission"] == 0 and books["channel:fees"] == 0
    assert books[f"tenant:{store}:frozen"] == 0 and books[f"tenant:{store}:available"] == 0


async def test_an_abnormal_refund_is_announced_and_its_money_held_at_the_channel(make_mall):
    mall = await make_mall(emulator={"refund_abnormal_rate": 1.0})
    store, mall_mchid = mall.stores[2], mall.settings.sp_mchid
    transaction_id = await paid_and_split(mall, store, "NABN-1", 10_000, "NA-S1", [(mall_mchid, 500)])
    await wait_until(lambda: _is(split_state(mall, store, "NA-S1"), "FINISHED"), what="split")
    before = await order_funds_row(mall.pool, transaction_id)
    assert (before["refunded_fen"], before["frozen_fen"]) == (0, 10_000 - 60 - 500)

    # 90.00 of 100.00: the mall returns its share (450) first, then the channel takes the
    # money but cannot pay the shopper: ABNORMAL, to be sent on by hand.
    created = await refund(mall, store, transaction_id, "NA-1", 9_000, 10_000)
    assert created.status == 200, created.json
    [event] = await wait_until(lambda: notifications_of(mall, "REFUND.ABNORMAL"), what="REFUND.ABNORMAL")
    assert event["summary"] == "退款异常"
    resource = event["resource"]
    assert (resource["out_refund_no"], resource["refund_status"]) == ("NA-1", "ABNORMAL")
    assert resource["amount"]["refund"] == 9_000 and resource["transaction_id"] == transaction_id
    assert notifications_of(mall, "REFUND.SUCCESS") == []
    queried = await mall.app.get(f"/v3/refund/domestic/refunds/NA-1?sub_mchid={store}")
    assert queried.json["status"] == "ABNORMAL"

    books = await balances(mall.pool, mall_mchid)
    assert books["payer"] == -10_000, "the shopper got nothing back yet"
    assert books["channel:refunds_held"] == 9_000, "the money waits at the channel"
    assert books["mall:commission"] == 50, "the split return made before the refund stays made"
    after = await order_funds_row(mall.pool, transaction_id)
    assert after["refunded_fen"] == 9_000, "the order cannot be refunded twice for the same money"
    again = await refund(mall, store, transaction_id, "NA-2", 9_000, 10_000)
    assert again.status == 400 and again.json["detail"]["reason"] == "amount_exceeds_refundable"
    assert await mall.invariants() == []


async def test_after_an_abnormal_refund_the_ledger_still_matches_the_channel(make_mall):
    """The channel keeps an ABNORMAL refund's money out of the store (WeChat leaves it to
    be handled by hand, e.g. 异常退款 to another card); the books must say the same."""
    mall = await make_mall(emulator={"refund_abnormal_rate": 1.0})
    store = mall.stores[2]
    transaction_id = await pay_order(mall, store, "NABN-2", 10_000)
    created = await refund(mall, store, transaction_id, "NA-3", 4_000, 10_000)
    assert created.status == 200, created.json
    await wait_until(lambda: _is(refund_state(mall, store, "NA-3"), "ABNORMAL"), what="refund ABNORMAL")
    at_channel = await channel_funds(mall, store)
    books = await balances(mall.pool, mall.settings.sp_mchid)
    assert at_channel["frozen_fen"] == 10_000 - 60 - (4_000 - 24), "the channel took the refund's money"
    assert books[f"tenant:{store}:frozen"] == at_channel["frozen_fen"], (
        "the ledger says the store still holds money the channel no longer has")


async def test_duplicated_refund_notifications_refund_once(make_mall, aiohttp_server):
    relay = NotificationRelay()
    relay_server = await aiohttp_server(relay.app())
    mall = await build_mall(make_mall, emulator={"notify_duplicate_count": 3},
                            public_url=str(relay_server.make_url("")).rstrip("/"))
    relay.target_url = mall.gateway_url
    store, mall_mchid = mall.stores[1], mall.settings.sp_mchid
    transaction_id = await paid_and_split(mall, store, "NDUP-1", 10_000, "ND-S1", [(mall_mchid, 1_000)])
    await wait_until(lambda: _is(split_state(mall, store, "ND-S1"), "FINISHED"), what="split")

    created = await refund(mall, store, transaction_id, "ND-1", 5_000, 10_000)
    assert created.status == 200, created.json

    def refund_notices():
        return [h for h, body, status in relay.received if b"REFUND.SUCCESS" in _event_type(body)]

    await wait_until(lambda: len(refund_notices()) == 4, what="REFUND.SUCCESS sent four times to the gateway")
    await wait_until(lambda: outbox_drained(mall), what="outbox drained")
    await asyncio.sleep(0.2)  # room for a wrong second effect to show up
    assert all(status == 204 for _, body, status in relay.received if b"REFUND.SUCCESS" in _event_type(body))

    assert await refund_state(mall, store, "ND-1") == "SUCCESS"
    assert await transfers_of(mall.pool, "refund", f"{store}/ND-1") == 1
    async with mall.pool.acquire() as conn:
        returns = await conn.fetchval("SELECT count(*) FROM transfers WHERE kind = 'split_return'")
    assert returns == 1
    books = await balances(mall.pool, mall_mchid)
    assert books["payer"] == -5_000
    assert books["mall:commission"] == 500  # half the refund, half the split back
    assert books["channel:fees"] == 30
    assert books[f"tenant:{store}:frozen"] == 10_000 - 60 - 1_000 - (5_000 - 30 - 0)
    events = [e for e in notifications_of(mall, "REFUND.SUCCESS") if e["resource"]["out_refund_no"] == "ND-1"]
    assert len(events) == 1


def _event_type(body: bytes) -> bytes:
    # The envelope's event_type is plain JSON; the resource is encrypted.
    import json
    return json.loads(body)["event_type"].encode()


async def _is(awaitable, wanted) -> bool:
    return (await awaitable) == wanted


async def test_a_split_the_channel_refuses_answers_the_whole_split_order_and_tells_the_backend(make_mall):
    """The channel lowered the store's cap after the gateway last asked: it refuses the
    split outright. The query answers the split order as WeChat does (FINISHED, each
    receiver CLOSED with the reason, an order_id), and the backend hears of it."""
    mall = await make_mall()
    store, mall_mchid = mall.stores[2], mall.settings.sp_mchid
    transaction_id = await pay_order(mall, store, "NSPLIT-3", 10_000)
    first = await split(mall, store, transaction_id, "NR-1", [(mall_mchid, 500)])
    assert first.status == 200 and first.json["order_id"], first.json
    async with mall.session.post(mall.emulator_url + "/sandbox/merchant-configs",
                                 json={"sub_mchid": store, "max_ratio": 1000}) as resp:
        assert resp.status == 200
    refused = await split(mall, store, transaction_id, "NR-2", [(mall_mchid, 1000)])
    assert refused.status == 400 and refused.json["detail"] == {"reason": "channel_refused", "channel_code": "RULE_LIMIT"}
    queried = await mall.app.get(f"/v3/profitsharing/orders/NR-2?sub_mchid={store}&transaction_id={transaction_id}")
    assert queried.status == 200, queried.json
    body = queried.json
    assert (body["state"], body["out_order_no"], body["transaction_id"], body["sub_mchid"]) == (
        "FINISHED", "NR-2", transaction_id, store)
    assert len(body["order_id"]) == 28 and body["order_id"].isdigit()
    assert [(r["account"], r["amount"], r["result"], r["fail_reason"]) for r in body["receivers"]] == [
        (mall_mchid, 1000, "CLOSED", "RULE_LIMIT")]
    [event] = await wait_until(lambda: notifications_of(mall, "PROFITSHARING.CLOSED"), what="the backend told")
    assert (event["resource"]["out_order_no"], event["resource"]["order_id"], event["resource"]["mall_info"]) == (
        "NR-2", body["order_id"], {"fail_reason": "RULE_LIMIT"})
    # The first split finishes at the channel on its own time; the refused one never moves money.
    async def first_split_booked():
        books = await balances(mall.pool, mall_mchid)
        return books if books.get("mall:commission") == 500 else None

    books = await wait_until(first_split_booked, what="the first split booked")
    assert books["mall:commission"] == 500 and books[f"tenant:{store}:frozen"] == 10_000 - 60 - 500
