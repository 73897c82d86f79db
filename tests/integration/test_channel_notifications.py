"""Payment notifications from the emulator, received by a small aiohttp app and opened by
the real WeChatPayChannel: delivery, retries, duplicates, and every way a forgery fails."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
from datetime import datetime, timedelta, timezone

import aiohttp
import pytest
from aiohttp import web

from gateway import signing
from gateway.channel import ChannelNotificationRejected, ChannelOrderRequest, ChannelTradeState
from gateway.channel.client import WeChatPayChannel
from gateway.channel.transport import SignedTransport
from gateway.wire import to_wechat_time
from emulator import EmulatorConfig, create_emulator_app

SP_MCHID = "1900000100"
SUB_MCHID = "1900000201"
WAIT_S = 5.0


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


class Receiver:
    """The gateway's notify endpoint, reduced to: answer with a scripted status, keep what came."""

    def __init__(self, statuses: list[int] | None = None):
        self.statuses = list(statuses or [])  # answered in order, then 204 forever
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.arrived = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append((dict(request.headers), await request.read()))
        self.arrived.set()
        return web.Response(status=self.statuses.pop(0) if self.statuses else 204)

    async def wait_for(self, count: int) -> None:
        async def enough():
            while len(self.received) < count:
                self.arrived.clear()
                await self.arrived.wait()
        await asyncio.wait_for(enough(), WAIT_S)


@pytest.fixture
def world(aiohttp_server, session, credentials):
    """Start a receiver and an emulator with the given knobs; returns helpers."""

    async def start(receiver: Receiver | None = None, **knobs):
        receiver = receiver or Receiver()
        receiver_app = web.Application()
        receiver_app.router.add_post("/channel/notify", receiver.handle)
        receiver_server = await aiohttp_server(receiver_app)
        knobs.setdefault("notify_delay_ms", 0)
        knobs.setdefault("retry_time_scale", 0.001)
        knobs.setdefault("rng", random.Random(7))
        config = EmulatorConfig(credentials=credentials[1], **knobs)
        emulator = await aiohttp_server(create_emulator_app(config))
        channel = WeChatPayChannel(SignedTransport(credentials[0], str(emulator.make_url("")), session, 5.0, utc_now))
        return World(receiver, emulator, channel, session, str(receiver_server.make_url("/channel/notify")))

    return start


@dataclasses.dataclass
class World:
    receiver: Receiver
    emulator: object
    channel: WeChatPayChannel
    session: aiohttp.ClientSession
    notify_url: str

    async def paid_order(self, out_trade_no: str = "MALL0000000001") -> dict:
        await self.channel.create_jsapi_order(ChannelOrderRequest(
            sp_appid="wx8888888888888888", sp_mchid=SP_MCHID, sub_mchid=SUB_MCHID, sub_appid="wxsub",
            description="Store A - noodles", out_trade_no=out_trade_no, total_fen=4500, currency="CNY",
            payer_sp_openid=None, payer_sub_openid="o-sub-openid", notify_url=self.notify_url,
            profit_sharing=False, time_expire=None, attach=None,
        ))
        return await self.pay(out_trade_no)

    async def pay(self, out_trade_no: str) -> dict:
        async with self.session.post(self.emulator.make_url("/sandbox/transactions/pay"),
                                     json={"sub_mchid": SUB_MCHID, "out_trade_no": out_trade_no}) as resp:
            return {"status": resp.status, **(await resp.json())}

    async def deliveries(self) -> list[dict]:
        async with self.session.get(self.emulator.make_url("/sandbox/notifications")) as resp:
            return (await resp.json())["data"]


