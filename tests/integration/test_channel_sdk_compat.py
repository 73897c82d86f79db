"""Wire compatibility: the community `wechatpayv3` SDK, unchanged except for its gateway
URL, creates, queries and closes orders against the emulator and verifies every answer's
signature with its own code; it also opens the emulator's payment notification.

The SDK uses blocking `requests`, so it runs in a thread against a real loopback server.
"""

from __future__ import annotations

import asyncio
import json
import random
from datetime import datetime, timezone

import aiohttp
import pytest
from aiohttp import web
from wechatpayv3 import WeChatPay, WeChatPayType

from gateway import signing
from gateway.channel.client import WeChatPayChannel
from gateway.channel.transport import SignedTransport
from emulator import EmulatorConfig, create_emulator_app

SP_MCHID = "1900000100"
SUB_MCHID = "1900000201"


def sdk_client(credentials, base_url: str, notify_url: str) -> WeChatPay:
    channel = credentials[0]
    client = WeChatPay(
        wechatpay_type=WeChatPayType.MINIPROG,
        mchid=channel.sp_mchid,
        private_key=signing.private_key_pem(channel.merchant_private_key.reveal()).decode(),
        cert_serial_no=channel.merchant_serial_no,
        appid="wx8888888888888888",
        apiv3_key=channel.apiv3_key.reveal().decode(),
        notify_url=notify_url,
        partner_mode=True,
        public_key=signing.public_key_pem(channel.platform_public_key).decode(),
        public_key_id=channel.platform_public_key_id,
        timeout=(5, 5),
    )
    client._core._gate_way = base_url.rstrip("/")
    return client


async def test_wechatpayv3_sdk_talks_to_the_emulator(aiohttp_server, credentials):
    received: asyncio.Queue = asyncio.Queue()

    async def notify(request: web.Request) -> web.Response:
        await received.put((dict(request.headers), await request.read()))
        return web.Response(status=204)

    receiver_app = web.Application()
    receiver_app.router.add_post("/notify", notify)
    receiver = await aiohttp_server(receiver_app)
    config = EmulatorConfig(credentials=credentials[1], notify_delay_ms=0, rng=random.Random(3))
    emulator = await aiohttp_server(create_emulator_app(config))
    client = sdk_client(credentials, str(emulator.make_url("")), str(receiver.make_url("/notify")))

    def pay(out_trade_no: str):
        return client.pay(
            description="商场A店-咖啡", out_trade_no=out_trade_no, amount={"total": 1800, "currency": "CNY"},
            payer={"sp_openid": "o-sp-openid"}, sub_mchid=SUB_MCHID, settle_info={"profit_sharing": True},
        )

    # A failed signature check raises inside the SDK ("failed to verify the signature").
    code, message = await asyncio.to_thread(pay, "SDK000000001")
    assert code == 200, message
    prepay_id = json.loads(message)["prepay_id"]
    assert await asyncio.to_thread(pay, "SDK000000001") == (200, message)  # same order, same prepay_id
    assert prepay_id.startswith("wx")

    code, message = await asyncio.to_thread(client.query, out_trade_no="SDK000000001", sub_mchid=SUB_MCHID)
    assert code == 200
    order = json.loads(message)
    assert (order["trade_state"], order["amount"]["total"], order["sub_mchid"]) == ("NOTPAY", 1800, SUB_MCHID)

    code, message = await asyncio.to_thread(pay, "SDK000000002")
    assert code == 200
    code, _ = await asyncio.to_thread(client.close, out_trade_no="SDK000000002", sub_mchid=SUB_MCHID)
    assert code == 204

    async with aiohttp.ClientSession() as session:
        async with session.post(emulator.make_url("/sandbox/transactions/pay"),
                                json={"sub_mchid": SUB_MCHID, "out_trade_no": "SDK000000001"}) as resp:
            assert resp.status == 200
    headers, body = await asyncio.wait_for(received.get(), 5)
    event = client.callback(headers, body)  # the SDK's own verify + decrypt
    assert event is not None, "the SDK rejected the emulator's notification"
    assert event["event_type"] == "TRANSACTION.SUCCESS"
    assert (event["resource"]["out_trade_no"], event["resource"]["trade_state"]) == ("SDK000000001", "SUCCESS")

    code, message = await asyncio.to_thread(
        client.query, transaction_id=event["resource"]["transaction_id"], sub_mchid=SUB_MCHID
    )
    assert code == 200 and json.loads(message)["trade_state"] == "SUCCESS"


