"""Test helpers: a signing API client, a notification receiver, a seeded mall."""

from __future__ import annotations

import io
import json
import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

from gateway import signing
from gateway.api.requests.mall import parse_new_client
from gateway.app import database_services
from gateway.repo.tenants import Tenant
from gateway.services import onboarding
from gateway.services.context import Services
from gateway.settings import Settings


@dataclass
class ClientCredentials:
    mchid: str
    serial_no: str
    private_key: object
    apiv3_key: bytes


@dataclass
class Reply:
    status: int
    body: bytes
    headers: dict

    @property
    def json(self):
        return json.loads(self.body) if self.body else None


class SignedClient:
    """Signs each request as SPEC 2.1 asks and checks each response's signature."""

    def __init__(self, base_url: str, creds: ClientCredentials, gateway_public_key, session: aiohttp.ClientSession):
        self.base_url = base_url.rstrip("/")
        self.creds = creds
        self.gateway_public_key = gateway_public_key
        self.session = session

    def authorization(self, method: str, target: str, body: bytes, *, timestamp=None, nonce=None) -> str:
        return signing.build_authorization(
            mchid=self.creds.mchid, serial_no=self.creds.serial_no, private_key=self.creds.private_key,
            method=method, target=target, body=body,
            timestamp=str(int(time.time())) if timestamp is None else str(timestamp),
            nonce=nonce or signing.new_nonce(),
        )

    async def request(self, method: str, target: str, payload=None, *, raw: bytes | None = None,
                      headers: dict | None = None, authorization: str | None = None) -> Reply:
        body = raw if raw is not None else (b"" if payload is None else json.dumps(payload).encode())
        sent = {"Content-Type": "application/json", "Accept": "application/json"}
        sent["Authorization"] = authorization or self.authorization(method, target, body)
        sent.update(headers or {})
        async with self.session.request(method, self.base_url + target, data=body, headers=sent) as resp:
            data = await resp.read()
            reply = Reply(resp.status, data, dict(resp.headers))
        self.assert_signed(reply)
        return reply

    def assert_signed(self, reply: Reply) -> None:
        h = reply.headers
        assert h["Wechatpay-Signature-Type"] == "WECHATPAY2-SHA256-RSA2048"
        message = signing.response_message(h["Wechatpay-Timestamp"], h["Wechatpay-Nonce"], reply.body)
        assert signing.verify(self.gateway_public_key, message, h["Wechatpay-Signature"]), "unsigned response"

    async def post(self, target: str, payload=None, **kw) -> Reply:
        return await self.request("POST", target, payload, **kw)

    async def get(self, target: str, **kw) -> Reply:
        return await self.request("GET", target, **kw)


async def register_client(pool, *, mall_id: str, role: str, sub_mchid: str | None = None,
                          name: str = "test client", private_key=None,
                          verification: str | None = None) -> ClientCredentials:
    key = private_key or test_key()
    client = parse_new_client({"role": role, "sub_mchid": sub_mchid, "name": name, "verification": verification,
                               "public_key": signing.public_key_pem(key.public_key()).decode()})
    created = await onboarding.create_client(on_pool(pool), mall_id, client)
    return ClientCredentials(created.client_id, created.serial_no, key, created.apiv3_key.reveal())


_KEYS: list = []


def test_key(index: int = 0):
    """RSA keys are slow to make; tests share a few, made once per run."""
    while len(_KEYS) <= index:
        _KEYS.append(signing.generate_private_key())
    return _KEYS[index]


async def add_tenant(pool, mall_id: str, sub_mchid: str, **contract) -> Tenant:
    tenant = Tenant(mall_id=mall_id, sub_mchid=sub_mchid, name=f"Store {sub_mchid}", floor="1F",
                    category="fashion", sub_appid=None, contract=onboarding.contract_of(**contract))
    return await onboarding.create_tenant(on_pool(pool), tenant)


def on_pool(pool) -> Services:
    """The services a test's database pool serves, with the default settings."""
    return database_services(Settings.from_env({}), pool)


