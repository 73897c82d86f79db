"""What a payment's exchanges cost on the gateway's stack with none of the gateway's logic:
how close to the RSA floor any gateway built on aiohttp + uvloop (+ asyncpg) can get.

    python loadtests/bench_stack_floor.py                          # 8 users, 20 s, bare and bare+db, 3 rounds
    python loadtests/bench_stack_floor.py --users 8 --seconds 15 --repeat 3 --variants bare

Three processes per run, like run_load.py's stack:

- the bare server (the only one measured): an aiohttp app on uvloop with the three routes a
  payment crosses, doing only the cryptography the gateway does there, through the same
  `gateway.signing` / `gateway.wire` / `gateway.shapes.notifications` code, with no
  middleware, no services, no logging:
    POST /v3/pay/partner/transactions/jsapi  verify the caller, sign and send the channel's
        create request (aiohttp ClientSession), verify its signed answer, sign paySign, sign
        the answer;
    POST /channel/wechatpay/notify           verify the channel's signature, AES-GCM decrypt
        the resource, answer 204 (unsigned, as the gateway does), then in the background
        AES-GCM encrypt and sign TRANSACTION.SUCCESS and POST it to the mall's receiver;
    GET  /v3/pay/partner/transactions/out-trade-no/{no}  verify the caller, sign the answer.
  That is run_load.py's GATEWAY_SIGNS_PER_PAYMENT signatures and
  GATEWAY_VERIFIES_PER_PAYMENT verifications per payment (the server counts its own, and
  the run prints the counts). The bare processes import only what they use: run_load.py,
  which brings the gateway's services along, is imported by the runner alone.
  `bare+db` adds DB_STATEMENTS_PER_PAYMENT one-row statements per payment through
  `gateway.db.create_pool` (the gateway's pool: no reset query, its codecs) against the
  embedded PostgreSQL, durable commits, each its own implicit transaction.
- the stub channel (not measured): verifies the create request, answers it signed, then
  sends the signed, encrypted TRANSACTION.SUCCESS to the server at once.
- the driver (not measured): N closed-loop users (asyncio + aiohttp) doing create, waiting
  for the notification at their own receiver (in the driver, as Locust's is), then query;
  every answer and notification is verified. A warm-up of WARMUP_PAYMENTS_PER_USER
  payments per user comes first, then the server's CPU (user+sys, psutil) is read at the
  start and the end of S seconds; payments still in flight at the end finish, and count.

Per run it prints payments/s, the server's CPU ms per payment and how much of it is RSA
(thread CPU timed around the server's own signs and verifies, under load), the RSA floor
measured in the same run before the load (`stack.measure_rsa`, CPU time), the ratios of the
server's CPU to each, and the load average; then medians per variant. Exits 1 on any
failed payment. Output: loadtests/out/floor-<timestamp>/ (logs, summary.json).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections import Counter
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import aiohttp
from aiohttp import web
from stack import (OUT_DIR, cpu_seconds, free_port, fresh_database, install_signal_exit, measure_rsa, spawn,
                   start_postgres, wait_http_ok)

from gateway import signing
from gateway.auth import signed_response_headers
from gateway.db import create_pool
from gateway.identity import GatewayIdentity
from gateway.shapes.notifications import notification_body
from gateway.wire import json_bytes, unix_seconds

VARIANT_BARE = "bare"
VARIANT_DB = "bare+db"
CREATE_PATH = "/v3/pay/partner/transactions/jsapi"
QUERY_PATH = "/v3/pay/partner/transactions/out-trade-no/{out_trade_no}?sp_mchid={sp_mchid}&sub_mchid={sub_mchid}"
NOTIFY_PATH = "/channel/wechatpay/notify"
RECEIVER_PATH = "/notify"
TALLY_PATH = "/tally"
HEALTH_PATH = "/health"
SP_MCHID = "1900000001"
SP_APPID = "wxfloor0000000001"
SUB_MCHID = "1900000002"
CLIENT_ID = "floor-mall-backend"
ORIGINAL_TYPE = "transaction"
SIGNATURE_WINDOW_S = 300
WARMUP_PAYMENTS_PER_USER = 3
HTTP_TIMEOUT_S = 30.0
NOTIFY_WAIT_S = 30.0
# The server marks a delivery after the receiver's 204 (bare+db): its last marks land
# before its CPU is read.
SETTLE_S = 0.2
DRIVER_EXTRA_WAIT_S = 90.0  # start-up, warm-up and the last payments beyond --seconds
ERRORS_KEPT_MAX = 10
POOL_SIZE_MAX = 16  # the gateway's default MALLPAY_DB_POOL_SIZE_MAX
STATEMENT_TIMEOUT_MS = 5_000
# One-row statements per payment in bare+db, about what the gateway sends (see run_load's
# database transactions per payment): the order's insert and its stored create answer;
# the payment; the notification marked delivered; the query's nonce and its read.
DB_STATEMENTS_PER_PAYMENT = 6
TABLES_SQL = """
CREATE TABLE IF NOT EXISTS floor_orders (out_trade_no text PRIMARY KEY, nonce text NOT NULL,
    total_fen integer NOT NULL, create_response jsonb, trade jsonb, delivered boolean NOT NULL DEFAULT false);
