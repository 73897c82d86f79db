"""The gateway under operating faults and header abuse: background loops that outlive a
database dropping their connections, /health up versus ready, 503 while the database is
away, bounded body reads, hardened Authorization and notification headers, and a client
Request-ID that can never spoil a log line."""

from __future__ import annotations

import asyncio
import json
import re
import time
from urllib.parse import urlsplit

import asyncpg
import pytest
import structlog
from aiohttp import web

from gateway.api import middleware
from gateway.app import BACKGROUND
from gateway.health import HEALTH, CheckResult
from tests.support import (CHECK_ACQUIRE_TIMEOUT_S, all_table_counts, capture_log, order_body, raw_http, send_unsigned,
                           wait_until)

CREATE = "/v3/pay/partner/transactions/jsapi"
NOTIFY = "/channel/wechatpay/notify"
TERMINATE_OTHERS_SQL = """
SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
 WHERE datname = current_database() AND pid <> pg_backend_pid()
"""


def host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname, parts.port


async def pay_and_wait_notified(mall, out_trade_no: str, timeout_s: float = 15.0) -> None:
    created = await mall.app.post(CREATE, order_body(mall, mall.stores[0], out_trade_no))
    assert created.status == 200, created.json
    await mall.shopper_pays(mall.stores[0], out_trade_no)

    def notified():
        return any(out_trade_no.encode() in body or True for _, body in mall.sink.received) and \
            _count_delivered(mall) >= _expected[mall.gateway_url]

    _expected[mall.gateway_url] = _expected.get(mall.gateway_url, 0) + 1
    await wait_until(notified, timeout_s=timeout_s, what=f"notification of {out_trade_no}")


_expected: dict[str, int] = {}


def _count_delivered(mall) -> int:
    return len(mall.sink.received)


# -- background loops outlive the database dropping their connections (defect 1) ----------

async def test_workers_survive_terminated_connections_and_keep_notifying(make_mall, database_url):
    mall = await make_mall()
    await pay_and_wait_notified(mall, "FAULT-0001")
    killer = await asyncpg.connect(database_url)
    try:
        terminated = 0
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:  # workers poll every 20 ms: some die mid-query
            terminated += await killer.fetchval(TERMINATE_OTHERS_SQL)
            await asyncio.sleep(0.05)
    finally:
        await killer.close()
    assert terminated > 0
    loops = mall.gateway_app[BACKGROUND]
    assert loops.not_running() == [], loops.as_json()
    await pay_and_wait_notified(mall, "FAULT-0002")
    reply = await mall.admin.get("/health/ready")
    assert reply.status == 200, reply.json
    assert reply.json["checks"]["background_loops"]["ok"] is True


# -- /health: up versus ready (defect 7) -----------------------------------------------

async def test_health_says_up_and_ready_and_which_check_fails(mall):
    up = await send_unsigned(mall.app, "GET", "/health")
    assert up.status == 200 and up.json == {"status": "up"}
    ready = await send_unsigned(mall.app, "GET", "/health/ready")
    assert ready.status == 200 and ready.json["status"] == "ready"
    checks = ready.json["checks"]
    assert checks["database"]["ok"] and checks["background_loops"]["ok"]
    assert {"outbox_0", "scheduler", "unpaid_orders", "nonce_cleanup"} <= set(checks["background_loops"]["loops"])

    assert checks["dead_jobs"] == {"ok": True, "required": False, "count": 0}

    async def disk_space(_app) -> CheckResult:  # an informational check another module adds
        return CheckResult(False, {"free_percent": 3})

    mall.gateway_app[HEALTH].add("disk_space", disk_space, required=False)
    ready = await send_unsigned(mall.app, "GET", "/health/ready")
    assert ready.status == 200
    assert ready.json["checks"]["disk_space"] == {"ok": False, "required": False, "free_percent": 3}

    loop = mall.gateway_app[BACKGROUND].loops["scheduler"]
    loop.task.cancel()
    await asyncio.sleep(0.05)
    not_ready = await send_unsigned(mall.app, "GET", "/health/ready")
    assert not_ready.status == 503 and not_ready.json["status"] == "not_ready"
    assert not_ready.json["checks"]["background_loops"]["loops"]["scheduler"]["running"] is False
    up = await send_unsigned(mall.app, "GET", "/health")
    assert up.status == 200  # alive, just not ready


