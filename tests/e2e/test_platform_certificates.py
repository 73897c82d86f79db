"""Platform certificate mode (平台证书): a mall backend whose SDK downloads
`GET /v3/certificates` and verifies every answer and notification by the certificate whose
serial is in `Wechatpay-Serial` works against the gateway. The certificate is the gateway's
own key under a second name; which name an answer carries follows the request's
Wechatpay-Serial, else the client's registered mode (WeChat's rule while merchants move
between its modes)."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta, timezone
from unittest.mock import patch

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from wechatpayv3 import WeChatPay, WeChatPayType
from wechatpayv3.core import Core

from gateway import signing
from gateway.api import SERVICES
from tests.support import SignedClient, register_client, send_unsigned, wait_until
from tests.support import test_key as shared_key

OPENID = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"
QUERY = "/v3/pay/partner/transactions/out-trade-no/{}?sp_mchid={}&sub_mchid={}"


def identity_of(mall):
    return mall.gateway_app[SERVICES].identity


async def certificate_client(mall, role: str = "mall_app", **scope) -> SignedClient:
    """A client registered in platform certificate mode (it checks answers itself below)."""
    creds = await register_client(mall.pool, mall_id=mall.settings.sp_mchid, role=role, name="legacy backend",
                                  verification="certificate", **scope)
    return SignedClient(mall.gateway_url, creds, mall.gateway_public_key, mall.session)


def sdk_in_certificate_mode(mall, creds, cert_dir) -> WeChatPay:
    """wechatpayv3 as a backend in platform certificate mode builds it: no public key, a
    directory for the certificates it downloads. With an empty directory its constructor
    would download from api.mch.weixin.qq.com before the base URL can be changed, so that
    first download is run once the base URL points at the gateway (the SDK's own code)."""
    def build():
        return WeChatPay(
            wechatpay_type=WeChatPayType.MINIPROG, mchid=creds.mchid,
            private_key=signing.private_key_pem(creds.private_key).decode(), cert_serial_no=creds.serial_no,
            appid=mall.settings.sp_appid, apiv3_key=creds.apiv3_key.decode(), notify_url=mall.notify_url,
            partner_mode=True, cert_dir=str(cert_dir))

    if any(cert_dir.glob("*.pem")):
        client = build()  # certificates on disk: the SDK loads them and asks nothing
        client._core._gate_way = mall.gateway_url
        return client
    with patch.object(Core, "_init_certificates"):
        client = build()
    client._core._gate_way = mall.gateway_url
    client._core._init_certificates()
    return client


def open_certificate(entry: dict, apiv3_key: bytes) -> bytes:
    sealed = entry["encrypt_certificate"]
    assert (sealed["algorithm"], sealed["associated_data"]) == ("AEAD_AES_256_GCM", "certificate")
    plain = signing.aes_gcm_decrypt(apiv3_key, sealed["ciphertext"], sealed["nonce"], sealed["associated_data"])
    assert plain is not None, "the certificate does not decrypt with the caller's APIv3 key"
    return plain


def verifies_with(certificate: x509.Certificate, headers: dict, body: bytes) -> bool:
    message = signing.response_message(headers["Wechatpay-Timestamp"], headers["Wechatpay-Nonce"], body)
    return signing.verify(certificate.public_key(), message, headers["Wechatpay-Signature"])


async def test_a_backend_on_the_sdk_in_certificate_mode_downloads_the_certificate_and_verifies_everything(
        mall, tmp_path):
    identity, store = identity_of(mall), mall.stores[0]
    legacy = await certificate_client(mall)
    cert_dir = tmp_path / "certs"
    sdk = await asyncio.to_thread(sdk_in_certificate_mode, mall, legacy.creds, cert_dir)

    # The SDK downloaded, decrypted and kept the gateway's certificate under its serial.
    [held] = sdk._core._certificates
    assert held.serial_number == int(identity.certificate_serial, 16)
    assert (cert_dir / f"{identity.certificate_serial}.pem").read_bytes() == identity.certificate_pem

    code, text = await asyncio.to_thread(
        sdk.pay, description="Coffee beans 250g", out_trade_no="CERT-0001", amount={"total": 2599},
        payer={"sp_openid": OPENID}, sub_mchid=store)
    assert code == 200, text  # a 2xx the SDK verified by the certificate Wechatpay-Serial named
    assert json.loads(text)["prepay_id"]
    paid = await mall.shopper_pays(store, "CERT-0001")

    # The notification to a certificate-mode client names the certificate and verifies with it.
    headers, body = await wait_until(lambda: mall.sink.received and mall.sink.received[0],
                                     what="TRANSACTION.SUCCESS at the backend")
    assert headers["Wechatpay-Serial"] == identity.certificate_serial
    assert verifies_with(held, headers, body)
    event = await asyncio.to_thread(sdk.callback, headers, body)
    assert event is not None, "the SDK refused the gateway's notification"
    assert (event["event_type"], event["resource"]["out_trade_no"]) == ("TRANSACTION.SUCCESS", "CERT-0001")
    assert event["resource"]["transaction_id"] == paid["transaction_id"]

    code, text = await asyncio.to_thread(sdk.query, out_trade_no="CERT-0001", sub_mchid=store)
    assert code == 200 and json.loads(text)["trade_state"] == "SUCCESS", text
    reply = await legacy.get(QUERY.format("CERT-0001", legacy.creds.mchid, store))
    assert reply.status == 200 and reply.headers["Wechatpay-Serial"] == identity.certificate_serial

    # A receiver's name the SDK encrypts under the certificate (naming its serial in
    # Wechatpay-Serial) decrypts: the same key as the public key id names.
    code, text = await asyncio.to_thread(
        sdk.profitsharing_add_receiver, account_type="MERCHANT_ID", account="1900009911",
        relation_type="HEADQUARTER", name="Linen Brand HQ Co., Ltd.", sub_mchid=store)
    assert code == 200, text

    # A backend started later reads the certificate from its directory and asks for nothing.
    again = await asyncio.to_thread(sdk_in_certificate_mode, mall, legacy.creds, cert_dir)
    code, text = await asyncio.to_thread(again.query, out_trade_no="CERT-0001", sub_mchid=store)
    assert code == 200, text
    assert await mall.invariants() == []


def impostor_certificate(serial: int) -> bytes:
    """A certificate with the gateway's serial but another key."""
    key, name = shared_key(2), x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "impostor")])
    now = datetime.now(timezone.utc)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(serial).not_valid_before(now - timedelta(days=1))
                   .not_valid_after(now + timedelta(days=1)).sign(key, hashes.SHA256()))
    return certificate.public_bytes(Encoding.PEM)


