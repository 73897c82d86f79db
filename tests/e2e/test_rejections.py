"""Requests the gateway must refuse, over real sockets: each refusal has WeChat's status,
code and a precise detail, is itself signed, and leaves no trace in orders, the ledger or
the outbox (SPEC 2.1, 2.4: a request rejected by validation stores nothing)."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone

from yarl import URL

from gateway import signing
from gateway.services import onboarding
from tests.support import (
    Reply, SignedClient, add_tenant, order_body, register_client, send_unsigned, table_counts,
)
from tests.support import test_key as shared_key

CREATE = "/v3/pay/partner/transactions/jsapi"


def query_path(mall, sub_mchid: str, out_trade_no: str) -> str:
    return (f"/v3/pay/partner/transactions/out-trade-no/{out_trade_no}"
            f"?sp_mchid={mall.settings.sp_mchid}&sub_mchid={sub_mchid}")


def assert_refused(reply, status: int, code: str, **detail):
    assert reply.status == status, (reply.status, reply.body)
    body = reply.json
    assert body["code"] == code, body
    assert isinstance(body["message"], str) and body["message"]
    for name, value in detail.items():
        assert body["detail"].get(name) == value, body
    assert reply.headers["Content-Type"] == "application/json; charset=utf-8"
    assert reply.headers["Wechatpay-Serial"].startswith("PUB_KEY_ID_")
    text = reply.body.decode()
    for leak in ("Traceback", "asyncpg", "SELECT", "INSERT", 'File "'):
        assert leak not in text


def raw_body(payload) -> bytes:
    return json.dumps(payload).encode()


# -- signatures ---------------------------------------------------------------------------------------

MALFORMED_HEADERS = {
    "garbage": lambda good: "garbage",
    "schema": lambda good: good.replace(signing.SCHEMA, "WECHATPAY2-SHA256-RSA4096"),
    "field_name": lambda good: good.replace(',serial_no="', ',serial="'),
    "duplicate_field": lambda good: good + ',mchid="1900000100"',
    "empty_field": lambda good: good.replace('nonce_str="', 'nonce_str="",x="'),
    "no_schema": lambda good: good.split(" ", 1)[1],
}


async def test_missing_or_malformed_authorization(mall):
    target, body = CREATE, raw_body(order_body(mall, mall.stores[0], "REJECT-0001"))
    before = await table_counts(mall.pool)
    reply = await send_unsigned(mall.app, "POST", target, body)
    assert_refused(reply, 401, "SIGN_ERROR", reason="authorization_malformed")
    for name, make_header in MALFORMED_HEADERS.items():
        header = make_header(mall.app.authorization("POST", target, body))
        reply = await send_unsigned(mall.app, "POST", target, body, {"Authorization": header})
        assert reply.status == 401, name
        assert_refused(reply, 401, "SIGN_ERROR", reason="authorization_malformed")
    bad_timestamp = mall.app.authorization("POST", target, body).replace('timestamp="', 'timestamp="x')
    reply = await send_unsigned(mall.app, "POST", target, body, {"Authorization": bad_timestamp})
    assert_refused(reply, 401, "SIGN_ERROR")
    assert reply.json["detail"]["reason"] in ("authorization_malformed", "timestamp_out_of_window")
    assert await table_counts(mall.pool) == before


async def test_tampered_body_or_target(mall):
    signed_for = raw_body(order_body(mall, mall.stores[0], "REJECT-0003", 100))
    sent = raw_body(order_body(mall, mall.stores[0], "REJECT-0003", 1))
    before = await table_counts(mall.pool)
    reply = await mall.app.post(CREATE, raw=sent, authorization=mall.app.authorization("POST", CREATE, signed_for))
    assert_refused(reply, 401, "SIGN_ERROR", reason="signature_mismatch")
    assert await table_counts(mall.pool) == before
    store = mall.stores[0]
    await _create(mall, store, "REJECT-0004")
    before = await table_counts(mall.pool)
    # Signed for the own store's query, sent with the same signature for another target.
    header = mall.app.authorization("GET", query_path(mall, store, "REJECT-0004"), b"")
    reply = await mall.app.get(query_path(mall, mall.stores[1], "REJECT-0004"), authorization=header)
    assert_refused(reply, 401, "SIGN_ERROR", reason="signature_mismatch")
    # The target is verified exactly as sent, never normalised (SPEC 2.1).
    sp = mall.settings.sp_mchid
    as_sent = [f"/v3/pay/partner/transactions/out-trade-no/REJECT%2D0004?sp_mchid={sp}&sub_mchid={store}",
               f"/v3/pay/partner/transactions/out-trade-no/REJECT-0004?sub_mchid={store}&sp_mchid={sp}",
               f"/v3/pay/partner/transactions/out-trade-no/REJECT-0004?sp_mchid={sp}&sub_mchid={store}&x=%41"]
    for target in as_sent:
        reply = await send_raw_target(mall.app, target, mall.app.authorization("GET", target, b""))
        assert reply.status == 200 and reply.json["out_trade_no"] == "REJECT-0004", (target, reply.json)
    normalised = query_path(mall, store, "REJECT-0004")
    reply = await send_raw_target(mall.app, as_sent[0], mall.app.authorization("GET", normalised, b""))
    assert_refused(reply, 401, "SIGN_ERROR", reason="signature_mismatch")
    assert await table_counts(mall.pool) == before


async def test_signature_by_unknown_serial(mall):
    body = raw_body(order_body(mall, mall.stores[0], "REJECT-0005"))
    stranger = SignedClient(mall.gateway_url, _creds_like(mall.app, serial_no="0" * 40), mall.gateway_public_key,
                            mall.session)
    before = await table_counts(mall.pool)
    reply = await stranger.post(CREATE, raw=body)
    assert_refused(reply, 401, "SIGN_ERROR", reason="unknown_key")
    # A known serial but a key that is not the registered one.
    impostor = SignedClient(mall.gateway_url, _creds_like(mall.app, private_key=shared_key(2)),
                            mall.gateway_public_key, mall.session)
    reply = await impostor.post(CREATE, raw=body)
    assert_refused(reply, 401, "SIGN_ERROR", reason="signature_mismatch")
    # An unknown mchid.
    nobody = SignedClient(mall.gateway_url, _creds_like(mall.app, mchid="1999999999"), mall.gateway_public_key,
                          mall.session)
    reply = await nobody.post(CREATE, raw=body)
    assert_refused(reply, 401, "SIGN_ERROR", reason="unknown_key")
    assert await table_counts(mall.pool) == before


async def test_revoked_key(mall):
    store = mall.stores[0]
    assert (await _create(mall, store, "REJECT-0006")).status == 200
    creds = mall.app.creds
    revoked = await mall.admin.request("DELETE", f"/v3/mall/clients/{creds.mchid}/keys/{creds.serial_no}")
    assert revoked.status == 204 and revoked.body == b""
    before = await table_counts(mall.pool)
    reply = await mall.app.post(CREATE, order_body(mall, store, "REJECT-0007"))
    assert_refused(reply, 401, "SIGN_ERROR", reason="unknown_key")
    reply = await mall.app.get(query_path(mall, store, "REJECT-0006"))
    assert_refused(reply, 401, "SIGN_ERROR", reason="unknown_key")
    assert await table_counts(mall.pool) == before
    again = await mall.admin.request("DELETE", f"/v3/mall/clients/{creds.mchid}/keys/{creds.serial_no}")
    assert_refused(again, 404, "RESOURCE_NOT_EXISTS")


async def test_timestamp_window(mall):
    body = raw_body(order_body(mall, mall.stores[0], "REJECT-0008"))
    before = await table_counts(mall.pool)
    for offset_s in (-301, 301, -3600, 10**9):
        header = mall.app.authorization("POST", CREATE, body, timestamp=int(time.time()) + offset_s)
        reply = await mall.app.post(CREATE, raw=body, authorization=header)
        assert reply.status == 401, offset_s
        assert_refused(reply, 401, "SIGN_ERROR", reason="timestamp_out_of_window")
    assert await table_counts(mall.pool) == before
    store = mall.stores[0]
    await _create(mall, store, "REJECT-0009")
    for offset_s in (-299, -120, 0, 120, 299, 300):
        # +300 is the edge: the client's whole-second clock is never ahead of the server's.
        header = mall.app.authorization("GET", query_path(mall, store, "REJECT-0009"), b"",
                                        timestamp=int(time.time()) + offset_s)
        reply = await mall.app.get(query_path(mall, store, "REJECT-0009"), authorization=header)
        assert reply.status == 200, (offset_s, reply.json)


async def test_replayed_nonce(mall):
    store = mall.stores[0]
    body = raw_body(order_body(mall, store, "REJECT-0010"))
    header = mall.app.authorization("POST", CREATE, body)
    first = await mall.app.post(CREATE, raw=body, authorization=header)
    assert first.status == 200, first.json
    before = await table_counts(mall.pool)
    replay = await mall.app.post(CREATE, raw=body, authorization=header)
    assert_refused(replay, 401, "SIGN_ERROR", reason="nonce_replayed")
    # The same nonce with a fresh timestamp and signature is still a replay.
    nonce = signing.parse_authorization(header).nonce_str
    resigned = mall.app.authorization("POST", CREATE, body, nonce=nonce, timestamp=int(time.time()) + 1)
    replay = await mall.app.post(CREATE, raw=body, authorization=resigned)
    assert_refused(replay, 401, "SIGN_ERROR", reason="nonce_replayed")
    assert await table_counts(mall.pool) == before
    # Replay protection is per client: another client may happen to use the same nonce.
    await _create(mall, store, "REJECT-0011")
    nonce = signing.new_nonce()
    target = query_path(mall, store, "REJECT-0011")
    reply = await mall.app.get(target, authorization=mall.app.authorization("GET", target, b"", nonce=nonce))
    assert reply.status == 200, reply.json
    reply = await mall.admin.get(target, authorization=mall.admin.authorization("GET", target, b"", nonce=nonce))
    assert reply.status == 200, reply.json


# -- scope: stores and malls ---------------------------------------------------------------------------

async def test_store_not_in_this_mall(mall):
    before = await table_counts(mall.pool)
    reply = await mall.app.post(CREATE, order_body(mall, "1900000299", "REJECT-0012"))
    assert_refused(reply, 403, "NO_AUTH", reason="store_not_in_mall")
    assert await table_counts(mall.pool) == before
    other_mall, other_store = "1900000500", "1900000501"
    await onboarding.ensure_mall(mall.pool, other_mall, "wxothermall000001", "Other mall")
    await add_tenant(mall.pool, other_mall, other_store)
    before = await table_counts(mall.pool)
    # The store exists, but in another mall.
    reply = await mall.app.post(CREATE, order_body(mall, other_store, "REJECT-0013"))
    assert_refused(reply, 403, "NO_AUTH", reason="store_not_in_mall")
    # Claiming to be the other mall.
    reply = await mall.app.post(CREATE, order_body(mall, other_store, "REJECT-0013", sp_mchid=other_mall,
                                                   sp_appid="wxothermall000001"))
    assert_refused(reply, 403, "NO_AUTH", reason="sp_mchid_not_yours")
    reply = await mall.app.get(f"/v3/pay/partner/transactions/out-trade-no/REJECT-0013"
                               f"?sp_mchid={other_mall}&sub_mchid={other_store}")
    assert_refused(reply, 403, "NO_AUTH", reason="sp_mchid_not_yours")
    assert await table_counts(mall.pool) == before


# -- bodies ------------------------------------------------------------------------------------------------

async def test_bad_bodies(mall):
    before = await table_counts(mall.pool)
    for total, issue in ((0, "out_of_range"), (-1, "out_of_range"), (1.5, "not_an_integer"),
                         ("100", "not_an_integer")):
        reply = await mall.app.post(CREATE, order_body(mall, mall.stores[0], "REJECT-0014", total))
        assert reply.status == 400, total
        assert_refused(reply, 400, "PARAM_ERROR", field="amount.total", issue=issue)
    for raw, issue in ((b"{not json", "not_json"), (b'{"amount": ', "not_json"), (b"\xff\xfe{}", "not_json"),
                       (b"", "not_an_object"), (b"[]", "not_an_object"), (b'"order"', "not_an_object")):
        reply = await mall.app.post(CREATE, raw=raw)
        assert reply.status == 400, raw
        assert_refused(reply, 400, "PARAM_ERROR", field="body", issue=issue)
    assert await table_counts(mall.pool) == before


async def test_oversized_body(mall):
    limit = mall.settings.body_bytes_max
    payload = order_body(mall, mall.stores[0], "REJECT-0015", attach="x" * limit)
    before = await table_counts(mall.pool)
    reply = await mall.app.post(CREATE, payload)
    assert_refused(reply, 413, "PARAM_ERROR", reason="body_too_large")
    assert await table_counts(mall.pool) == before
    # Just under the limit is read (and then refused for what it says, not for its size).
    payload = order_body(mall, mall.stores[0], "REJECT-0015")
    payload["attach"] = "x" * (limit - len(raw_body(payload)) - len(', "attach": ""'))
    assert len(raw_body(payload)) == limit
    reply = await mall.app.post(CREATE, payload)
    assert_refused(reply, 400, "PARAM_ERROR", field="attach", issue="bad_length_or_characters")
    assert await table_counts(mall.pool) == before


async def test_deeply_nested_json_is_a_param_error(mall):
    """json.loads raises RecursionError (not ValueError) on deep nesting: still the
    client's fault, so 400 PARAM_ERROR, never a 500."""
    nested = b"[" * 30_000 + b"]" * 30_000
    assert len(nested) < mall.settings.body_bytes_max  # the nesting is the fault, not the size
    before = await table_counts(mall.pool)
    reply = await mall.app.post(CREATE, raw=nested)
    assert await table_counts(mall.pool) == before
    assert_refused(reply, 400, "PARAM_ERROR", field="body", issue="not_json")