# -- the database away: 503 SYSTEM_ERROR, not 500 (defect 7) ---------------------------

@pytest.mark.parametrize("error", [
    asyncpg.CannotConnectNowError("the database system is starting up"),
    asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
    asyncpg.AdminShutdownError("terminating connection due to administrator command"),
    asyncpg.TooManyConnectionsError("sorry, too many clients already"),
    asyncpg.QueryCanceledError("canceling statement due to statement timeout"),
    ConnectionRefusedError(111, "Connect call failed"),
    FileNotFoundError(2, "No such file or directory"),  # the embedded server's socket, while stopped
    asyncio.TimeoutError(),  # a pool acquire past db_acquire_timeout_ms
])
async def test_database_errors_answer_503_system_error(aiohttp_client, error):
    async def handler(_request):
        raise error

    app = web.Application(middlewares=[middleware.errors])
    app.router.add_get("/x", handler)
    client = await aiohttp_client(app)
    resp = await client.get("/x")
    assert resp.status == 503
    assert resp.headers["Retry-After"] == "1"
    body = await resp.json()
    assert body["code"] == "SYSTEM_ERROR" and body["detail"] == {"reason": "database_unavailable"}


async def test_an_exhausted_pool_answers_503_within_the_acquire_timeout(make_mall):
    mall = await make_mall(db_pool_size_min=1, db_pool_size_max=1, db_acquire_timeout_ms=300)
    before = await all_table_counts(mall.pool)
    async with mall.pool.acquire(timeout=CHECK_ACQUIRE_TIMEOUT_S):  # the only connection, held
        started = time.monotonic()
        reply = await mall.app.post(CREATE, order_body(mall, mall.stores[0], "FAULT-0003"))
        waited_s = time.monotonic() - started
    assert reply.status == 503 and reply.json["code"] == "SYSTEM_ERROR", reply.json
    assert waited_s < 10  # asyncpg alone would wait forever; the rest is this busy box
    assert await all_table_counts(mall.pool) == before
    # Once the connection is back the same request goes through (the background loops
    # share the one connection, so a try may still wait past 300 ms: retried, as a client would).
    async def created():
        reply = await mall.app.post(CREATE, order_body(mall, mall.stores[0], "FAULT-0003"))
        assert reply.status in (200, 503), reply.json
        return reply.status == 200

    await wait_until(created, timeout_s=20, step_s=0.1, what="the order created once the pool is free")


# -- Authorization and notification headers (defect 2) ---------------------------------

@pytest.mark.parametrize("timestamp", ["²", "1" * 309, "9" * 4_300, "1" * 5_000, "١٧٠٠٠٠٠٠٠٠"])
async def test_odd_authorization_timestamps_are_sign_errors(mall, timestamp):
    body = json.dumps(order_body(mall, mall.stores[0], "FAULT-0004")).encode()
    good = mall.app.authorization("POST", CREATE, body)
    header = re.sub(r'timestamp="[0-9]+"', f'timestamp="{timestamp}"', good)
    reply = await send_unsigned(mall.app, "POST", CREATE, body, {"Authorization": header})
    assert reply.status == 401 and reply.json["code"] == "SIGN_ERROR", reply.json