async def test_sdk_with_the_wrong_platform_key_refuses_emulator_answers(aiohttp_server, credentials):
    emulator = await aiohttp_server(create_emulator_app(EmulatorConfig(credentials=credentials[1])))
    client = sdk_client(credentials, str(emulator.make_url("")), "https://mall.example/notify")
    client._core._public_key = signing.generate_private_key().public_key()
    with pytest.raises(Exception, match="failed to verify the signature"):
        await asyncio.to_thread(
            client.pay, description="x", out_trade_no="SDK000000009", amount={"total": 1},
            payer={"sp_openid": "o-sp-openid"}, sub_mchid=SUB_MCHID,
        )


async def test_pay_params_sign_like_the_sdk(credentials):
    channel = WeChatPayChannel(SignedTransport(credentials[0], "http://127.0.0.1:9", session=None, timeout_s=1.0,
                                               clock=lambda: datetime.now(timezone.utc)))
    params = channel.jsapi_pay_params("wx8888888888888888", "wx201410272009395522657a690389285100")
    assert params["package"] == "prepay_id=wx201410272009395522657a690389285100"
    assert params["signType"] == "RSA" and params["appId"] == "wx8888888888888888"
    client = sdk_client(credentials, "http://127.0.0.1:9", "https://mall.example/notify")
    # RSA-PKCS1v15 is deterministic: the SDK's paySign over the same fields is byte-identical.
    fields = [params["appId"], params["timeStamp"], params["nonceStr"], params["package"]]
    assert client.sign(fields) == params["paySign"]


async def _pay_in_sandbox(emulator, out_trade_no: str) -> str:
    async with aiohttp.ClientSession() as session:
        async with session.post(emulator.make_url("/sandbox/transactions/pay"),
                                json={"sub_mchid": SUB_MCHID, "out_trade_no": out_trade_no}) as resp:
            assert resp.status == 200
            return (await resp.json())["transaction_id"]


