"""A whole mall on loopback: the WeChat Pay emulator, the gateway, a mall backend's
notify endpoint, an admin and a mall app client, and three stores."""

from __future__ import annotations

from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp.test_utils import unused_port

from gateway import invariants
from gateway import signing
from gateway.api import SERVICES
from gateway.app import create_app, utc_now
from gateway.channel.credentials import ensure_local_credentials
from emulator import create_emulator_app
from emulator.config import EmulatorConfig
from gateway.settings import Settings
from tests.support import CHECK_ACQUIRE_TIMEOUT_S, NotificationSink, SignedClient, add_tenant, register_client

STORES = ("1900000201", "1900000202", "1900000203")


@pytest.fixture(scope="session")
def keys_dir(tmp_path_factory):
    """Channel and gateway keys, made once per run (RSA key generation is slow)."""
    return tmp_path_factory.mktemp("mallpay-keys")


@dataclass
class MallEnv:
    settings: Settings
    pool: object
    gateway_url: str
    emulator_url: str
    notify_url: str
    sink: NotificationSink
    app: SignedClient
    admin: SignedClient
    gateway_public_key: object
    session: aiohttp.ClientSession
    gateway_app: object
    emulator_app: object
    stores: tuple = STORES
    extra: dict = field(default_factory=dict)

    @property
    def gateway_key_id(self) -> str:
        return self.gateway_app[SERVICES].identity.public_key_id

    async def shopper_pays(self, sub_mchid: str, out_trade_no: str) -> dict:
        async with self.session.post(self.emulator_url + "/sandbox/transactions/pay",
                                     json={"sub_mchid": sub_mchid, "out_trade_no": out_trade_no}) as resp:
            assert resp.status == 200, await resp.text()
            return await resp.json()

    async def invariants(self) -> list[str]:
        async with self.pool.acquire(timeout=CHECK_ACQUIRE_TIMEOUT_S) as conn:
            return await invariants.check_invariants(conn)


@pytest.fixture
async def make_mall(database_url, aiohttp_server, keys_dir):
    """Build a mall; keyword arguments override gateway settings or emulator knobs."""
    envs: list[MallEnv] = []

    async def build(emulator: dict | None = None, clock=utc_now, **overrides) -> MallEnv:
        settings = Settings(data_dir=keys_dir)
        _, emulator_credentials = ensure_local_credentials(keys_dir, settings.sp_mchid)
        port = unused_port()
        knobs = {"notify_delay_ms": 0, "retry_time_scale": 0.001, "split_finish_delay_ms": 20,
                 "refund_finish_delay_ms": 20, "split_after_payment_s": 0,
                 "profitsharing_notify_url": f"http://127.0.0.1:{port}/channel/wechatpay/notify",
                 **(emulator or {})}
        emulator_server = await aiohttp_server(create_emulator_app(EmulatorConfig(emulator_credentials, **knobs),
                                                                   clock=clock))
        emulator_url = str(emulator_server.make_url("")).rstrip("/")
        presets = {"outbox_poll_interval_ms": 20, "notify_retry_schedule_s": (1, 1, 1),
                   "unpaid_check_interval_s": 0.2, "db_pool_size_max": 8, "jobs_poll_interval_ms": 50,
                   "split_first_try_after_s": 0, "split_retry_s": 1, "job_retry_base_s": 1,
                   "reconcile_daily": False}  # tests run reconciliations themselves
        settings = settings.with_(channel_url=emulator_url, public_url=f"http://127.0.0.1:{port}",
                                  **{**presets, **overrides})
        gateway_app = create_app(settings, database_url=database_url, clock=clock)
        gateway_server = await aiohttp_server(gateway_app, port=port)
        sink = NotificationSink()
        sink_server = await aiohttp_server(sink.app())
        svc = gateway_app[SERVICES]
        pool = svc.pool
        for sub_mchid in STORES:
            await add_tenant(pool, settings.sp_mchid, sub_mchid)
        session = aiohttp.ClientSession()
        gateway_url = f"http://127.0.0.1:{port}"
        gateway_public_key = svc.identity.private_key.public_key()
        admin = await register_client(pool, mall_id=settings.sp_mchid, role="admin", name="ops")
        mall_app = await register_client(pool, mall_id=settings.sp_mchid, role="mall_app", name="mini-program")
        env = MallEnv(
            settings=settings, pool=pool, gateway_url=gateway_url, emulator_url=emulator_url,
            notify_url=str(sink_server.make_url("/notify")), sink=sink,
            app=SignedClient(gateway_url, mall_app, gateway_public_key, session),
            admin=SignedClient(gateway_url, admin, gateway_public_key, session),
            gateway_public_key=gateway_public_key, session=session, gateway_app=gateway_app,
            emulator_app=emulator_server.app,
        )
        envs.append(env)
        return env

    yield build
    # Every e2e test ends with the ledger invariants (SPEC 4), so no test can forget them.
    problems = []
    for env in envs:
        problems += await env.invariants()
        await env.session.close()
    assert problems == [], problems


@pytest.fixture
async def mall(make_mall):
    return await make_mall()