CREATE TABLE IF NOT EXISTS floor_nonces (nonce text PRIMARY KEY);
TRUNCATE floor_orders, floor_nonces;
"""

# -- keys ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Keys:
    """Every party's key, as the gateway's stack has them: the mall backend's (it signs its
    requests), the gateway's (responses, notifications), the mall's merchant key (channel
    requests, paySign), WeChat's platform key (channel answers, notifications) and the two
    APIv3 keys (the channel's resources, the mall backend's resources)."""

    caller: GatewayIdentity
    gateway: GatewayIdentity
    merchant: GatewayIdentity
    platform: GatewayIdentity
    channel_apiv3: bytes
    client_apiv3: bytes

    @classmethod
    def generate(cls) -> "Keys":
        identities = [GatewayIdentity.from_private_key(signing.generate_private_key()) for _ in range(4)]
        return cls(*identities, os.urandom(signing.APIV3_KEY_BYTES), os.urandom(signing.APIV3_KEY_BYTES))

    def save(self, path: Path) -> None:
        pems = {name: signing.private_key_pem(getattr(self, name).private_key).decode()
                for name in ("caller", "gateway", "merchant", "platform")}
        pems.update(channel_apiv3=self.channel_apiv3.hex(), client_apiv3=self.client_apiv3.hex())
        path.write_text(json.dumps(pems))
        path.chmod(0o600)

    @classmethod
    def load(cls, path: Path) -> "Keys":
        saved = json.loads(path.read_text())
        identities = [GatewayIdentity.from_private_key(signing.load_private_key(saved[name]))
                      for name in ("caller", "gateway", "merchant", "platform")]
        return cls(*identities, bytes.fromhex(saved["channel_apiv3"]), bytes.fromhex(saved["client_apiv3"]))


class Signer:
    """One party's use of a private key, its signatures tallied with their CPU time (an
    identity as `signed_response_headers` takes one)."""

    def __init__(self, identity: GatewayIdentity, tally: Counter):
        self.public_key_id = identity.public_key_id
        self._identity = identity
        self._tally = tally

    def sign(self, message: bytes) -> str:
        started = time.thread_time()
        signature = self._identity.sign(message)
        self._tally["crypto_ms"] += (time.thread_time() - started) * 1000
        self._tally["signs"] += 1
        return signature


class Checker:
    """One party's hold on another's public key, its verifications tallied with their CPU time."""

    def __init__(self, identity: GatewayIdentity, tally: Counter):
        self.public_key_id = identity.public_key_id
        self._public_key = identity.private_key.public_key()
        self._tally = tally

    def verify(self, message: bytes, signature: str) -> bool:
        started = time.thread_time()
        valid = signing.verify(self._public_key, message, signature)
        self._tally["crypto_ms"] += (time.thread_time() - started) * 1000
        self._tally["verifies"] += 1
        return valid


def clock() -> datetime:
    return datetime.now(timezone.utc)


def _fresh(timestamp: str) -> bool:
    seconds = unix_seconds(timestamp)
    return seconds is not None and abs(seconds - time.time()) <= SIGNATURE_WINDOW_S


def request_nonce(signer: Checker, mchid: str, request: web.Request, body: bytes) -> str | None:
    """The nonce of a request `signer` signed as `mchid` within the window; None otherwise."""
    try:
        auth = signing.parse_authorization(request.headers.get("Authorization"))
    except signing.MalformedAuthorization:
        return None
    if auth.mchid != mchid or auth.serial_no != signer.public_key_id or not _fresh(auth.timestamp):
        return None
    message = signing.request_message(request.method, request.raw_path, auth.timestamp, auth.nonce_str, body)
    return auth.nonce_str if signer.verify(message, auth.signature) else None


def answer_signed(signer: Checker, headers, body: bytes) -> bool:
    """An answer or notification signed by `signer`, named by its key id, within the window."""
    timestamp = headers.get("Wechatpay-Timestamp", "")
    if headers.get("Wechatpay-Serial") != signer.public_key_id or not _fresh(timestamp):
        return False
    message = signing.response_message(timestamp, headers.get("Wechatpay-Nonce", ""), body)
    return signer.verify(message, headers.get("Wechatpay-Signature", ""))


def signed_request_headers(signer: Signer, mchid: str, method: str, target: str, body: bytes) -> dict:
    timestamp, nonce = str(int(time.time())), signing.new_nonce()
    signature = signer.sign(signing.request_message(method, target, timestamp, nonce, body))
    authorization = signing.Authorization(mchid, nonce, signature, timestamp, signer.public_key_id).header()
    return {"Authorization": authorization, "Accept": "application/json", "Content-Type": "application/json"}


def opened_resource(apiv3_key: bytes, body: bytes) -> dict | None:
    """The decrypted resource of a notification envelope; None when it does not open."""
    resource = json.loads(body)["resource"]
    plain = signing.aes_gcm_decrypt(apiv3_key, resource["ciphertext"], resource["nonce"],
                                    resource["associated_data"])
    return None if plain is None else json.loads(plain)


def sealed_notification(apiv3_key: bytes, signer, trade: dict) -> tuple[bytes, dict]:
    """TRANSACTION.SUCCESS as the gateway's outbox sends it: body and signed headers."""
    body = notification_body({"notification_id": uuid.uuid4(), "created_at": clock(),
                              "event_type": "TRANSACTION.SUCCESS", "summary": "支付成功",
                              "original_type": ORIGINAL_TYPE, "resource": trade}, apiv3_key)
    headers = signed_response_headers(signer, body, clock)
    headers["Content-Type"] = "application/json; charset=utf-8"
    return body, headers


