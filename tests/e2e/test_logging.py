"""Logs (SPEC 8): structlog JSON lines with a request id; secrets, keys, signatures and
openids never appear — checked on the bytes a whole payment day writes."""

from __future__ import annotations

import json

import pytest

from gateway import signing
from gateway.api import SERVICES
from gateway.channel.credentials import ensure_local_credentials
from tests.support import capture_log, open_notification, order_body, wait_until

CREATE = "/v3/pay/partner/transactions/jsapi"
OPENID = "oLogProbe_Sh0pperOpenid_7xQ2"


@pytest.fixture
def captured_log():
    with capture_log("debug") as stream:
        yield stream


def pem_body_lines(pem: bytes) -> list[str]:
    return [line for line in pem.decode().splitlines() if line and not line.startswith("-----")]


async def test_a_payment_day_logs_no_secrets(captured_log, mall, keys_dir):
    store = mall.stores[0]
    client = mall.app
    sent_signatures: list[str] = []
    received_signatures: list[str] = []
    request_ids: list[str] = []

    async def call(method: str, target: str, payload=None, *, ok=(200, 204)):
        body = b"" if payload is None else json.dumps(payload).encode()
        header = client.authorization(method, target, body)
        sent_signatures.append(signing.parse_authorization(header).signature)
        reply = await client.request(method, target, raw=body, authorization=header)
        assert reply.status in ok, reply.json
        received_signatures.append(reply.headers["Wechatpay-Signature"])
        request_ids.append(reply.headers["Request-ID"])
        return reply

    created = await call("POST", CREATE, order_body(mall, store, "LOG-0001", 1999, payer={"sp_openid": OPENID}))
    paid = await mall.shopper_pays(store, "LOG-0001")
    headers, body = await wait_until(lambda: mall.sink.received and mall.sink.received[0], what="notification")
    received_signatures.append(headers["Wechatpay-Signature"])
    event = open_notification(headers, body, mall.gateway_public_key, client.creds.apiv3_key)
    assert event["resource"]["payer"]["sp_openid"] == OPENID
    query = f"?sp_mchid={mall.settings.sp_mchid}&sub_mchid={store}"
    queried = await call("GET", f"/v3/pay/partner/transactions/out-trade-no/LOG-0001{query}")
    assert queried.json["payer"]["sp_openid"] == OPENID
    await call("GET", f"/v3/pay/partner/transactions/id/{paid['transaction_id']}{query}")
    # A refused request and a forged channel notification get logged too.
    forged = client.authorization("GET", "/v3/mall/tenants", b"").replace('signature="', 'signature="AAAA')
    sent_signatures.append(signing.parse_authorization(forged).signature)
    refused = await client.get("/v3/mall/tenants", authorization=forged)
    assert refused.status == 401
    request_ids.append(refused.headers["Request-ID"])
    signature_headers = {k: v for k, v in headers.items() if k.lower().startswith("wechatpay")}
    async with mall.session.post(mall.gateway_url + "/channel/wechatpay/notify", data=body + b" ",
                                 headers=signature_headers) as resp:
        assert resp.status == 401
    assert created.status == 200

    text = captured_log.getvalue()
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]  # every line is JSON

    # The log is really there: one access line per request made, each with its request id.
    access = [line for line in lines if line.get("event") == "request"]
    assert {line["request_id"] for line in access} >= set(request_ids)
    assert all(line.get("request_id") for line in access)
    applied = [line for line in lines if line.get("event") == "payment_applied"]
    assert len(applied) == 1 and applied[0].get("request_id"), applied
    assert any(line.get("event") == "channel_notification_rejected" for line in lines)

    channel_credentials, emulator_credentials = ensure_local_credentials(keys_dir, mall.settings.sp_mchid)
    identity = mall.gateway_app[SERVICES].identity
    secrets = {
        "payer openid": [OPENID],
        "client apiv3 key": [client.creds.apiv3_key.decode()],
        "channel apiv3 key": [channel_credentials.apiv3_key.reveal().decode()],
        "Authorization signatures": sent_signatures,
        "Wechatpay-Signature values": received_signatures,
        "client private key": pem_body_lines(signing.private_key_pem(client.creds.private_key)),
        "gateway private key": pem_body_lines(signing.private_key_pem(identity.private_key)),
        "channel merchant key": pem_body_lines(
            signing.private_key_pem(channel_credentials.merchant_private_key.reveal())),
        "channel platform key": pem_body_lines(
            signing.private_key_pem(emulator_credentials.platform_private_key.reveal())),
        "notification ciphertext": [json.loads(body)["resource"]["ciphertext"]],
    }
    assert "PRIVATE KEY" not in text
    for name, values in secrets.items():
        assert values, name
        for value in values:
            assert value not in text, f"{name} found in the log"


async def test_an_openid_in_a_path_is_not_logged(captured_log, mall):
    """SPEC 2.3 puts openids in paths (/v3/mall/members/{openid}/...): the access log must
    name the route, not the raw path."""
    reply = await mall.app.get(f"/v3/mall/members/{OPENID}/points?sp_mchid={mall.settings.sp_mchid}")
    assert reply.status in (200, 404), reply.json
    text = captured_log.getvalue()
    assert any(json.loads(line)["event"] == "request" for line in text.splitlines())
    assert OPENID not in text