@dataclass
class NotificationSink:
    """A mall backend's notify endpoint: records what arrives, answers `status`."""

    status: int = 204
    received: list = field(default_factory=list)

    def app(self) -> web.Application:
        app = web.Application()

        async def receive(request: web.Request) -> web.Response:
            self.received.append((dict(request.headers), await request.read()))
            return web.Response(status=self.status)

        app.router.add_post("/notify", receive)
        return app


def open_notification(headers: dict, body: bytes, gateway_public_key, apiv3_key: bytes) -> dict:
    """Verify and decrypt a notification exactly as a mall backend must."""
    message = signing.response_message(headers["Wechatpay-Timestamp"], headers["Wechatpay-Nonce"], body)
    assert signing.verify(gateway_public_key, message, headers["Wechatpay-Signature"])
    envelope = json.loads(body)
    resource = envelope["resource"]
    plain = signing.aes_gcm_decrypt(apiv3_key, resource["ciphertext"], resource["nonce"],
                                    resource["associated_data"])
    assert plain is not None
    envelope["resource"] = json.loads(plain)
    return envelope


def order_body(mall, sub_mchid: str, out_trade_no: str, total_fen: int = 1000, **extra) -> dict:
    body = {
        "sp_appid": mall.settings.sp_appid, "sp_mchid": mall.settings.sp_mchid,
        "sub_mchid": sub_mchid, "description": "Coffee beans 250g", "out_trade_no": out_trade_no,
        "notify_url": mall.notify_url, "amount": {"total": total_fen, "currency": "CNY"},
        "payer": {"sp_openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"},
    }
    body.update(extra)
    return body


# --- helpers for rejection, notification and idempotency tests -------------------------

COUNT_WRITTEN_ROWS = {
    "orders": "SELECT count(*) FROM orders",
    "transfers": "SELECT count(*) FROM transfers",
    "entries": "SELECT count(*) FROM entries",
    "outbox": "SELECT count(*) FROM outbox",
}


async def table_counts(pool) -> dict[str, int]:
    """Rows in every table a request could write money state to."""
    async with pool.acquire() as conn:
        return {name: await conn.fetchval(sql) for name, sql in COUNT_WRITTEN_ROWS.items()}


async def send_unsigned(client: SignedClient, method: str, target: str, body: bytes = b"",
                        headers: dict | None = None) -> Reply:
    """A request with exactly the headers given (no Authorization unless given); the
    gateway's answer must still be signed, so that is checked as for any reply."""
    sent = {"Content-Type": "application/json", **(headers or {})}
    async with client.session.request(method, client.base_url + target, data=body, headers=sent) as resp:
        reply = Reply(resp.status, await resp.read(), dict(resp.headers))
    client.assert_signed(reply)
    return reply


async def wait_until(predicate, timeout_s: float = 10.0, step_s: float = 0.02, what: str = "condition"):
    """Poll `predicate` (sync or async) until it returns something truthy; that value."""
    import asyncio
    import inspect

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        if loop.time() > deadline:
            raise AssertionError(f"{what} not met within {timeout_s} s")
        await asyncio.sleep(step_s)


@contextmanager
def capture_log(level: str):
    """The gateway's log lines at `level` into a StringIO, as `serve` configures them; the
    logging set-up of the run is put back afterwards."""
    import structlog

    from gateway.logging import configure_logging, stop_routing_stdlib_logging

    saved = structlog.get_config()
    access_level = logging.getLogger("aiohttp.access").level
    stream = io.StringIO()
    configure_logging(level, stream=stream)
    try:
        yield stream
    finally:
        structlog.configure(**saved)
        logging.getLogger("aiohttp.access").setLevel(access_level)
        stop_routing_stdlib_logging()


async def seed_ledger_history(pool, mall_id: str, stores: list[str], days: list, *, seed: int,
                              orders_per_day: int):
    """A mall with `stores` and a seeded random history of `days` posted to its ledger
    (loadtests.ledger_history); the history, for the expected figures."""
    from ledger import repo as ledger_repo
    from loadtests.ledger_history import build_history

    await onboarding.ensure_mall(pool, mall_id, "wxmall", "Test mall")
    for store in stores:
        await add_tenant(pool, mall_id, store)
    history = build_history(seed, stores, days, orders_per_day=orders_per_day)
    async with pool.acquire() as conn:
        await ledger_repo.ensure_accounts(conn, mall_id, history.account_specs())
        for transfer, at in history.items:
            assert await ledger_repo.post_transfer(conn, mall_id, transfer, at) is not None
    return history