def signed_json(signer, status: int, body: bytes) -> web.Response:
    return web.Response(status=status, body=body, headers=signed_response_headers(signer, body, clock),
                        content_type="application/json", charset="utf-8")


async def health(_request: web.Request) -> web.Response:
    return web.Response(text="ok")


# -- the bare server (measured) --------------------------------------------------------------

class Orders:
    """Where the bare server keeps a payment between its requests: a dict, or with bare+db
    one-row statements (each its own implicit transaction) through the gateway's pool,
    tallied as `statements`."""

    def __init__(self, tally: Counter, pool=None):
        self._tally = tally
        self._pool = pool
        self._paid: dict[str, dict] = {}  # without a pool: until queried

    async def _execute(self, sql: str, *args) -> None:
        async with self._pool.acquire() as conn:
            await conn.execute(sql, *args)
        self._tally["statements"] += 1

    async def opened(self, out_trade_no: str, nonce: str, total_fen: int) -> None:
        if self._pool is not None:
            await self._execute("INSERT INTO floor_orders (out_trade_no, nonce, total_fen) VALUES ($1, $2, $3)",
                                out_trade_no, nonce, total_fen)

    async def answered(self, out_trade_no: str, response: dict) -> None:
        if self._pool is not None:
            await self._execute("UPDATE floor_orders SET create_response = $2 WHERE out_trade_no = $1",
                                out_trade_no, response)

    async def paid(self, trade: dict) -> None:
        if self._pool is None:
            self._paid[trade["out_trade_no"]] = trade
            return
        await self._execute("UPDATE floor_orders SET trade = $2 WHERE out_trade_no = $1", trade["out_trade_no"], trade)

    async def delivered(self, out_trade_no: str) -> None:
        if self._pool is not None:
            await self._execute("UPDATE floor_orders SET delivered = true WHERE out_trade_no = $1", out_trade_no)

    async def queried(self, out_trade_no: str, nonce: str) -> dict | None:
        if self._pool is None:
            return self._paid.pop(out_trade_no, None)
        async with self._pool.acquire() as conn:
            await conn.execute("INSERT INTO floor_nonces (nonce) VALUES ($1)", nonce)
            trade = await conn.fetchval("SELECT trade FROM floor_orders WHERE out_trade_no = $1", out_trade_no)
        self._tally["statements"] += 2
        return trade