@pytest.mark.parametrize("field", ["mchid", "serial_no", "nonce_str"])
async def test_undecodable_bytes_in_authorization_are_sign_errors(mall, field):
    body = json.dumps(order_body(mall, mall.stores[0], "FAULT-0005")).encode()
    good = mall.app.authorization("POST", CREATE, body).encode()
    bad = re.sub(field.encode() + rb'="[^"]*"', field.encode() + b'="\xff\xfe\x80abc"', good)
    host, port = host_port(mall.gateway_url)
    request = (b"POST " + CREATE.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Authorization: " + bad + b"\r\nContent-Length: " + str(len(body)).encode()
               + b"\r\nConnection: close\r\n\r\n" + body)
    reply = await raw_http(host, port, request)
    assert reply.status == 401, reply.body
    mall.app.assert_signed(reply)
    assert json.loads(reply.body)["detail"]["reason"] == "authorization_malformed"


@pytest.mark.parametrize("timestamp", ["²", "1" * 5_000])
async def test_channel_notifications_with_odd_timestamps_are_refused(mall, timestamp):
    headers = {"Wechatpay-Timestamp": timestamp, "Wechatpay-Nonce": "N" * 32, "Wechatpay-Signature": "c2ln",
               "Wechatpay-Serial": "PUB_KEY_ID_X", "Content-Type": "application/json"}
    async with mall.session.post(mall.gateway_url + NOTIFY, data=b'{"id":"1"}', headers=headers) as resp:
        assert resp.status == 401
        assert (await resp.json())["code"] == "FAIL"


# -- a body that never arrives (defect 6) ------------------------------------------------

@pytest.mark.parametrize("path", [CREATE, NOTIFY])
async def test_a_body_sent_too_slowly_is_cut_off(make_mall, path):
    mall = await make_mall(body_read_timeout_s=0.5)
    host, port = host_port(mall.gateway_url)
    reader, writer = await asyncio.open_connection(host, port)
    started = time.monotonic()
    writer.write(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 "Content-Length: 100\r\n\r\n".encode() + b'{"a": 1234')  # 10 of the 100 bytes declared
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 10)  # read() returns at EOF: the gateway closed
    elapsed_s = time.monotonic() - started
    writer.close()
    assert answer.startswith(b"HTTP/1.1 408"), answer[:100]
    assert b'"body_read_timeout"' in answer
    assert 0.4 <= elapsed_s < 5, elapsed_s


# -- Request-ID (defect 9) -----------------------------------------------------------------

@pytest.fixture
def captured_log():
    with capture_log("info") as stream:
        yield stream


async def test_a_hostile_request_id_is_replaced_before_it_is_logged(captured_log, mall):
    host, port = host_port(mall.gateway_url)
    # (A NUL or CR in a header is refused by aiohttp's parser before any of our code runs.)
    for request_id in (b"R" * 6_000, b"\xff\xfe\x80bad", b"a b\tc", b"ok-id.42:x"):
        request = (b"GET /health HTTP/1.1\r\nHost: x\r\nRequest-ID: " + request_id
                   + b"\r\nConnection: close\r\n\r\n")
        reply = await raw_http(host, port, request)
        assert reply.status == 200
        echoed = reply.headers["Request-ID"]
        if request_id == b"ok-id.42:x":
            assert echoed == "ok-id.42:x"  # a plain id is kept, so clients can correlate
        else:
            assert re.fullmatch(r"[0-9a-f]{32}", echoed), echoed
    lines = captured_log.getvalue().splitlines()
    assert lines
    for line in lines:
        event = json.loads(line)  # every line is one valid JSON object
        assert len(line) < 2_000
        assert "RRRRRRRR" not in line and "\\udcff" not in line
        assert isinstance(event.get("request_id", ""), str)


async def test_a_log_line_with_a_lone_surrogate_still_encodes(captured_log):
    structlog.get_logger("probe").info("probe", value="a\ud800b")
    line = captured_log.getvalue().strip()
    line.encode("utf-8")  # would raise on a lone surrogate
    assert "a\\ud800b" in line  # escaped in the text; a reader decodes it back
    assert json.loads(line)["value"] == "a\ud800b"