async def test_payment_notification_arrives_verified_and_decrypted(world):
    w = await world()
    paid = await w.paid_order()
    await w.receiver.wait_for(1)
    headers, body = w.receiver.received[0]

    trade = w.channel.parse_payment_notification(headers, body)
    assert trade.state is ChannelTradeState.SUCCESS
    assert (trade.out_trade_no, trade.sub_mchid, trade.transaction_id) == ("MALL0000000001", SUB_MCHID,
                                                                           paid["transaction_id"])
    assert (trade.total_fen, trade.payer_total_fen, trade.payer_sub_openid) == (4500, 4500, "o-sub-openid")
    assert trade == await w.channel.query_by_out_trade_no(SUB_MCHID, "MALL0000000001")

    envelope = json.loads(body)
    assert envelope["event_type"] == "TRANSACTION.SUCCESS" and envelope["summary"] == "支付成功"
    assert envelope["resource_type"] == "encrypt-resource"
    assert {k: envelope["resource"][k] for k in ("algorithm", "associated_data", "original_type")} == {
        "algorithm": "AEAD_AES_256_GCM", "associated_data": "transaction", "original_type": "transaction"}
    assert "o-sub-openid" not in body.decode()  # the payer is only inside the ciphertext
    assert headers["Content-Type"] == "application/json; charset=utf-8"
    assert (await w.deliveries())[0] | {"event_id": None} == {
        "event_id": None, "event_type": "TRANSACTION.SUCCESS", "sub_mchid": SUB_MCHID,
        "out_trade_no": "MALL0000000001", "notify_url": w.notify_url, "attempts": 1, "delivered": True,
        "gave_up": False, "duplicates_sent": 0, "last_status": "204",
    }


async def test_pay_trigger_is_harmless_to_retry_and_refuses_closed_or_unknown(world):
    w = await world()
    first = await w.paid_order()
    again = await w.pay("MALL0000000001")
    assert (again["status"], again["transaction_id"], again["already_paid"]) == (200, first["transaction_id"], True)
    await w.receiver.wait_for(1)
    await asyncio.sleep(0.05)
    assert len(w.receiver.received) == 1 and len(await w.deliveries()) == 1

    assert (await w.pay("NEVER0000001"))["status"] == 404
    await w.channel.create_jsapi_order(_request_of(w, "MALL0000000003"))
    await w.channel.close_order(SUB_MCHID, "MALL0000000003")
    closed = await w.pay("MALL0000000003")
    assert (closed["status"], closed["code"]) == (400, "ORDER_CLOSED")

    expired_at = to_wechat_time(utc_now() - timedelta(seconds=1))
    await w.channel.create_jsapi_order(dataclasses.replace(_request_of(w, "MALL0000000004"), time_expire=expired_at))
    expired = await w.pay("MALL0000000004")
    assert (expired["status"], expired["code"]) == (400, "ORDER_CLOSED")
    unpaid = await w.channel.query_by_out_trade_no(SUB_MCHID, "MALL0000000004")
    assert unpaid.state is ChannelTradeState.NOTPAY and len(w.receiver.received) == 1


def _request_of(w: World, out_trade_no: str) -> ChannelOrderRequest:
    return ChannelOrderRequest(
        sp_appid="wx8888888888888888", sp_mchid=SP_MCHID, sub_mchid=SUB_MCHID, sub_appid=None,
        description="Store A", out_trade_no=out_trade_no, total_fen=100, currency="CNY",
        payer_sp_openid="o-sp", payer_sub_openid=None, notify_url=w.notify_url, profit_sharing=False,
        time_expire=None, attach=None,
    )


