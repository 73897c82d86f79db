"""The drop-in rule (SPEC 2): a mall backend written with the public `wechatpayv3` SDK in
partner mode works against the gateway by changing only the base URL and keys. The SDK
checks the signature of every 2xx answer and of every notification itself."""

from __future__ import annotations

import asyncio
import json

import pytest
from wechatpayv3 import WeChatPay, WeChatPayType

from gateway import signing
from gateway.api import SERVICES
from tests.support import test_key as shared_key
from tests.support import wait_until

OPENID = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"


def sdk_client(mall, *, gateway_public_key_pem: str | None = None) -> WeChatPay:
    creds = mall.app.creds
    identity = mall.gateway_app[SERVICES].identity
    client = WeChatPay(
        wechatpay_type=WeChatPayType.MINIPROG,
        mchid=creds.mchid,
        private_key=signing.private_key_pem(creds.private_key).decode(),
        cert_serial_no=creds.serial_no,
        appid=mall.settings.sp_appid,
        apiv3_key=creds.apiv3_key.decode(),
        notify_url=mall.notify_url,
        partner_mode=True,
        public_key=gateway_public_key_pem or identity.public_key_pem.decode(),
        public_key_id=identity.public_key_id,
    )
    client._core._gate_way = mall.gateway_url  # the only change a mall backend makes
    return client


async def test_a_mall_backend_on_the_wechatpayv3_sdk(mall):
    assert mall.app.creds.mchid == mall.settings.sp_mchid, "the mall's app signs as the mall"
    client = sdk_client(mall)
    store = mall.stores[0]

    code, text = await asyncio.to_thread(
        client.pay, description="Coffee beans 250g", out_trade_no="SDK-0001", amount={"total": 2599},
        payer={"sp_openid": OPENID}, sub_mchid=store)
    assert code == 200, text
    created = json.loads(text)
    assert created["prepay_id"]
    assert created["mall_info"]["pay_params"]["package"] == f"prepay_id={created['prepay_id']}"

    # Resubmitting through the SDK is idempotent.
    code, again = await asyncio.to_thread(
        client.pay, description="Coffee beans 250g", out_trade_no="SDK-0001", amount={"total": 2599},
        payer={"sp_openid": OPENID}, sub_mchid=store)
    assert (code, json.loads(again)) == (200, created)

    paid = await mall.shopper_pays(store, "SDK-0001")
    headers, body = await wait_until(lambda: mall.sink.received and mall.sink.received[0],
                                     what="TRANSACTION.SUCCESS at the backend")
    event = await asyncio.to_thread(client.callback, headers, body)
    assert event is not None, "the SDK refused the gateway's notification"
    assert event["event_type"] == "TRANSACTION.SUCCESS"
    resource = event["resource"]
    assert (resource["out_trade_no"], resource["sub_mchid"], resource["sp_mchid"]) == (
        "SDK-0001", store, mall.settings.sp_mchid)
    assert resource["transaction_id"] == paid["transaction_id"]
    assert resource["amount"]["total"] == 2599 and resource["trade_state"] == "SUCCESS"
    assert resource["payer"] == {"sp_openid": OPENID}

    # The SDK refuses a notification whose body was changed after signing.
    tampered = body.replace(b'"TRANSACTION.SUCCESS"', b'"TRANSACTION.SUCCESS" ')
    assert tampered != body
    assert await asyncio.to_thread(client.callback, headers, tampered) is None

    code, text = await asyncio.to_thread(client.query, out_trade_no="SDK-0001", sub_mchid=store)
    assert code == 200, text
    by_no = json.loads(text)
    assert (by_no["trade_state"], by_no["transaction_id"]) == ("SUCCESS", paid["transaction_id"])
    code, text = await asyncio.to_thread(client.query, transaction_id=paid["transaction_id"], sub_mchid=store)
    assert code == 200 and json.loads(text) == by_no

    code, text = await asyncio.to_thread(
        client.pay, description="Tea", out_trade_no="SDK-0002", amount={"total": 800, "currency": "CNY"},
        payer={"sp_openid": OPENID}, sub_mchid=store)
    assert code == 200, text
    code, text = await asyncio.to_thread(client.close, out_trade_no="SDK-0002", sub_mchid=store)
    assert code == 204, text
    code, text = await asyncio.to_thread(client.query, out_trade_no="SDK-0002", sub_mchid=store)
    assert code == 200 and json.loads(text)["trade_state"] == "CLOSED"

    # Errors arrive in WeChat's shape (the SDK passes them through without verifying).
    code, text = await asyncio.to_thread(client.query, out_trade_no="SDK-9999", sub_mchid=store)
    assert code == 404 and json.loads(text)["code"] == "ORDER_NOT_EXIST"
    code, text = await asyncio.to_thread(
        client.pay, description="Tea", out_trade_no="SDK-0002", amount={"total": 900},
        payer={"sp_openid": OPENID}, sub_mchid=store)
    assert code == 400 and json.loads(text)["detail"]["reason"] == "out_trade_no_reused"


async def test_the_sdk_really_checks_the_gateways_signature(mall):
    """Control for the test above: an SDK holding another public key refuses every answer,
    so the successes there are verified answers, not unchecked ones."""
    impostor_pem = signing.public_key_pem(shared_key(2).public_key()).decode()
    client = sdk_client(mall, gateway_public_key_pem=impostor_pem)
    with pytest.raises(Exception, match="failed to verify the signature"):
        await asyncio.to_thread(
            client.pay, description="Coffee", out_trade_no="SDK-0003", amount={"total": 100},
            payer={"sp_openid": OPENID}, sub_mchid=mall.stores[0])
    await mall.shopper_pays(mall.stores[0], "SDK-0003")
    headers, body = await wait_until(lambda: mall.sink.received and mall.sink.received[0],
                                     what="TRANSACTION.SUCCESS at the backend")
    assert await asyncio.to_thread(client.callback, headers, body) is None
    assert await asyncio.to_thread(sdk_client(mall).callback, headers, body) is not None