async def test_the_sdk_really_checks_answers_against_the_certificate(mall, tmp_path):
    """Control for the test above: an SDK holding a certificate with the gateway's serial and
    another key refuses the answers and the notification, so the successes there are verified."""
    identity = identity_of(mall)
    legacy = await certificate_client(mall)
    cert_dir = tmp_path / "certs"
    cert_dir.mkdir()
    (cert_dir / f"{identity.certificate_serial}.pem").write_bytes(
        impostor_certificate(int(identity.certificate_serial, 16)))
    sdk = await asyncio.to_thread(sdk_in_certificate_mode, mall, legacy.creds, cert_dir)
    with pytest.raises(Exception, match="failed to verify the signature"):
        await asyncio.to_thread(sdk.pay, description="Coffee", out_trade_no="CERT-0002", amount={"total": 100},
                                payer={"sp_openid": OPENID}, sub_mchid=mall.stores[0])
    await mall.shopper_pays(mall.stores[0], "CERT-0002")
    headers, body = await wait_until(lambda: mall.sink.received and mall.sink.received[0],
                                     what="TRANSACTION.SUCCESS at the backend")
    assert await asyncio.to_thread(sdk.callback, headers, body) is None


async def test_any_client_downloads_the_certificate_sealed_with_its_own_apiv3_key(mall):
    identity = identity_of(mall)
    tenant = await certificate_client(mall, role="tenant", sub_mchid=mall.stores[1])
    for client in (mall.app, mall.admin, tenant):  # public key mode (app, admin) and certificate mode
        first, second = await client.get("/v3/certificates"), await client.get("/v3/certificates")
        assert first.status == 200, first.json
        assert first.headers["Wechatpay-Serial"] == identity.certificate_serial  # whatever the client's mode
        [entry] = first.json["data"]
        assert entry["serial_no"] == identity.certificate_serial
        assert (entry["effective_time"], entry["expire_time"]) == (
            "2024-01-01T08:00:00+08:00", "2050-01-01T07:59:59+08:00")
        pem = open_certificate(entry, client.creds.apiv3_key)
        assert pem == identity.certificate_pem
        # The SDK's bootstrap: the answer verifies with the certificate it carries.
        assert verifies_with(x509.load_pem_x509_certificate(pem), first.headers, first.body)
        # A fresh nonce each time.
        assert second.json["data"][0]["encrypt_certificate"]["nonce"] != entry["encrypt_certificate"]["nonce"]
    other = tenant.creds.apiv3_key
    sealed = (await mall.app.get("/v3/certificates")).json["data"][0]["encrypt_certificate"]
    assert signing.aes_gcm_decrypt(other, sealed["ciphertext"], sealed["nonce"], "certificate") is None, \
        "sealed for the caller only"
    unsigned = await send_unsigned(mall.app, "GET", "/v3/certificates")
    assert unsigned.status == 401 and unsigned.json["code"] == "SIGN_ERROR"