class BareServer:
    """The three routes of a payment with only their cryptography and HTTP; `tally` counts
    its signatures and verifications."""

    def __init__(self, keys: Keys, channel_url: str, public_url: str, mall_notify_url: str):
        self.tally: Counter = Counter()
        self._gateway = Signer(keys.gateway, self.tally)
        self._merchant = Signer(keys.merchant, self.tally)
        self._caller = Checker(keys.caller, self.tally)
        self._platform = Checker(keys.platform, self.tally)
        self._channel_apiv3, self._client_apiv3 = keys.channel_apiv3, keys.client_apiv3
        self._channel_url = channel_url
        self._notify_url = public_url + NOTIFY_PATH
        self._mall_notify_url = mall_notify_url
        self._deliveries: set[asyncio.Task] = set()
        self.session: aiohttp.ClientSession | None = None  # both set while the app runs
        self.orders = Orders(self.tally)

    async def create(self, request: web.Request) -> web.Response:
        body = await request.read()
        nonce = request_nonce(self._caller, CLIENT_ID, request, body)
        if nonce is None:
            return web.Response(status=401)
        order = json.loads(body)
        await self.orders.opened(order["out_trade_no"], nonce, order["amount"]["total"])
        channel_body = json_bytes({key: order[key] for key in (
            "sp_appid", "sp_mchid", "sub_mchid", "description", "out_trade_no", "amount", "payer")}
            | {"notify_url": self._notify_url})
        headers = signed_request_headers(self._merchant, SP_MCHID, "POST", CREATE_PATH, channel_body)
        headers["Wechatpay-Serial"] = self._platform.public_key_id
        async with self.session.post(self._channel_url + CREATE_PATH, data=channel_body, headers=headers) as resp:
            answer = await resp.read()
            if resp.status != 200 or not answer_signed(self._platform, resp.headers, answer):
                return web.Response(status=502)
        prepay_id = json.loads(answer)["prepay_id"]
        timestamp, pay_nonce, package = str(int(time.time())), signing.new_nonce(), f"prepay_id={prepay_id}"
        pay_sign = self._merchant.sign(f"{SP_APPID}\n{timestamp}\n{pay_nonce}\n{package}\n".encode())
        response = {"prepay_id": prepay_id, "mall_info": {"pay_params": {
            "appId": SP_APPID, "timeStamp": timestamp, "nonceStr": pay_nonce, "package": package,
            "signType": "RSA", "paySign": pay_sign}}}
        await self.orders.answered(order["out_trade_no"], response)
        return signed_json(self._gateway, 200, json_bytes(response))

    async def channel_notify(self, request: web.Request) -> web.Response:
        body = await request.read()
        if not answer_signed(self._platform, request.headers, body):
            return web.Response(status=401)
        trade = opened_resource(self._channel_apiv3, body)
        if trade is None:
            return web.Response(status=400)
        await self.orders.paid(trade)
        delivery = asyncio.create_task(self._deliver(trade))
        self._deliveries.add(delivery)
        delivery.add_done_callback(self._deliveries.discard)
        return web.Response(status=204)  # unsigned, as the gateway answers /channel/

    async def _deliver(self, trade: dict) -> None:
        body, headers = sealed_notification(self._client_apiv3, self._gateway, trade)
        async with self.session.post(self._mall_notify_url, data=body, headers=headers) as resp:
            await resp.read()
            if resp.status == 204:
                await self.orders.delivered(trade["out_trade_no"])

    async def query(self, request: web.Request) -> web.Response:
        nonce = request_nonce(self._caller, CLIENT_ID, request, await request.read())
        if nonce is None:
            return web.Response(status=401)
        trade = await self.orders.queried(request.match_info["out_trade_no"], nonce)
        if trade is None:
            return signed_json(self._gateway, 404, json_bytes({"code": "ORDER_NOT_EXIST", "message": "no order"}))
        return signed_json(self._gateway, 200, json_bytes(trade))

    async def tally_json(self, _request: web.Request) -> web.Response:
        return web.json_response(dict(self.tally))


def bare_app(server: BareServer, dsn: str | None) -> web.Application:
    app = web.Application()

    async def resources(_app: web.Application):
        server.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=HTTP_TIMEOUT_S))
        pool = None if dsn is None else await create_pool(dsn, min_size=2, max_size=POOL_SIZE_MAX,
                                                           statement_timeout_ms=STATEMENT_TIMEOUT_MS)
        server.orders = Orders(server.tally, pool)
        yield
        await server.session.close()
        if pool is not None:
            await pool.close()

    app.cleanup_ctx.append(resources)
    app.router.add_post(CREATE_PATH, server.create)
    app.router.add_post(NOTIFY_PATH, server.channel_notify)
    app.router.add_get(QUERY_PATH.partition("?")[0], server.query)
    app.router.add_get(TALLY_PATH, server.tally_json)
    app.router.add_get(HEALTH_PATH, health)
    return app


# -- the stub channel (not measured) ---------------------------------------------------------

