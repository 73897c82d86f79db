"""Notifications both ways (SPEC 2.2, 3): the channel telling the gateway a shopper paid
(duplicated, dropped, tampered, lost) and the gateway telling the mall backend (refused for
a while, refused for good). Whatever happens on the wire, an order is paid exactly once."""

from __future__ import annotations

import asyncio
import json
import random
import secrets
from datetime import datetime, timedelta, timezone

from gateway import signing
from gateway.channel.credentials import ensure_local_credentials
from emulator.auth import sign_headers
from emulator.wire import format_time
from ledger.payments import channel_fee_fen
from tests.support import (
    NotificationRelay, balances, build_mall, open_notification, order_body, table_counts, wait_until,
)

CREATE = "/v3/pay/partner/transactions/jsapi"
FEE_RATE_BPS = 60  # the stores' contract default


async def create_order(mall, store: str, out_trade_no: str, total_fen: int) -> None:
    reply = await mall.app.post(CREATE, order_body(mall, store, out_trade_no, total_fen))
    assert reply.status == 200, reply.json


async def order_row(mall, store: str, out_trade_no: str):
    async with mall.pool.acquire() as conn:
        return await conn.fetchrow("SELECT * FROM orders WHERE sub_mchid = $1 AND out_trade_no = $2",
                                   store, out_trade_no)


async def is_paid(mall, store: str, out_trade_no: str) -> bool:
    row = await order_row(mall, store, out_trade_no)
    return row is not None and row["state"] == "SUCCESS"


async def assert_paid_once(mall, store: str, out_trade_no: str, total_fen: int, transaction_id: str) -> None:
    row = await order_row(mall, store, out_trade_no)
    assert (row["state"], row["transaction_id"], row["total_fen"]) == ("SUCCESS", transaction_id, total_fen)
    ref = f"{store}/{out_trade_no}"
    async with mall.pool.acquire() as conn:
        transfers = await conn.fetchval("SELECT count(*) FROM transfers WHERE kind = 'payment' AND ref = $1", ref)
        outbox = await conn.fetchval(
            "SELECT count(*) FROM outbox WHERE event_type = 'TRANSACTION.SUCCESS' AND ref = $1", ref)
        payer_fen = await conn.fetchval(
            "SELECT e.amount_fen FROM entries e JOIN transfers t USING (mall_id, transfer_id)"
            " WHERE t.kind = 'payment' AND t.ref = $1 AND e.account = 'payer'", ref)
    assert (transfers, outbox, payer_fen) == (1, 1, -total_fen)


def sink_events(mall) -> list[dict]:
    return [open_notification(headers, body, mall.gateway_public_key, mall.app.creds.apiv3_key)
            for headers, body in mall.sink.received]


async def channel_delivery(mall, out_trade_no: str) -> dict:
    """The channel's own delivery log for the order's payment notification."""
    async with mall.session.get(mall.emulator_url + "/sandbox/notifications",
                                params={"out_trade_no": out_trade_no}) as resp:
        assert resp.status == 200
        [record] = (await resp.json())["data"]
    return record


async def relayed_mall(make_mall, aiohttp_server, **options):
    """A mall whose channel notifications pass through a NotificationRelay on their way
    to the gateway, so a test sees each one exactly as it reached the gateway."""
    relay = NotificationRelay()
    relay_server = await aiohttp_server(relay.app())
    mall = await build_mall(make_mall, public_url=str(relay_server.make_url("")).rstrip("/"), **options)
    relay.target_url = mall.gateway_url
    return mall, relay


# -- (a) duplicates from the channel -------------------------------------------------------------------