async def balances(pool, mall_id: str) -> dict[str, int]:
    from ledger import repo as ledger_repo
    async with pool.acquire() as conn:
        return {name: balance for name, _, balance in await ledger_repo.trial_balance(conn, mall_id)}


async def build_mall(make_mall, emulator: dict | None = None, **overrides):
    """`make_mall(...)`, also for the settings its fixture sets outright (`public_url`,
    `channel_url`), e.g. to put a NotificationRelay between the channel and the gateway.

    tests/e2e/conftest.py passes those two and `**overrides` to one `Settings.with_`
    call, so overriding them there raises "got multiple values for keyword argument".
    Here the overrides are applied inside `with_` for the duration of the build
    (nothing else calls it meanwhile: the build is one task).
    """
    from gateway.settings import Settings

    original = Settings.with_

    def with_overrides(self, **changes):
        return original(self, **{**changes, **overrides})

    Settings.with_ = with_overrides
    try:
        return await make_mall(emulator=emulator)
    finally:
        Settings.with_ = original


@dataclass
class NotificationRelay:
    """Stands between the channel and the gateway's notify endpoint (point the gateway's
    `public_url` at it): records every notification exactly as it reaches the gateway and
    hands back the gateway's own answer."""

    target_url: str | None = None  # the gateway's base URL, set once it is known
    received: list = field(default_factory=list)  # (headers with lower-case names, body, gateway status)

    def app(self) -> web.Application:
        app = web.Application()

        async def relay(request: web.Request) -> web.Response:
            assert self.target_url, "set the relay's target_url before notifications arrive"
            body = await request.read()
            headers = {k: v for k, v in request.headers.items() if k.lower().startswith(("wechatpay-", "content-type"))}
            async with aiohttp.ClientSession() as session:
                async with session.post(self.target_url + request.path, data=body, headers=headers) as answer:
                    answered = await answer.read()
                    self.received.append(({k.lower(): v for k, v in headers.items()}, body, answer.status))
                    return web.Response(status=answer.status, body=answered)

        app.router.add_post("/{path:.*}", relay)
        return app


# --- helpers for the splitting tests (SDK, notifications, simulation) ------------------


def wechatpay_sdk(mall, *, creds: ClientCredentials | None = None, gateway_public_key_pem: str | None = None):
    """The public `wechatpayv3` SDK in partner mode, signing as `creds` (the mall's app
    unless told) and holding the gateway's public key: what a mall backend or a store
    builds, with only the base URL changed."""
    from wechatpayv3 import WeChatPay, WeChatPayType

    from gateway.api import SERVICES

    creds = creds or mall.app.creds
    identity = mall.gateway_app[SERVICES].identity
    client = WeChatPay(
        wechatpay_type=WeChatPayType.MINIPROG, mchid=creds.mchid,
        private_key=signing.private_key_pem(creds.private_key).decode(), cert_serial_no=creds.serial_no,
        appid=mall.settings.sp_appid, apiv3_key=creds.apiv3_key.decode(), notify_url=mall.notify_url,
        partner_mode=True, public_key=gateway_public_key_pem or identity.public_key_pem.decode(),
        public_key_id=identity.public_key_id,
    )
    client._core._gate_way = mall.gateway_url
    return client


class ClockedClient(SignedClient):
    """A SignedClient whose request timestamps follow `clock` (a test's controllable clock
    shared with the gateway), so its requests stay inside the signature window after the
    test moves time forward."""

    def __init__(self, client: SignedClient, clock):
        super().__init__(client.base_url, client.creds, client.gateway_public_key, client.session)
        self.clock = clock

    def authorization(self, method: str, target: str, body: bytes, *, timestamp=None, nonce=None) -> str:
        return super().authorization(method, target, body, nonce=nonce,
                                     timestamp=int(self.clock().timestamp()) if timestamp is None else timestamp)