async def test_an_answer_follows_the_requests_serial_else_the_clients_mode(mall):
    identity, store = identity_of(mall), mall.stores[0]
    legacy = await certificate_client(mall)
    public_key_client = mall.app
    names = {None: None, "public key id": identity.public_key_id, "certificate": identity.certificate_serial,
             "certificate, lower case": identity.certificate_serial.lower(),
             "another key": "5157F09EFDC096DE15EBE81A47057A7232F1B8E1"}
    expected = {
        # request's Wechatpay-Serial -> (answer to a public key client, answer to a certificate client)
        None: (identity.public_key_id, identity.certificate_serial),
        "public key id": (identity.public_key_id, identity.public_key_id),
        "certificate": (identity.certificate_serial, identity.certificate_serial),
        "certificate, lower case": (identity.certificate_serial, identity.certificate_serial),
        "another key": (identity.public_key_id, identity.certificate_serial),
    }
    for what, header in names.items():
        sent = {} if header is None else {"Wechatpay-Serial": header}
        for client, wanted in zip((public_key_client, legacy), expected[what]):
            # An error answer (the order does not exist) is signed like any other.
            reply = await client.get(QUERY.format("CERT-NONE", client.creds.mchid, store), headers=sent)
            assert reply.status == 404 and reply.json["code"] == "ORDER_NOT_EXIST", reply.json
            assert reply.headers["Wechatpay-Serial"] == wanted, (what, client.creds.mchid)
    # Before the caller is known (a bad signature), the request's serial, else the public key id.
    for header, wanted in ((None, identity.public_key_id), (identity.certificate_serial, identity.certificate_serial)):
        sent = {"Authorization": "WECHATPAY2-SHA256-RSA2048 bad"}
        if header is not None:
            sent["Wechatpay-Serial"] = header
        reply = await send_unsigned(legacy, "GET", QUERY.format("X", "1", store), headers=sent)
        assert reply.status == 401 and reply.headers["Wechatpay-Serial"] == wanted


async def test_public_key_clients_notifications_keep_the_public_key_id(mall):
    reply = await mall.app.post("/v3/pay/partner/transactions/jsapi", {
        "sp_appid": mall.settings.sp_appid, "sp_mchid": mall.settings.sp_mchid, "sub_mchid": mall.stores[0],
        "description": "Tea", "out_trade_no": "PUBKEY-0001", "notify_url": mall.notify_url,
        "amount": {"total": 800, "currency": "CNY"}, "payer": {"sp_openid": OPENID}})
    assert reply.status == 200 and reply.headers["Wechatpay-Serial"] == identity_of(mall).public_key_id
    await mall.shopper_pays(mall.stores[0], "PUBKEY-0001")
    headers, _ = await wait_until(lambda: mall.sink.received and mall.sink.received[0], what="the notification")
    assert headers["Wechatpay-Serial"] == identity_of(mall).public_key_id


async def test_the_admin_registers_a_client_in_either_mode(mall):
    pem = signing.public_key_pem(shared_key(1).public_key()).decode()
    default = await mall.admin.post("/v3/mall/clients", {"role": "finance", "public_key": pem})
    assert default.status == 200 and default.json["verification"] == "public_key", default.json
    legacy = await mall.admin.post("/v3/mall/clients", {"role": "finance", "public_key": pem,
                                                        "verification": "certificate"})
    assert legacy.status == 200 and legacy.json["verification"] == "certificate", legacy.json
    async with mall.pool.acquire() as conn:
        stored = {row["client_id"]: row["verification"] for row in await conn.fetch(
            "SELECT client_id, verification FROM clients WHERE client_id = ANY($1::text[])",
            [default.json["mchid"], legacy.json["mchid"]])}
    assert stored == {default.json["mchid"]: "public_key", legacy.json["mchid"]: "certificate"}
    refused = await mall.admin.post("/v3/mall/clients", {"role": "finance", "public_key": pem,
                                                         "verification": "platform_certificate"})
    assert refused.status == 400 and refused.json["code"] == "PARAM_ERROR"
    assert refused.json["detail"] == {"field": "verification", "issue": "unknown_verification"}


async def test_the_database_refuses_an_unknown_mode(mall):
    import asyncpg
    async with mall.pool.acquire() as conn:
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute("UPDATE clients SET verification = 'both' WHERE client_id = $1", mall.app.creds.mchid)
        assert await conn.fetchval("SELECT verification FROM clients WHERE client_id = $1",
                                   mall.app.creds.mchid) == "public_key"