# -- roles ---------------------------------------------------------------------------------------------------

async def test_tenant_cannot_create_and_reads_only_its_store(mall):
    own, other = mall.stores[0], mall.stores[1]
    tenant = await _tenant_client(mall, own)
    before = await table_counts(mall.pool)
    reply = await tenant.post(CREATE, order_body(mall, own, "REJECT-0016"))
    assert_refused(reply, 403, "NO_AUTH", reason="role_cannot_create_orders")
    assert await table_counts(mall.pool) == before
    await _create(mall, own, "REJECT-0017")
    await _create(mall, other, "REJECT-0018")
    before = await table_counts(mall.pool)
    mine = await tenant.get(query_path(mall, own, "REJECT-0017"))
    assert mine.status == 200 and mine.json["out_trade_no"] == "REJECT-0017"
    theirs = await tenant.get(query_path(mall, other, "REJECT-0018"))
    # Another store's order answers exactly as an order that does not exist.
    missing = await tenant.get(query_path(mall, other, "REJECT-0099"))
    assert_refused(theirs, 404, "ORDER_NOT_EXIST")
    assert (theirs.status, theirs.json) == (missing.status, missing.json)
    closing = await tenant.post("/v3/pay/partner/transactions/out-trade-no/REJECT-0018/close",
                                {"sp_mchid": mall.settings.sp_mchid, "sub_mchid": other})
    assert_refused(closing, 403, "NO_AUTH")
    assert await table_counts(mall.pool) == before
    queried = await mall.app.get(query_path(mall, other, "REJECT-0018"))
    assert queried.json["trade_state"] == "NOTPAY"