class StubChannel:
    """WeChat Pay's side: checks the create request, answers it signed, then notifies."""

    def __init__(self, keys: Keys):
        self.tally: Counter = Counter()
        self.refused = 0
        self._platform = Signer(keys.platform, self.tally)
        self._merchant = Checker(keys.merchant, self.tally)
        self._channel_apiv3 = keys.channel_apiv3
        self._transaction_ids = itertools.count(4200000000000000001)
        self._notifications: set[asyncio.Task] = set()
        self.session: aiohttp.ClientSession | None = None  # set while the app runs

    async def create(self, request: web.Request) -> web.Response:
        body = await request.read()
        if request_nonce(self._merchant, SP_MCHID, request, body) is None:
            self.refused += 1
            return web.Response(status=401)
        order = json.loads(body)
        notification = asyncio.create_task(self._notify(order))
        self._notifications.add(notification)
        notification.add_done_callback(self._notifications.discard)
        return signed_json(self._platform, 200, json_bytes({"prepay_id": f"wx{uuid.uuid4().hex}"}))

    async def _notify(self, order: dict) -> None:
        total_fen = order["amount"]["total"]
        trade = {"sp_appid": order["sp_appid"], "sp_mchid": order["sp_mchid"], "sub_mchid": order["sub_mchid"],
                 "out_trade_no": order["out_trade_no"], "transaction_id": str(next(self._transaction_ids)),
                 "trade_type": "JSAPI", "trade_state": "SUCCESS", "trade_state_desc": "支付成功",
                 "bank_type": "OTHERS", "success_time": clock().isoformat(timespec="seconds"),
                 "payer": order["payer"], "amount": {"total": total_fen, "payer_total": total_fen,
                                                     "currency": "CNY", "payer_currency": "CNY"}}
        body, headers = sealed_notification(self._channel_apiv3, self._platform, trade)
        async with self.session.post(order["notify_url"], data=body, headers=headers) as resp:
            await resp.read()


def stub_channel_app(channel: StubChannel) -> web.Application:
    app = web.Application()

    async def session(_app: web.Application):
        channel.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=HTTP_TIMEOUT_S))
        yield
        await channel.session.close()

    app.cleanup_ctx.append(session)
    app.router.add_post(CREATE_PATH, channel.create)
    app.router.add_get(HEALTH_PATH, health)
    return app


# -- the driver and the mall's receiver (not measured) ---------------------------------------

@dataclass
class DriveResult:
    users: int
    seconds: float = 0.0
    payments: int = 0
    warmup_payments: int = 0
    failures: int = 0
    errors: list[str] = field(default_factory=list)
    server_cpu_s: float = 0.0
    server_signs: int = 0
    server_verifies: int = 0
    server_crypto_ms: float = 0.0  # CPU time inside the server's signs and verifies
    server_statements: int = 0


