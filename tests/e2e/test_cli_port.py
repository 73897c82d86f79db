"""`mallpay serve --port P` next to `mallpay emulator`, without MALLPAY_PUBLIC_URL: the
channel is told to notify the port the gateway really listens on, so a payment is applied
from the channel's notification at once, not by the unpaid-order poll a minute later."""

from __future__ import annotations

import os
import subprocess
import sys

import aiohttp
import pytest
from aiohttp.test_utils import unused_port

from gateway import invariants
from gateway.identity import load_or_create_identity
from gateway.services import onboarding
from gateway.settings import Settings
from tests.conftest import REPO_ROOT
from tests.support import SignedClient, add_tenant, register_client, wait_until

START_WAIT_S = 60.0
NOTIFIED_WAIT_S = 20.0  # far below the unpaid-order poll (set to 10 minutes below)
STORE = "1900000201"


async def _answers(url: str, process) -> bool:
    try:
        async with aiohttp.ClientSession() as session, session.get(url) as resp:
            return resp.status < 500
    except aiohttp.ClientError:
        return process.poll() is not None  # a dead process ends the wait (asserted after)


@pytest.fixture
async def cli_stack(tmp_path, database_url, db_pool):
    settings = Settings()
    await onboarding.ensure_mall(db_pool, settings.sp_mchid, settings.sp_appid, settings.mall_name)
    await add_tenant(db_pool, settings.sp_mchid, STORE)
    emulator_port, gateway_port = unused_port(), unused_port()
    assert gateway_port != settings.port
    env = {key: value for key, value in os.environ.items() if key != "MALLPAY_PUBLIC_URL"}
    env.update(DATABASE_URL=database_url, MALLPAY_DATA_DIR=str(tmp_path), MALLPAY_LOG_LEVEL="warning",
               MALLPAY_CHANNEL_URL=f"http://127.0.0.1:{emulator_port}", MALLPAY_UNPAID_ORDER_QUERY_AFTER_S="600",
               MALLPAY_EMULATOR_NOTIFY_DELAY_MS="0")
    processes = []
    try:
        for argv, url in ((["emulator", "--port", str(emulator_port)], f"http://127.0.0.1:{emulator_port}/"),
                          (["serve", "--port", str(gateway_port), "--no-migrate"],
                           f"http://127.0.0.1:{gateway_port}/health")):
            process = subprocess.Popen([sys.executable, "-m", "gateway.cli", *argv], cwd=REPO_ROOT, env=env,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            processes.append(process)
            await wait_until(lambda: _answers(url, process), timeout_s=START_WAIT_S, what=f"mallpay {argv[0]}")
            assert process.poll() is None, process.stderr.read().decode()[-2000:]
        yield settings, f"http://127.0.0.1:{gateway_port}", f"http://127.0.0.1:{emulator_port}", tmp_path
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()


async def test_payment_is_notified_to_the_port_the_gateway_listens_on(cli_stack, db_pool):
    settings, gateway_url, emulator_url, data_dir = cli_stack
    creds = await register_client(db_pool, mall_id=settings.sp_mchid, role="mall_app")
    identity = load_or_create_identity(None, data_dir)
    async with aiohttp.ClientSession() as session:
        client = SignedClient(gateway_url, creds, identity.private_key.public_key(), session)
        created = await client.post("/v3/pay/partner/transactions/jsapi", {
            "sp_appid": settings.sp_appid, "sp_mchid": settings.sp_mchid, "sub_mchid": STORE,
            "description": "Tea", "out_trade_no": "PORT-0001",
            "notify_url": f"http://127.0.0.1:{unused_port()}/notify", "amount": {"total": 800, "currency": "CNY"},
            "payer": {"sp_openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"}})
        assert created.status == 200, created.json
        async with session.post(emulator_url + "/sandbox/transactions/pay",
                                json={"sub_mchid": STORE, "out_trade_no": "PORT-0001"}) as resp:
            assert resp.status == 200, await resp.text()

    async def applied() -> bool:
        async with db_pool.acquire() as conn:
            return await conn.fetchval("SELECT state = 'SUCCESS' FROM orders WHERE out_trade_no = 'PORT-0001'")

    await wait_until(applied, timeout_s=NOTIFIED_WAIT_S, what="the channel's notification to reach the gateway")
    async with db_pool.acquire() as conn:
        assert await invariants.check_invariants(conn) == []