async def test_duplicated_channel_notifications_pay_once(make_mall, aiohttp_server):
    mall, relay = await relayed_mall(make_mall, aiohttp_server, emulator={"notify_duplicate_count": 4})
    received = relay.received
    store, total = mall.stores[0], 2599
    await create_order(mall, store, "DUP-0001", total)
    paid = await mall.shopper_pays(store, "DUP-0001")

    async def all_five_sent():
        return len(received) >= 5 and (await channel_delivery(mall, "DUP-0001"))["duplicates_sent"] == 4

    await wait_until(all_five_sent, what="five channel notifications")
    await wait_until(lambda: mall.sink.received, what="the mall backend's notification")
    await asyncio.sleep(0.3)  # room for a wrong second delivery to show up

    assert len(received) == 5
    assert len({body for _, body, _ in received}) == 1, "one event, delivered five times"
    assert len({h["wechatpay-nonce"] for h, _, _ in received}) == 5
    assert len({h["wechatpay-signature"] for h, _, _ in received}) == 5
    assert [status for _, _, status in received] == [204] * 5, "every copy is acknowledged"
    record = await channel_delivery(mall, "DUP-0001")
    assert record["delivered"] and record["last_status"] == "204"

    await assert_paid_once(mall, store, "DUP-0001", total, paid["transaction_id"])
    events = sink_events(mall)
    assert len(events) == 1
    assert events[0]["event_type"] == "TRANSACTION.SUCCESS"
    assert events[0]["resource"]["transaction_id"] == paid["transaction_id"]
    fee = channel_fee_fen(total, FEE_RATE_BPS)
    books = await balances(mall.pool, mall.settings.sp_mchid)
    assert (books["payer"], books["channel:fees"], books[f"tenant:{store}:available"]) == (-total, fee, total - fee)


# -- (b) a channel that drops notifications ---------------------------------------------------------------

async def test_dropped_channel_notifications_are_retried_and_pay_once(make_mall):
    mall = await make_mall(emulator={"notify_failure_rate": 0.5, "notify_duplicate_count": 1,
                                     "rng": random.Random(7)})
    store = mall.stores[1]
    # With this seed some of the six notifications are dropped once or twice before they
    # get through (asserted below), none so often that the retry schedule gets slow.
    orders = [(f"DROP-{i:04d}", 1000 + i) for i in range(6)]
    paid = {}
    for out_trade_no, total in orders:  # one at a time, so the seeded draws repeat run after run
        await create_order(mall, store, out_trade_no, total)
        paid[out_trade_no] = (await mall.shopper_pays(store, out_trade_no))["transaction_id"]
        await wait_until(lambda: is_paid(mall, store, out_trade_no), what=f"{out_trade_no} paid")
    await wait_until(lambda: len(mall.sink.received) >= len(orders), what="the mall backend's notifications")

    attempts = {no: (await channel_delivery(mall, no))["attempts"] for no, _ in orders}
    assert sum(attempts.values()) > len(orders), f"no notification was dropped: {attempts}"
    for out_trade_no, total in orders:
        await assert_paid_once(mall, store, out_trade_no, total, paid[out_trade_no])
    notified = {e["resource"]["out_trade_no"]: e["resource"]["transaction_id"] for e in sink_events(mall)}
    assert notified == paid
    books = await balances(mall.pool, mall.settings.sp_mchid)
    assert books["payer"] == -sum(total for _, total in orders)


# -- (c) a mall backend that refuses notifications -----------------------------------------------------------

async def test_outbox_retries_until_the_backend_accepts(mall):
    assert mall.settings.notify_retry_schedule_s == (1, 1, 1)
    store = mall.stores[0]
    mall.sink.status = 500
    await create_order(mall, store, "RETRY-0001", 1200)
    paid = await mall.shopper_pays(store, "RETRY-0001")
    await wait_until(lambda: len(mall.sink.received) >= 2, what="two refused deliveries")
    mall.sink.status = 204
    row = await outbox_row(mall, "RETRY-0001")
    assert (row["state"], row["last_error"]) == ("pending", "http_500")

    await wait_until(lambda: outbox_state_is(mall, "RETRY-0001", "delivered"), what="delivery")
    row = await outbox_row(mall, "RETRY-0001")
    assert row["attempts"] == 3 and row["last_error"] is None
    events = sink_events(mall)
    assert len(events) == 3
    assert len({e["id"] for e in events}) == 1, "a retry is the same notification"
    assert events[-1]["resource"]["transaction_id"] == paid["transaction_id"]
    await assert_paid_once(mall, store, "RETRY-0001", 1200, paid["transaction_id"])
    await asyncio.sleep(0.2)
    assert len(mall.sink.received) == 3, "nothing is sent after the backend acknowledged"


