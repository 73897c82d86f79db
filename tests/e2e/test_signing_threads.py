"""Signatures made on a thread pool (MALLPAY_SIGNING_THREADS) verify like those made on
the event loop: responses, errors, 204s and notifications."""

from __future__ import annotations

import threading

from gateway import signing
from tests.support import open_notification, order_body, wait_until


async def test_responses_and_notifications_signed_on_threads_verify(make_mall, monkeypatch):
    mall = await make_mall(signing_threads=2)
    signers = set()
    real_sign = signing.sign

    def recording_sign(key, message):
        signers.add(threading.current_thread().name)
        return real_sign(key, message)

    monkeypatch.setattr(signing, "sign", recording_sign)
    store = mall.stores[0]
    created = await mall.app.post("/v3/pay/partner/transactions/jsapi", order_body(mall, store, "THREAD-0001", 1200))
    assert created.status == 200, created.json        # SignedClient verified the signature
    await mall.shopper_pays(store, "THREAD-0001")
    await wait_until(lambda: _received(mall), what="the notification")
    headers, body = mall.sink.received[0]
    event = open_notification(headers, body, mall.gateway_public_key, mall.app.creds.apiv3_key)
    assert event["resource"]["out_trade_no"] == "THREAD-0001"
    missing = await mall.app.get(f"/v3/pay/partner/transactions/out-trade-no/NOSUCH1"
                                 f"?sp_mchid={mall.settings.sp_mchid}&sub_mchid={store}")
    assert missing.status == 404                       # errors are signed on the threads too
    assert any(name.startswith("mallpay-sign") for name in signers)


async def _received(mall) -> bool:
    return bool(mall.sink.received)