class Driver:
    """The mall backend: closed-loop users paying through the server, and the receiver its
    notifications arrive at (each hands the waiting user the decrypted transaction)."""

    def __init__(self, keys: Keys, server_url: str, notify_url: str, session: aiohttp.ClientSession):
        self.tally: Counter = Counter()
        self._caller = Signer(keys.caller, self.tally)
        self._gateway = Checker(keys.gateway, self.tally)
        self._client_apiv3 = keys.client_apiv3
        self._server_url = server_url
        self.notify_url = notify_url
        self._session = session
        self._waiting: dict[str, asyncio.Future] = {}
        self._numbers = itertools.count(1)
        self._prefix = f"F{os.getpid()}T{int(time.time())}N"

    def receiver_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post(RECEIVER_PATH, self._receive)
        return app

    async def _receive(self, request: web.Request) -> web.Response:
        body = await request.read()
        if not answer_signed(self._gateway, request.headers, body):
            return web.Response(status=401)
        trade = opened_resource(self._client_apiv3, body)
        waiter = None if trade is None else self._waiting.pop(trade["out_trade_no"], None)
        if waiter is None:
            return web.Response(status=400)
        waiter.set_result(trade)
        return web.Response(status=204)

    async def pay(self) -> None:
        """One payment: create, the notification, query; raises AssertionError on anything wrong."""
        out_trade_no = f"{self._prefix}{next(self._numbers)}"
        waiter = asyncio.get_running_loop().create_future()
        self._waiting[out_trade_no] = waiter
        try:
            created = await self._signed("POST", CREATE_PATH, json_bytes({
                "sp_appid": SP_APPID, "sp_mchid": SP_MCHID, "sub_mchid": SUB_MCHID,
                "description": "floor benchmark purchase", "out_trade_no": out_trade_no,
                "notify_url": self.notify_url, "amount": {"total": 1234, "currency": "CNY"},
                "payer": {"sp_openid": "oFloorShopper0001"}}))
            assert created.get("prepay_id") and created["mall_info"]["pay_params"]["paySign"], created
            trade = await asyncio.wait_for(waiter, NOTIFY_WAIT_S)
        finally:
            self._waiting.pop(out_trade_no, None)
        answer = await self._signed("GET", QUERY_PATH.format(out_trade_no=out_trade_no, sp_mchid=SP_MCHID,
                                                             sub_mchid=SUB_MCHID), b"")
        assert answer.get("trade_state") == "SUCCESS" and answer["transaction_id"] == trade["transaction_id"], answer

    async def _signed(self, method: str, target: str, body: bytes) -> dict:
        headers = signed_request_headers(self._caller, CLIENT_ID, method, target, body)
        async with self._session.request(method, self._server_url + target, data=body or None,
                                         headers=headers) as resp:
            raw = await resp.read()
            assert resp.status == 200, f"{method} {target.partition('?')[0]} answered {resp.status}"
            assert answer_signed(self._gateway, resp.headers, raw), "answer signature does not verify"
        return json.loads(raw)

    async def drive(self, users: int, seconds: float, server_pid: int | None) -> DriveResult:
        """Warm-up, then `seconds` of closed-loop payments with the server's CPU and tally read
        at both ends (each user finishes the payment in hand)."""
        result = DriveResult(users=users)
        await asyncio.gather(*(self._loop(result, WARMUP_PAYMENTS_PER_USER, None) for _ in range(users)))
        result.warmup_payments, result.payments = result.payments, 0
        cpu_before, tally_before = self._server_cpu_s(server_pid), await self._server_tally()
        started = time.monotonic()
        await asyncio.gather(*(self._loop(result, None, started + seconds) for _ in range(users)))
        result.seconds = time.monotonic() - started
        await asyncio.sleep(SETTLE_S)
        result.server_cpu_s = self._server_cpu_s(server_pid) - cpu_before
        tally_after = await self._server_tally()
        result.server_signs = tally_after.get("signs", 0) - tally_before.get("signs", 0)
        result.server_verifies = tally_after.get("verifies", 0) - tally_before.get("verifies", 0)
        result.server_crypto_ms = tally_after.get("crypto_ms", 0) - tally_before.get("crypto_ms", 0)
        result.server_statements = tally_after.get("statements", 0) - tally_before.get("statements", 0)
        return result

    async def _loop(self, result: DriveResult, payments: int | None, until: float | None) -> None:
        for _ in itertools.count() if payments is None else range(payments):
            if until is not None and time.monotonic() >= until:
                return
            try:
                await self.pay()
                result.payments += 1
            except (AssertionError, asyncio.TimeoutError, aiohttp.ClientError, ValueError, KeyError) as exc:
                result.failures += 1
                if len(result.errors) < ERRORS_KEPT_MAX:
                    result.errors.append(f"{type(exc).__name__}: {exc}")

    async def _server_tally(self) -> Counter:
        async with self._session.get(self._server_url + TALLY_PATH) as resp:
            return Counter(await resp.json())

    @staticmethod
    def _server_cpu_s(pid: int | None) -> float:
        return 0.0 if pid is None else cpu_seconds([pid]).get(pid, 0.0)


