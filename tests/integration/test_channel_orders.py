"""The real WeChatPayChannel against the emulator over a real loopback server: orders.

Each test checks what a caller would: the prepay_id, the trade state, the WeChat error
code and whether it is retryable, and the bytes the emulator puts on the wire.
"""

from __future__ import annotations

import dataclasses
import json
import random
from datetime import datetime, timedelta, timezone

import pytest
from structlog.testing import capture_logs

from gateway import signing
from gateway.channel import ChannelError, ChannelOrderRequest, ChannelTradeState
from gateway.channel.client import WeChatPayChannel
from gateway.channel.transport import SignedTransport
from emulator import EmulatorConfig, create_emulator_app
from emulator import keys as emulator_keys

SP_MCHID = "1900000100"
SUB_MCHID = "1900000201"
OPENID = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


@pytest.fixture
def start_emulator(aiohttp_server, credentials):
    async def start(**knobs):
        config = EmulatorConfig(credentials=credentials[1], rng=random.Random(1), **knobs)
        return await aiohttp_server(create_emulator_app(config))

    return start


@pytest.fixture
async def emulator(start_emulator):
    return await start_emulator()


def channel_for(server, session, credentials, *, clock=utc_now, timeout_s=5.0) -> WeChatPayChannel:
    return WeChatPayChannel(SignedTransport(credentials, str(server.make_url("")), session, timeout_s, clock))


@pytest.fixture
def channel(emulator, session, credentials):
    return channel_for(emulator, session, credentials[0])


def order_request(out_trade_no: str = "MALL0000000001", **changes) -> ChannelOrderRequest:
    values = dict(
        sp_appid="wx8888888888888888", sp_mchid=SP_MCHID, sub_mchid=SUB_MCHID, sub_appid=None,
        description="Store A - flat white", out_trade_no=out_trade_no, total_fen=3200, currency="CNY",
        payer_sp_openid=OPENID, payer_sub_openid=None, notify_url="http://127.0.0.1:9/notify",
        profit_sharing=True, time_expire=None, attach="guide=7",
    )
    values.update(changes)
    return ChannelOrderRequest(**values)


async def test_create_query_both_ways_then_close(channel, emulator, session):
    prepay_id = await channel.create_jsapi_order(order_request())
    assert prepay_id.startswith("wx")

    unpaid = await channel.query_by_out_trade_no(SUB_MCHID, "MALL0000000001")
    assert unpaid is not None and unpaid.state is ChannelTradeState.NOTPAY
    assert (unpaid.total_fen, unpaid.currency, unpaid.payer_sp_openid) == (3200, "CNY", OPENID)

    async with session.post(emulator.make_url("/sandbox/transactions/pay"),
                            json={"sub_mchid": SUB_MCHID, "out_trade_no": "MALL0000000001"}) as resp:
        assert resp.status == 200
        transaction_id = (await resp.json())["transaction_id"]
    assert len(transaction_id) == 28 and transaction_id.isdigit()

    by_no = await channel.query_by_out_trade_no(SUB_MCHID, "MALL0000000001")
    by_id = await channel.query_by_transaction_id(SUB_MCHID, transaction_id)
    assert by_no == by_id
    assert by_id.state is ChannelTradeState.SUCCESS
    assert (by_id.transaction_id, by_id.payer_total_fen, by_id.bank_type) == (transaction_id, 3200, "OTHERS")
    assert abs(by_id.success_at - utc_now()) < timedelta(seconds=5)
    assert await channel.query_by_transaction_id("1900000999", transaction_id) is None  # another store's

    with pytest.raises(ChannelError) as paid:
        await channel.close_order(SUB_MCHID, "MALL0000000001")
    assert (paid.value.code, paid.value.retryable, paid.value.http_status) == ("ORDERPAID", False, 400)

    await channel.create_jsapi_order(order_request("MALL0000000002"))
    await channel.close_order(SUB_MCHID, "MALL0000000002")  # a verified 204
    await channel.close_order(SUB_MCHID, "MALL0000000002")  # closing twice is harmless
    closed = await channel.query_by_out_trade_no(SUB_MCHID, "MALL0000000002")
    assert closed.state is ChannelTradeState.CLOSED


