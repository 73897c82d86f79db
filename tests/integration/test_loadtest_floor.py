"""loadtests/bench_stack_floor.py measures what it says: its driver's payments are signed
exchanges the bare server and the stub channel check and accept, the bare server makes
exactly the gateway's signatures and verifications per payment (the floor it is compared
with), and the measured window counts the crypto of the payments it counts."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from gateway import signing
from gateway.identity import GatewayIdentity

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "loadtests"))

import bench_stack_floor as floor  # noqa: E402  (loadtests/ is a folder of scripts, not a package)
from run_load import GATEWAY_SIGNS_PER_PAYMENT, GATEWAY_VERIFIES_PER_PAYMENT  # noqa: E402
from stack import free_port  # noqa: E402

PAYMENTS = 3
# The driver signs its create and query requests and verifies both answers and the notification.
DRIVER_SIGNS_PER_PAYMENT = 2
DRIVER_VERIFIES_PER_PAYMENT = 3


@pytest.fixture(scope="module")
def keys() -> floor.Keys:
    return floor.Keys.generate()


async def _serve(app: web.Application, port: int) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


@contextlib.asynccontextmanager
async def _bench(keys: floor.Keys, dsn: str | None):
    """The stub channel, the bare server and the driver with its receiver, in this process
    on their own ports."""
    channel_port, server_port, receiver_port = free_port(), free_port(), free_port()
    server_url, notify_url = f"http://127.0.0.1:{server_port}", f"http://127.0.0.1:{receiver_port}/notify"
    channel = floor.StubChannel(keys)
    server = floor.BareServer(keys, f"http://127.0.0.1:{channel_port}", server_url, notify_url)
    runners = [await _serve(floor.stub_channel_app(channel), channel_port),
               await _serve(floor.bare_app(server, dsn), server_port)]
    async with aiohttp.ClientSession() as session:
        driver = floor.Driver(keys, server_url, notify_url, session)
        runners.append(await _serve(driver.receiver_app(), receiver_port))
        try:
            yield SimpleNamespace(channel=channel, server=server, driver=driver, server_url=server_url,
                                  notify_url=notify_url, session=session)
        finally:
            for runner in reversed(runners):
                await runner.cleanup()


@pytest.fixture
async def bench(keys):
    async with _bench(keys, None) as running:
        yield running


@pytest.fixture
async def bench_db(keys, database_url):
    await floor.reset_tables(database_url)
    async with _bench(keys, database_url) as running:
        yield running, database_url


async def test_a_payment_costs_the_bare_server_the_gateways_signatures_and_verifications(bench):
    for _ in range(PAYMENTS):
        await bench.driver.pay()
    assert _counts(bench.server.tally) == (GATEWAY_SIGNS_PER_PAYMENT * PAYMENTS,
                                           GATEWAY_VERIFIES_PER_PAYMENT * PAYMENTS)
    assert _counts(bench.driver.tally) == (DRIVER_SIGNS_PER_PAYMENT * PAYMENTS, DRIVER_VERIFIES_PER_PAYMENT * PAYMENTS)
    assert bench.server.tally["crypto_ms"] > 0
    assert bench.channel.refused == 0


async def test_a_request_signed_with_another_key_is_refused(bench, keys):
    # Another private key under the caller's key id: only the signature can tell.
    forged = replace(keys, caller=GatewayIdentity(signing.generate_private_key(), keys.caller.public_key_id))
    impostor = floor.Driver(forged, bench.server_url, bench.notify_url, bench.session)
    with pytest.raises(AssertionError, match="answered 401"):
        await impostor.pay()
    assert _counts(bench.server.tally) == (0, 1)


async def test_the_measured_window_counts_the_crypto_of_the_payments_it_counts(bench):
    users = 2
    result = await bench.driver.drive(users=users, seconds=0.3, server_pid=None)
    assert result.failures == 0 and result.errors == []
    assert result.warmup_payments == users * floor.WARMUP_PAYMENTS_PER_USER
    assert result.payments > 0
    assert result.server_signs == GATEWAY_SIGNS_PER_PAYMENT * result.payments
    assert result.server_verifies == GATEWAY_VERIFIES_PER_PAYMENT * result.payments
    assert bench.server.tally["signs"] == GATEWAY_SIGNS_PER_PAYMENT * (result.payments + result.warmup_payments)


def _counts(tally: Counter) -> tuple[int, int]:
    return tally["signs"], tally["verifies"]


async def test_with_a_database_a_payment_makes_its_statements(bench_db):
    bench, database_url = bench_db
    for _ in range(PAYMENTS):
        await bench.driver.pay()
    expected = floor.DB_STATEMENTS_PER_PAYMENT * PAYMENTS
    for _ in range(50):  # the delivery mark follows the receiver's answer
        if bench.server.tally["statements"] == expected:
            break
        await asyncio.sleep(0.02)
    assert bench.server.tally["statements"] == expected
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT create_response IS NOT NULL AND trade IS NOT NULL AND delivered AS done "
                                "FROM floor_orders")
        nonces = await conn.fetchval("SELECT count(*) FROM floor_nonces")
    finally:
        await conn.close()
    assert [r["done"] for r in rows] == [True] * PAYMENTS
    assert nonces == PAYMENTS