# -- key rotation ------------------------------------------------------------------------------------------------

async def test_key_rotation_both_keys_sign_until_one_is_revoked(mall):
    store = mall.stores[0]
    old = mall.app
    new_key = shared_key(1)
    added = await mall.admin.post(f"/v3/mall/clients/{old.creds.mchid}/keys",
                                  {"public_key": signing.public_key_pem(new_key.public_key()).decode()})
    assert added.status == 200, added.json
    new_serial = added.json["serial_no"]
    assert new_serial != old.creds.serial_no and added.json["mchid"] == old.creds.mchid
    new = SignedClient(mall.gateway_url, _creds_like(old, serial_no=new_serial, private_key=new_key),
                       mall.gateway_public_key, mall.session)

    assert (await old.post(CREATE, order_body(mall, store, "ROTATE-0001"))).status == 200
    assert (await new.post(CREATE, order_body(mall, store, "ROTATE-0002"))).status == 200
    # Each serial only verifies with its own key.
    crossed = SignedClient(mall.gateway_url, _creds_like(old, serial_no=new_serial), mall.gateway_public_key,
                           mall.session)
    assert_refused(await crossed.get(query_path(mall, store, "ROTATE-0001")), 401, "SIGN_ERROR",
                   reason="signature_mismatch")

    revoked = await mall.admin.request("DELETE", f"/v3/mall/clients/{old.creds.mchid}/keys/{old.creds.serial_no}")
    assert revoked.status == 204
    assert_refused(await old.get(query_path(mall, store, "ROTATE-0001")), 401, "SIGN_ERROR", reason="unknown_key")
    still = await new.get(query_path(mall, store, "ROTATE-0001"))
    assert still.status == 200 and still.json["out_trade_no"] == "ROTATE-0001"