async def run_driver(keys: Keys, server_url: str, server_pid: int, port: int, users: int, seconds: float,
                     result_path: Path) -> None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=HTTP_TIMEOUT_S),
                                     connector=aiohttp.TCPConnector(limit=0)) as session:
        driver = Driver(keys, server_url, f"http://127.0.0.1:{port}{RECEIVER_PATH}", session)
        runner = web.AppRunner(driver.receiver_app(), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        try:
            result = await driver.drive(users, seconds, server_pid)
        finally:
            await runner.cleanup()
    result_path.write_text(json.dumps(asdict(result)))


# -- the runner ------------------------------------------------------------------------------

def gateway_crypto_per_payment() -> tuple[int, int]:
    """Signatures and verifications the gateway makes per payment, as run_load.py reads them
    off its code paths (imported here, in the runner: the bare server does not carry the
    gateway's services and their imports)."""
    from run_load import GATEWAY_SIGNS_PER_PAYMENT, GATEWAY_VERIFIES_PER_PAYMENT
    return GATEWAY_SIGNS_PER_PAYMENT, GATEWAY_VERIFIES_PER_PAYMENT


@dataclass
class RunResult:
    """One run: the driver's counts and the floor measured beside them; per-payment figures
    are derived from the counts."""

    variant: str
    driven: DriveResult
    sign_ms: float = 0.0
    verify_ms: float = 0.0
    floor_ms: float = 0.0
    load_average: tuple = ()
    problems: list[str] = field(default_factory=list)  # the runner's own: a process died or hung

    def per_payment(self, value: float) -> float:
        return value / self.driven.payments if self.driven.payments else 0.0

    @property
    def failures(self) -> int:
        return self.driven.failures + len(self.problems)

    @property
    def payments_per_s(self) -> float:
        return self.driven.payments / self.driven.seconds if self.driven.seconds else 0.0

    @property
    def cpu_ms(self) -> float:
        """The bare server's CPU per payment."""
        return self.per_payment(self.driven.server_cpu_s * 1000)

    @property
    def rsa_ms(self) -> float:
        """The server's own RSA per payment, timed around each call while it served."""
        return self.per_payment(self.driven.server_crypto_ms)

    @property
    def ratio(self) -> float:
        return self.cpu_ms / self.floor_ms if self.floor_ms else 0.0

    @property
    def ratio_to_own_rsa(self) -> float:
        """CPU over the RSA the server itself did under load: the stack's overhead without the
        floor measurement's noise (a busy box inflates thread CPU time too, seen 0.25-0.54 ms
        per signature within one batch)."""
        return self.cpu_ms / self.rsa_ms if self.rsa_ms else 0.0


def main() -> int:
    args = _parser().parse_args()
    if args.role is not None:
        return _child(args)
    install_signal_exit()
    out_dir = args.out or OUT_DIR / f"floor-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    out_dir.mkdir(parents=True, exist_ok=True)
    keys_path = out_dir / "keys.json"
    keys = Keys.generate()
    keys.save(keys_path)
    results: list[RunResult] = []
    with ExitStack() as stack:
        dsn = None
        if VARIANT_DB in args.variants:
            _server, server_dsn = start_postgres(stack)
            dsn = asyncio.run(fresh_database(server_dsn, "floor_bench"))
        channel_port = free_port()
        channel = spawn(stack, "stub channel", _role_argv("channel", keys_path, "--port", str(channel_port)),
                        dict(os.environ), out_dir / "channel.log")
        wait_http_ok(channel, f"http://127.0.0.1:{channel_port}{HEALTH_PATH}")
        plan = [variant for _ in range(args.repeat) for variant in args.variants]
        for index, variant in enumerate(plan, start=1):
            print(f"\n== run {index}/{len(plan)}: {variant}, {args.users} users, {args.seconds} s", flush=True)
            if variant == VARIANT_DB:
                asyncio.run(reset_tables(dsn))
            result = one_run(args, variant, keys, keys_path, channel_port, dsn if variant == VARIANT_DB else None,
                             out_dir / f"run{index:02d}-{variant.replace('+', '-')}")
            results.append(result)
            print_run(result)
    print_medians(results)
    (out_dir / "summary.json").write_text(json.dumps([asdict(r) for r in results], indent=2) + "\n")
    return 0 if all(r.failures == 0 and r.driven.payments for r in results) else 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=8, help="concurrent closed-loop payments")
    parser.add_argument("--seconds", type=float, default=20, help="measured seconds of each run")
    parser.add_argument("--repeat", type=int, default=3, help="rounds; each runs every variant, interleaved")
    parser.add_argument("--variants", nargs="+", choices=[VARIANT_BARE, VARIANT_DB],
                        default=[VARIANT_BARE, VARIANT_DB])
    parser.add_argument("--out", type=Path, help="output folder (default loadtests/out/floor-<timestamp>)")
    # The child processes' side (started by the runner).
    parser.add_argument("--role", choices=["server", "channel", "driver"], help=argparse.SUPPRESS)
    parser.add_argument("--keys", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--channel-url", help=argparse.SUPPRESS)
    parser.add_argument("--mall-notify-url", help=argparse.SUPPRESS)
    parser.add_argument("--dsn", help=argparse.SUPPRESS)
    parser.add_argument("--server-url", help=argparse.SUPPRESS)
    parser.add_argument("--server-pid", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    return parser


def _role_argv(role: str, keys_path: Path, *extra: str) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "--role", role, "--keys", str(keys_path), *extra]


def _child(args) -> int:
    import uvloop  # what `mallpay serve` runs (cli._use_uvloop); a dependency of the load extra
    install_signal_exit()
    keys = Keys.load(args.keys)
    if args.role == "driver":
        uvloop.run(run_driver(keys, args.server_url, args.server_pid, args.port, args.users, args.seconds,
                              args.result))
        return 0
    uvloop.install()
    if args.role == "server":
        app = bare_app(BareServer(keys, args.channel_url, f"http://127.0.0.1:{args.port}", args.mall_notify_url),
                       args.dsn)
    else:
        app = stub_channel_app(StubChannel(keys))
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None)
    return 0


async def reset_tables(dsn: str) -> None:
    pool = await create_pool(dsn, min_size=1, max_size=1, statement_timeout_ms=60_000)
    try:
        async with pool.acquire() as conn:
            await conn.execute(TABLES_SQL)
            await conn.execute("CHECKPOINT")
    finally:
        await pool.close()