async def pay_order(mall, sub_mchid: str, out_trade_no: str, total_fen: int, *, profit_sharing: bool = True,
                    guide_id: str | None = None, client: SignedClient | None = None,
                    timeout_s: float = 10.0) -> str:
    """Create an order through the API, have the shopper pay it at the channel, wait until
    the gateway has applied the payment; the transaction_id."""
    extra: dict = {"settle_info": {"profit_sharing": profit_sharing}}
    if guide_id:
        extra["mall_info"] = {"guide_id": guide_id}
    created = await (client or mall.app).post("/v3/pay/partner/transactions/jsapi",
                                              order_body(mall, sub_mchid, out_trade_no, total_fen, **extra))
    assert created.status == 200, created.json
    paid = await mall.shopper_pays(sub_mchid, out_trade_no)

    async def applied() -> bool:
        async with mall.pool.acquire() as conn:
            return await conn.fetchval(
                "SELECT state = 'SUCCESS' FROM orders WHERE sub_mchid = $1 AND out_trade_no = $2",
                sub_mchid, out_trade_no)

    await wait_until(applied, timeout_s=timeout_s, what=f"payment of {out_trade_no} applied")
    return paid["transaction_id"]


async def order_funds_row(pool, transaction_id: str) -> dict:
    async with pool.acquire() as conn:
        row = await conn.fetchrow("SELECT * FROM order_funds WHERE transaction_id = $1", transaction_id)
    assert row is not None, f"no order_funds row for {transaction_id}"
    return dict(row)


async def transfers_of(pool, kind: str, ref: str) -> int:
    """How many ledger transfers of `kind` were posted for `ref` (e.g. a refund's)."""
    async with pool.acquire() as conn:
        return await conn.fetchval("SELECT count(*) FROM transfers WHERE kind = $1 AND ref = $2", kind, ref)


def notifications_of(mall, event_type: str) -> list[dict]:
    """Every notification of `event_type` the mall backend's sink received, verified and
    decrypted as the backend must (tests.support.open_notification)."""
    opened = [open_notification(headers, body, mall.gateway_public_key, mall.app.creds.apiv3_key)
              for headers, body in list(mall.sink.received)]
    return [event for event in opened if event["event_type"] == event_type]


# --- helpers for the hostile-input and fault tests ---------------------------------------

# Tables no request may change when it is refused; request_nonces is left out on purpose
# (a signed request's nonce is remembered before its body is judged, so a replay of it
# stays refused).
STATE_TABLES_SQL = """
SELECT tablename FROM pg_tables
 WHERE schemaname = 'public' AND tablename NOT IN ('request_nonces', 'schema_migrations')
 ORDER BY tablename
"""


# A test's own reads wait for a connection as long as a busy box needs; only the requests
# under test are bounded by the pool's acquire timeout (which a test may set to 300 ms).
CHECK_ACQUIRE_TIMEOUT_S = 30.0


async def all_table_counts(pool) -> dict[str, int]:
    """Rows of every state table: equal before and after means nothing was written."""
    async with pool.acquire(timeout=CHECK_ACQUIRE_TIMEOUT_S) as conn:
        names = [r["tablename"] for r in await conn.fetch(STATE_TABLES_SQL)]
        # Table names come from the catalogue, not from input; quoted as identifiers.
        return {name: await conn.fetchval(f'SELECT count(*) FROM "{name}"') for name in names}


async def raw_http(host: str, port: int, request: bytes, *, timeout_s: float = 10.0) -> Reply:
    """Send `request` byte for byte over a fresh connection (for what aiohttp's client will
    not send: undecodable header bytes, lying Content-Length); the parsed answer."""
    import asyncio

    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout_s)
    try:
        writer.write(request)
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout_s)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                name, value = line.split(":", 1)
                headers[name.strip()] = value.strip()
        length = int(headers.get("Content-Length", "0"))
        body = await asyncio.wait_for(reader.readexactly(length), timeout_s) if length else b""
        return Reply(status, body, headers)
    finally:
        writer.close()