async def test_forged_stale_or_foreign_notifications_are_rejected(world, credentials):
    w = await world()
    await w.paid_order()
    await w.receiver.wait_for(1)
    headers, body = w.receiver.received[0]
    channel_credentials = credentials[0]

    tampered = body.replace(b'"summary":"', b'"summary":"x', 1)
    assert tampered != body
    rejected = {
        "tampered body": (w.channel, headers, tampered),
        "signature missing": (w.channel, {k: v for k, v in headers.items() if k != "Wechatpay-Signature"}, body),
        "other key id": (w.channel, {**headers, "Wechatpay-Serial": "PUB_KEY_ID_OTHER"}, body),
        # Signed timestamps are whole seconds and the notification is some time old by now,
        # so step well past the 300 s window: 301 s "too new" passed on a slow machine.
        "too old": (_channel(w, channel_credentials, clock=lambda: utc_now() + timedelta(seconds=330)),
                    headers, body),
        "too new": (_channel(w, channel_credentials, clock=lambda: utc_now() - timedelta(seconds=330)),
                    headers, body),
        "other platform key": (_channel(w, dataclasses.replace(
            channel_credentials, platform_public_key=signing.generate_private_key().public_key())), headers, body),
        "other apiv3 key": (_channel(w, dataclasses.replace(
            channel_credentials, apiv3_key=signing.Secret(b"k" * 32))), headers, body),
        "other mall": (_channel(w, dataclasses.replace(channel_credentials, sp_mchid="1900000999")), headers, body),
    }
    for name, (channel, hdrs, raw) in rejected.items():
        with pytest.raises(ChannelNotificationRejected):
            channel.parse_payment_notification(hdrs, raw)
            pytest.fail(f"{name} was accepted")

    # A correctly signed envelope that is not a payment is rejected too.
    envelope = json.loads(body)
    envelope["event_type"] = "REFUND.SUCCESS"
    other_body = json.dumps(envelope).encode()
    resigned = _sign_like_emulator(credentials[1], other_body)
    with pytest.raises(ChannelNotificationRejected):
        w.channel.parse_payment_notification(resigned, other_body)
    # ... while the same re-signing of the real body is accepted (the check above is not vacuous).
    assert w.channel.parse_payment_notification(_sign_like_emulator(credentials[1], body), body)


def _channel(w: World, credentials, clock=utc_now) -> WeChatPayChannel:
    return WeChatPayChannel(SignedTransport(credentials, str(w.emulator.make_url("")), w.session, 5.0, clock))


def _sign_like_emulator(emulator_credentials, body: bytes) -> dict[str, str]:
    from emulator.auth import sign_headers

    return sign_headers(emulator_credentials, body, utc_now())


async def test_failure_rate_knob_forces_retries_that_eventually_deliver(world):
    # Seed 11 drops the first two attempts at this rate (then 15 ms and 15 ms of scaled waits).
    w = await world(notify_failure_rate=0.6, rng=random.Random(11))
    await w.paid_order()
    await w.receiver.wait_for(1)
    delivery = (await w.deliveries())[0]
    assert delivery["delivered"] and delivery["attempts"] == 3
    assert len(w.receiver.received) == 1  # dropped attempts were never sent
    w.channel.parse_payment_notification(*w.receiver.received[0])


async def test_receiver_errors_are_retried_on_schedule_until_answered(world):
    w = await world(Receiver(statuses=[500, 503, 404]))
    await w.paid_order()
    await w.receiver.wait_for(4)
    bodies = {body for _, body in w.receiver.received}
    assert len(bodies) == 1  # the same event each time
    delivery = (await w.deliveries())[0]
    assert (delivery["attempts"], delivery["delivered"], delivery["last_status"]) == (4, True, "204")


async def test_undeliverable_notification_is_given_up_after_wechats_schedule(world):
    w = await world(Receiver(statuses=[500] * 100), retry_time_scale=0.00001)
    await w.paid_order()
    await w.receiver.wait_for(16)
    for _ in range(50):
        delivery = (await w.deliveries())[0]
        if delivery["gave_up"]:
            break
        await asyncio.sleep(0.02)
    assert (delivery["attempts"], delivery["delivered"], delivery["gave_up"]) == (16, False, True)
    await asyncio.sleep(0.05)
    assert len(w.receiver.received) == 16


async def test_duplicate_knob_delivers_n_plus_one_times_each_freshly_signed(world):
    w = await world(notify_duplicate_count=2)
    await w.paid_order()
    await w.receiver.wait_for(3)
    await asyncio.sleep(0.05)
    assert len(w.receiver.received) == 3
    signatures = {headers["Wechatpay-Signature"] for headers, _ in w.receiver.received}
    nonces = {headers["Wechatpay-Nonce"] for headers, _ in w.receiver.received}
    assert len(signatures) == 3 and len(nonces) == 3
    trades = [w.channel.parse_payment_notification(headers, body) for headers, body in w.receiver.received]
    assert len({(t.transaction_id, t.out_trade_no) for t in trades}) == 1
    assert len({json.loads(body)["id"] for _, body in w.receiver.received}) == 1  # one event, three sends
    assert (await w.deliveries())[0]["duplicates_sent"] == 2