# -- the window's edge, on a clock that stands still ---------------------------------------------------------------

async def test_timestamp_exactly_at_the_window_edge(make_mall):
    """With the server clock on a whole second T, T±300 is inside the window, T±301 is not."""
    frozen_at = datetime.fromtimestamp(int(time.time()), timezone.utc)
    mall = await make_mall(clock=lambda: frozen_at)
    now_s = int(frozen_at.timestamp())
    for offset_s, status in ((-300, 200), (300, 200), (-301, 401), (301, 401)):
        header = mall.admin.authorization("GET", "/v3/mall/tenants", b"", timestamp=now_s + offset_s)
        reply = await mall.admin.get("/v3/mall/tenants", authorization=header)
        assert reply.status == status, (offset_s, reply.json)
        if status == 401:
            assert reply.json["detail"]["reason"] == "timestamp_out_of_window"


# -- helpers ---------------------------------------------------------------------------------------------------------

async def _create(mall, store: str, out_trade_no: str):
    reply = await mall.app.post(CREATE, order_body(mall, store, out_trade_no))
    assert reply.status == 200, reply.json
    return reply


async def _tenant_client(mall, store: str) -> SignedClient:
    creds = await register_client(mall.pool, mall_id=mall.settings.sp_mchid, role="tenant", sub_mchid=store,
                                  name=f"POS {store}", private_key=shared_key(0))
    return SignedClient(mall.gateway_url, creds, mall.gateway_public_key, mall.session)


async def send_raw_target(client: SignedClient, target: str, authorization: str) -> Reply:
    """GET `target` byte for byte (no re-quoting by the HTTP client)."""
    url = URL(client.base_url + target, encoded=True)
    async with client.session.get(url, headers={"Authorization": authorization}) as resp:
        reply = Reply(resp.status, await resp.read(), dict(resp.headers))
    client.assert_signed(reply)
    return reply


def _creds_like(client: SignedClient, **changes):
    from dataclasses import replace
    return replace(client.creds, **changes)