async def test_sdk_profit_sharing_calls_against_the_emulator(aiohttp_server, credentials):
    """profitsharing_add_receiver / _order / _order_query / _amount_query / _return /
    _return_query / _unfreeze / _config_query, each verified by the SDK's own signature check."""
    config = EmulatorConfig(credentials=credentials[1], split_after_payment_s=0, split_finish_delay_ms=0,
                            rng=random.Random(4))
    emulator = await aiohttp_server(create_emulator_app(config))
    client = sdk_client(credentials, str(emulator.make_url("")), "http://127.0.0.1:9/notify")

    def call(method, **kwargs):
        return asyncio.to_thread(getattr(client, method), **kwargs)

    code, message = await call("pay", description="A店-大衣", out_trade_no="SDKPS0000001",
                               amount={"total": 20_000, "currency": "CNY"}, payer={"sp_openid": "o-sp-openid"},
                               sub_mchid=SUB_MCHID, settle_info={"profit_sharing": True})
    assert code == 200, message
    transaction_id = await _pay_in_sandbox(emulator, "SDKPS0000001")

    # The SDK encrypts `name` with the platform public key and sets Wechatpay-Serial itself.
    code, message = await call("profitsharing_add_receiver", account_type="MERCHANT_ID", account="1900000109",
                               relation_type="HEADQUARTER", name="品牌总部有限公司", sub_mchid=SUB_MCHID)
    assert (code, json.loads(message)["account"]) == (200, "1900000109"), message
    code, message = await call("profitsharing_config_query", sub_mchid=SUB_MCHID)
    assert (code, json.loads(message)) == (200, {"sub_mchid": SUB_MCHID, "max_ratio": 3000})

    receivers = [{"type": "MERCHANT_ID", "account": "1900000109", "amount": 5_000, "description": "品牌分成"}]
    code, message = await call("profitsharing_order", transaction_id=transaction_id, out_order_no="SDKSPLIT0001",
                               receivers=receivers, unfreeze_unsplit=False, sub_mchid=SUB_MCHID)
    assert code == 200, message
    split = json.loads(message)
    assert (split["state"], split["receivers"][0]["result"]) == ("PROCESSING", "PENDING")

    for _ in range(100):  # the split finishes on the emulator's own schedule
        code, message = await call("profitsharing_order_query", transaction_id=transaction_id,
                                   out_order_no="SDKSPLIT0001", sub_mchid=SUB_MCHID)
        if json.loads(message)["state"] == "FINISHED":
            break
        await asyncio.sleep(0.01)
    assert (code, json.loads(message)["receivers"][0]["result"]) == (200, "SUCCESS")

    code, message = await call("profitsharing_amount_query", transaction_id=transaction_id)
    assert (code, json.loads(message)["unsplit_amount"]) == (200, 20_000 - 120 - 5_000)

    # The SDK builds this query as `...?&out_order_no=...&sub_mchid=...`: an empty field first.
    code, message = await call("profitsharing_return", out_return_no="SDKRETURN001", return_mchid="1900000109",
                               amount=2_000, description="用户退款", out_order_no="SDKSPLIT0001", sub_mchid=SUB_MCHID)
    assert (code, json.loads(message)["result"]) == (200, "SUCCESS"), message
    code, message = await call("profitsharing_return_query", out_order_no="SDKSPLIT0001",
                               out_return_no="SDKRETURN001", sub_mchid=SUB_MCHID)
    assert (code, json.loads(message)["amount"]) == (200, 2_000), message

    code, message = await call("profitsharing_unfreeze", transaction_id=transaction_id,
                               out_order_no="SDKUNFREEZE1", description="解冻全部剩余资金", sub_mchid=SUB_MCHID)
    unfreeze = json.loads(message)
    assert code == 200 and unfreeze["receivers"][0]["amount"] == 20_000 - 120 - 5_000
    assert unfreeze["receivers"][0]["account"] == SUB_MCHID


async def test_sdk_refund_and_query_refund_against_the_emulator(aiohttp_server, credentials):
    config = EmulatorConfig(credentials=credentials[1], refund_finish_delay_ms=0, rng=random.Random(6))
    emulator = await aiohttp_server(create_emulator_app(config))
    client = sdk_client(credentials, str(emulator.make_url("")), "http://127.0.0.1:9/notify")
    code, message = await asyncio.to_thread(
        client.pay, description="A店-咖啡", out_trade_no="SDKRF0000001", amount={"total": 1_800, "currency": "CNY"},
        payer={"sp_openid": "o-sp-openid"}, sub_mchid=SUB_MCHID,
    )
    assert code == 200, message
    transaction_id = await _pay_in_sandbox(emulator, "SDKRF0000001")

    code, message = await asyncio.to_thread(
        client.refund, out_refund_no="SDKREFUND001", amount={"refund": 800, "total": 1_800, "currency": "CNY"},
        transaction_id=transaction_id, reason="不想要了", sub_mchid=SUB_MCHID,
    )
    assert code == 200, message
    refund = json.loads(message)
    assert (refund["status"], refund["amount"]["refund"], refund["out_refund_no"]) == ("PROCESSING", 800,
                                                                                      "SDKREFUND001")
    for _ in range(100):
        code, message = await asyncio.to_thread(client.query_refund, out_refund_no="SDKREFUND001",
                                                sub_mchid=SUB_MCHID)
        if json.loads(message)["status"] == "SUCCESS":
            break
        await asyncio.sleep(0.01)
    assert (code, json.loads(message)["refund_id"]) == (200, refund["refund_id"])
    assert json.loads(message)["status"] == "SUCCESS"

    code, message = await asyncio.to_thread(
        client.refund, out_refund_no="SDKREFUND002", amount={"refund": 1_001, "total": 1_800, "currency": "CNY"},
        out_trade_no="SDKRF0000001", sub_mchid=SUB_MCHID,
    )
    assert (code, json.loads(message)["code"]) == (400, "INVALID_REQUEST")  # more than is left to refund