async def test_outbox_gives_up_and_shows_the_dead_notification(make_mall):
    mall = await make_mall(notify_retry_schedule_s=(0, 0))
    store = mall.stores[2]
    mall.sink.status = 500
    await create_order(mall, store, "DEAD-0001", 900)
    paid = await mall.shopper_pays(store, "DEAD-0001")
    await wait_until(lambda: outbox_state_is(mall, "DEAD-0001", "dead"), what="the notification dead")
    await asyncio.sleep(0.2)
    assert len(mall.sink.received) == 3, "first attempt plus one per scheduled retry, then no more"

    view = await mall.admin.get("/v3/mall/notifications")
    assert view.status == 200, view.json
    assert view.json["counts"] == {"dead": 1}
    [dead] = view.json["dead"]
    assert dead["event_type"] == "TRANSACTION.SUCCESS"
    assert dead["ref"] == f"{store}/DEAD-0001"
    assert dead["client_mchid"] == mall.app.creds.mchid
    assert (dead["attempts"], dead["last_error"]) == (3, "http_500")
    forbidden = await mall.app.get("/v3/mall/notifications")
    assert forbidden.status == 403 and forbidden.json["code"] == "NO_AUTH"
    # The payment itself stands: a dead notification is not an unpaid order.
    await assert_paid_once(mall, store, "DEAD-0001", 900, paid["transaction_id"])


async def outbox_row(mall, out_trade_no: str):
    async with mall.pool.acquire() as conn:
        return await conn.fetchrow("SELECT * FROM outbox WHERE event_type = 'TRANSACTION.SUCCESS'"
                                   " AND ref LIKE '%/' || $1", out_trade_no)


async def outbox_state_is(mall, out_trade_no: str, state: str) -> bool:
    row = await outbox_row(mall, out_trade_no)
    return row is not None and row["state"] == state


# -- (d) a tampered channel notification ------------------------------------------------------------------------