async def test_unknown_orders_query_as_none(channel):
    assert await channel.query_by_out_trade_no(SUB_MCHID, "NEVER0000001") is None
    assert await channel.query_by_transaction_id(SUB_MCHID, "4200000000000000000000000000") is None
    with pytest.raises(ChannelError) as missing:
        await channel.close_order(SUB_MCHID, "NEVER0000001")
    assert (missing.value.code, missing.value.http_status) == ("ORDER_NOT_EXIST", 404)


async def test_identical_re_create_returns_the_same_prepay_id(channel):
    first = await channel.create_jsapi_order(order_request())
    assert await channel.create_jsapi_order(order_request()) == first


async def test_reused_out_trade_no_with_other_fields_is_refused_without_upstream_text(channel):
    await channel.create_jsapi_order(order_request())
    with pytest.raises(ChannelError) as reused:
        await channel.create_jsapi_order(order_request(total_fen=3300))
    error = reused.value
    assert (error.code, error.http_status, error.retryable) == ("INVALID_REQUEST", 400, False)
    assert "商户订单号重复" not in str(error) and "out_trade_no used" not in error.message
    unchanged = await channel.query_by_out_trade_no(SUB_MCHID, "MALL0000000001")
    assert unchanged.total_fen == 3200


@pytest.mark.parametrize("changes", [
    {"total_fen": 0},
    {"currency": "USD"},
    {"description": ""},
    {"out_trade_no": "abc"},  # WeChat wants 6..32 characters
    {"notify_url": "http://10.0.0.8/notify"},  # plain http only to loopback
    {"payer_sp_openid": None, "payer_sub_openid": OPENID},  # sub_openid needs sub_appid
])
async def test_invalid_orders_are_param_errors_and_not_retryable(channel, emulator, changes):
    with pytest.raises(ChannelError) as invalid:
        await channel.create_jsapi_order(order_request(**changes))
    assert (invalid.value.code, invalid.value.http_status, invalid.value.retryable) == ("PARAM_ERROR", 400, False)
    assert len(emulator.app[emulator_keys.ORDERS]) == 0


async def test_injected_system_errors_are_retryable_and_change_nothing(start_emulator, session, credentials):
    server = await start_emulator(error_rate=1.0)
    channel = channel_for(server, session, credentials[0])
    with pytest.raises(ChannelError) as failed:
        await channel.create_jsapi_order(order_request())
    assert (failed.value.code, failed.value.http_status, failed.value.retryable) == ("SYSTEM_ERROR", 500, True)
    assert len(server.app[emulator_keys.ORDERS]) == 0


async def test_slow_channel_times_out_retryably(start_emulator, session, credentials):
    server = await start_emulator(response_delay_ms=500)
    channel = channel_for(server, session, credentials[0], timeout_s=0.1)
    with pytest.raises(ChannelError) as slow:
        await channel.query_by_out_trade_no(SUB_MCHID, "MALL0000000001")
    assert (slow.value.code, slow.value.retryable) == ("CHANNEL_TIMEOUT", True)


async def test_unreachable_channel_is_retryable(session, credentials, unused_tcp_port):
    channel = WeChatPayChannel(SignedTransport(credentials[0], f"http://127.0.0.1:{unused_tcp_port}", session, 2.0, utc_now))
    with pytest.raises(ChannelError) as down:
        await channel.close_order(SUB_MCHID, "MALL0000000001")
    assert (down.value.code, down.value.retryable) == ("CHANNEL_UNREACHABLE", True)


async def test_answer_signed_by_another_platform_key_is_not_believed(emulator, session, credentials):
    impostor_view = dataclasses.replace(
        credentials[0], platform_public_key=signing.generate_private_key().public_key()
    )
    channel = channel_for(emulator, session, impostor_view)
    with pytest.raises(ChannelError) as forged:
        await channel.create_jsapi_order(order_request())
    assert (forged.value.code, forged.value.retryable) == ("CHANNEL_BAD_SIGNATURE", True)


async def raw_call(session, server, method, target, body=b"", authorization=None):
    headers = {"Content-Type": "application/json"}
    if authorization:
        headers["Authorization"] = authorization
    async with session.request(method, server.make_url(target), data=body, headers=headers) as resp:
        return resp.status, await resp.read(), resp.headers