def one_run(args, variant: str, keys: Keys, keys_path: Path, channel_port: int, dsn: str | None,
            run_dir: Path) -> RunResult:
    run_dir.mkdir(parents=True, exist_ok=True)
    result = RunResult(variant=variant, driven=DriveResult(users=args.users))
    server_port, receiver_port = free_port(), free_port()
    server_url = f"http://127.0.0.1:{server_port}"
    server_argv = _role_argv("server", keys_path, "--port", str(server_port),
                             "--channel-url", f"http://127.0.0.1:{channel_port}",
                             "--mall-notify-url", f"http://127.0.0.1:{receiver_port}{RECEIVER_PATH}")
    result_path = run_dir / "driver.json"
    with ExitStack() as stack:
        server = spawn(stack, "bare server", server_argv + (["--dsn", dsn] if dsn else []), dict(os.environ),
                       run_dir / "server.log")
        wait_http_ok(server, server_url + HEALTH_PATH)
        rsa = measure_rsa(keys.gateway.private_key)  # same run, before the load
        result.sign_ms, result.verify_ms = rsa.sign_ms, rsa.verify_ms
        signs, verifies = gateway_crypto_per_payment()
        result.floor_ms = signs * rsa.sign_ms + verifies * rsa.verify_ms
        driver = spawn(stack, "driver", _role_argv(
            "driver", keys_path, "--server-url", server_url, "--server-pid", str(server.pid),
            "--port", str(receiver_port), "--users", str(args.users), "--seconds", str(args.seconds),
            "--result", str(result_path)),
            dict(os.environ), run_dir / "driver.log")
        try:
            driver.popen.wait(args.seconds + DRIVER_EXTRA_WAIT_S)
        except subprocess.TimeoutExpired:
            result.problems.append(f"the driver ran past its deadline; see {driver.log_path}")
        result.load_average = tuple(round(x, 1) for x in os.getloadavg())
        if not server.alive():
            result.problems.append(f"the bare server died; see {server.log_path}")
    if result_path.exists():
        result.driven = DriveResult(**json.loads(result_path.read_text()))
    else:
        result.problems.append(f"the driver wrote no result; see {run_dir / 'driver.log'}")
    return result


def print_run(r: RunResult) -> None:
    d = r.driven
    print(f"payments              {r.payments_per_s:8.1f} /s   ({d.payments} in the measured window, "
          f"{r.failures} failed)")
    core_share = d.server_cpu_s / d.seconds if d.seconds else 0.0
    print(f"bare server CPU       {r.cpu_ms:8.2f} ms per payment  ({core_share:.0%} of one core; "
          f"{r.per_payment(d.server_signs):.2f} signatures + "
          f"{r.per_payment(d.server_verifies):.2f} verifications, {r.per_payment(d.server_statements):.2f} "
          f"database statements per payment)")
    print(f"  of which RSA        {r.rsa_ms:8.2f} ms (thread CPU inside the server's own signs and verifies "
          f"under load); the rest {r.cpu_ms - r.rsa_ms:.2f} ms")
    signs, verifies = gateway_crypto_per_payment()
    print(f"RSA-2048 this run     sign {r.sign_ms:.3f} ms, verify {r.verify_ms:.3f} ms -> floor "
          f"{r.floor_ms:.2f} ms ({signs} signs + {verifies} verifies)")
    print(f"ratio                 {r.ratio:8.2f} x the floor, {r.ratio_to_own_rsa:.2f} x its own RSA   "
          f"(load average {' '.join(map(str, r.load_average))})")
    for problem in r.problems + d.errors:
        print(f"  error: {problem}")
    print(flush=True)


def print_medians(results: list[RunResult]) -> None:
    print("== medians per variant ==")
    med = statistics.median
    for variant in dict.fromkeys(r.variant for r in results):
        runs = [r for r in results if r.variant == variant]
        print(f"  {variant:<8} ({len(runs)} runs): {med(r.payments_per_s for r in runs):6.1f} payments/s  "
              f"server CPU {med(r.cpu_ms for r in runs):.2f} ms/payment "
              f"(runs {', '.join(f'{r.cpu_ms:.2f}' for r in runs)})  "
              f"RSA inside {med(r.rsa_ms for r in runs):.2f}, rest {med(r.cpu_ms - r.rsa_ms for r in runs):.2f}  "
              f"floor {med(r.floor_ms for r in runs):.2f} ms  ratio {med(r.ratio for r in runs):.2f}x "
              f"(runs {', '.join(f'{r.ratio:.2f}' for r in runs)}), "
              f"{med(r.ratio_to_own_rsa for r in runs):.2f}x its own RSA  failures {sum(r.failures for r in runs)}")


if __name__ == "__main__":
    sys.exit(main())