async def test_tampered_channel_notification_is_rejected(make_mall, keys_dir):
    # The channel never delivers by itself here: the test hands the gateway the notification.
    mall = await make_mall(emulator={"notify_failure_rate": 1.0})
    store, total = mall.stores[0], 3000
    await create_order(mall, store, "TAMPER-0001", total)
    paid = await mall.shopper_pays(store, "TAMPER-0001")
    _, emulator_credentials = ensure_local_credentials(keys_dir, mall.settings.sp_mchid)
    apiv3_key = emulator_credentials.merchants[mall.settings.sp_mchid].apiv3_key.reveal()

    def notification(resource: dict, summary: str = "支付成功") -> bytes:
        nonce = secrets.token_hex(6)
        return json.dumps({
            "id": "EV-" + secrets.token_hex(10).upper(), "create_time": format_time(datetime.now(timezone.utc)),
            "event_type": "TRANSACTION.SUCCESS", "resource_type": "encrypt-resource", "summary": summary,
            "resource": {"algorithm": "AEAD_AES_256_GCM", "nonce": nonce, "associated_data": "transaction",
                         "original_type": "transaction",
                         "ciphertext": signing.aes_gcm_encrypt(apiv3_key, json.dumps(resource).encode(), nonce,
                                                               "transaction")},
        }, ensure_ascii=False).encode()

    # WeChat's TRANSACTION.SUCCESS resource for this payment (partner mode).
    genuine_resource = {
        "sp_appid": mall.settings.sp_appid, "sp_mchid": mall.settings.sp_mchid, "sub_mchid": store,
        "out_trade_no": "TAMPER-0001", "transaction_id": paid["transaction_id"], "trade_type": "JSAPI",
        "trade_state": "SUCCESS", "trade_state_desc": "支付成功", "bank_type": "OTHERS", "attach": "",
        "success_time": paid["success_time"], "payer": {"sp_openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"},
        "amount": {"total": total, "payer_total": total, "currency": "CNY", "payer_currency": "CNY"},
    }
    genuine = notification(genuine_resource)
    headers = {**sign_headers(emulator_credentials, genuine, datetime.now(timezone.utc)),
               "Content-Type": "application/json"}
    cheaper = notification({**genuine_resource, "amount": {**genuine_resource["amount"], "total": 1}})
    stale_headers = {**sign_headers(emulator_credentials, genuine,
                                    datetime.now(timezone.utc) - timedelta(minutes=10)),
                     "Content-Type": "application/json"}
    attempts = {
        "summary changed": (genuine.replace("支付成功".encode(), "支付失败".encode()), headers),
        "whitespace added": (genuine + b" ", headers),
        "resource replaced": (cheaper, headers),
        "another key id": (genuine, {**headers, "Wechatpay-Serial": "PUB_KEY_ID_0000000000000000"}),
        "stale timestamp": (genuine, stale_headers),
        "no signature": (genuine, {k: v for k, v in headers.items() if k != "Wechatpay-Signature"}),
    }
    before = await table_counts(mall.pool)
    for name, (body, sent_headers) in attempts.items():
        async with mall.session.post(mall.gateway_url + "/channel/wechatpay/notify", data=body,
                                     headers=sent_headers) as resp:
            assert resp.status == 401, name
    assert await table_counts(mall.pool) == before
    assert (await order_row(mall, store, "TAMPER-0001"))["state"] == "NOTPAY"
    await asyncio.sleep(0.1)
    assert mall.sink.received == []

    # The untouched notification with the same headers is accepted: the tampering was the fault.
    async with mall.session.post(mall.gateway_url + "/channel/wechatpay/notify", data=genuine,
                                 headers=headers) as resp:
        assert resp.status == 204
    await assert_paid_once(mall, store, "TAMPER-0001", total, paid["transaction_id"])
    books = await balances(mall.pool, mall.settings.sp_mchid)
    assert books["payer"] == -total


# -- (e) a notification that never arrives -------------------------------------------------------------------------

async def test_lost_notification_is_found_by_the_unpaid_order_check(make_mall, aiohttp_server):
    mall, relay = await relayed_mall(make_mall, aiohttp_server, emulator={"notify_failure_rate": 1.0},
                                     unpaid_order_query_after_s=0)
    received = relay.received
    store, total = mall.stores[1], 4500
    await create_order(mall, store, "LOST-0001", total)
    paid = await mall.shopper_pays(store, "LOST-0001")

    await wait_until(lambda: mall.sink.received, timeout_s=10, what="TRANSACTION.SUCCESS after the check")
    [event] = sink_events(mall)
    assert event["event_type"] == "TRANSACTION.SUCCESS"
    assert event["resource"]["out_trade_no"] == "LOST-0001"
    assert event["resource"]["transaction_id"] == paid["transaction_id"]
    assert event["resource"]["amount"]["total"] == total
    await assert_paid_once(mall, store, "LOST-0001", total, paid["transaction_id"])
    assert received == [], "the gateway learned of the payment by asking, not by being told"
    record = await channel_delivery(mall, "LOST-0001")
    assert not record["delivered"] and record["last_status"] == "injected_failure"
    books = await balances(mall.pool, mall.settings.sp_mchid)
    fee = channel_fee_fen(total, FEE_RATE_BPS)
    assert (books["payer"], books[f"tenant:{store}:available"]) == (-total, total - fee)