def authorization(credentials, method, target, body, *, key=None, timestamp=None, nonce=None):
    channel = credentials[0]
    return signing.build_authorization(
        mchid=channel.sp_mchid, serial_no=channel.merchant_serial_no,
        private_key=key or channel.merchant_private_key.reveal(), method=method, target=target, body=body,
        timestamp=timestamp or str(int(utc_now().timestamp())), nonce=nonce or signing.new_nonce(),
    )


async def test_emulator_refuses_unsigned_and_badly_signed_requests(emulator, session, credentials):
    target = f"/v3/pay/partner/transactions/out-trade-no/MALL0000000001?sp_mchid={SP_MCHID}&sub_mchid={SUB_MCHID}"
    stale = str(int((utc_now() - timedelta(seconds=301)).timestamp()))
    cases = {
        "unsigned": None,
        "other key": authorization(credentials, "GET", target, b"", key=signing.generate_private_key()),
        "other target": authorization(credentials, "GET", target + "&x=1", b""),
        "stale": authorization(credentials, "GET", target, b"", timestamp=stale),
        "garbled": "WECHATPAY2-SHA256-RSA2048 mchid=1900000100",
    }
    for name, header in cases.items():
        status, body, headers = await raw_call(session, emulator, "GET", target, authorization=header)
        assert (status, json.loads(body)["code"]) == (401, "SIGN_ERROR"), name
        # Errors are signed like every answer.
        message = signing.response_message(headers["Wechatpay-Timestamp"], headers["Wechatpay-Nonce"], body)
        assert signing.verify(credentials[0].platform_public_key, message, headers["Wechatpay-Signature"])

    body = json.dumps({"sp_mchid": SP_MCHID, "sub_mchid": SUB_MCHID}).encode()
    close_target = "/v3/pay/partner/transactions/out-trade-no/MALL0000000001/close"
    signed = authorization(credentials, "POST", close_target, body)
    tampered = body.replace(SUB_MCHID.encode(), b"1900000202")
    status, answer, _ = await raw_call(session, emulator, "POST", close_target, tampered, signed)
    assert (status, json.loads(answer)["code"]) == (401, "SIGN_ERROR")

    replayed = authorization(credentials, "GET", target, b"", nonce="REPLAYEDNONCE")
    first, _, _ = await raw_call(session, emulator, "GET", target, authorization=replayed)
    second, answer, _ = await raw_call(session, emulator, "GET", target, authorization=replayed)
    assert first == 404 and (second, json.loads(answer)["code"]) == (401, "SIGN_ERROR")


async def test_answers_carry_wechat_headers_including_204(emulator, session, credentials):
    await channel_for(emulator, session, credentials[0]).create_jsapi_order(order_request())
    body = json.dumps({"sp_mchid": SP_MCHID, "sub_mchid": SUB_MCHID}).encode()
    target = "/v3/pay/partner/transactions/out-trade-no/MALL0000000001/close"
    status, answer, headers = await raw_call(session, emulator, "POST", target, body,
                                             authorization(credentials, "POST", target, body))
    assert (status, answer) == (204, b"")
    assert headers["Wechatpay-Serial"] == credentials[0].platform_public_key_id
    assert headers["Wechatpay-Signature-Type"] == "WECHATPAY2-SHA256-RSA2048"
    message = signing.response_message(headers["Wechatpay-Timestamp"], headers["Wechatpay-Nonce"], b"")
    assert signing.verify(credentials[0].platform_public_key, message, headers["Wechatpay-Signature"])


async def test_channel_logs_name_no_openids_keys_or_signatures(channel, emulator, session):
    with capture_logs() as entries:
        await channel.create_jsapi_order(order_request())
        await channel.query_by_out_trade_no(SUB_MCHID, "MALL0000000001")
        await channel.query_by_out_trade_no(SUB_MCHID, "NEVER0000001")
        with pytest.raises(ChannelError):
            await channel.create_jsapi_order(order_request(total_fen=1))
    text = json.dumps(entries, default=str)
    assert entries, "the flows log something"
    assert OPENID not in text and "signature=" not in text and "PRIVATE KEY" not in text
