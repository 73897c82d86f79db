"""`mallpay serve --workers 2`: two gateway processes on one port, sharing PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys

import aiohttp
import psutil
import pytest
from aiohttp.test_utils import unused_port

from gateway import signing
from gateway.identity import load_or_create_identity
from gateway.services import onboarding
from gateway.settings import Settings
from tests.conftest import REPO_ROOT
from tests.support import SignedClient, register_client, wait_until

WORKERS = 2
START_WAIT_S = 60.0
STOP_WAIT_S = 30.0


@pytest.fixture
async def served(tmp_path, database_url, db_pool):
    settings = Settings()
    await onboarding.ensure_mall(db_pool, settings.sp_mchid, settings.sp_appid, settings.mall_name)
    port = unused_port()
    env = {**os.environ, "DATABASE_URL": database_url, "MALLPAY_DATA_DIR": str(tmp_path),
           "MALLPAY_CHANNEL_URL": f"http://127.0.0.1:{unused_port()}", "MALLPAY_LOG_LEVEL": "warning"}
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "serve", "--port", str(port), "--no-migrate",
         "--workers", str(WORKERS)], cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        base_url = f"http://127.0.0.1:{port}"

        async def healthy() -> bool:
            try:
                async with aiohttp.ClientSession() as session, session.get(base_url + "/health") as resp:
                    return resp.status == 200
            except aiohttp.ClientError:
                return process.poll() is not None  # a dead parent ends the wait (asserted below)

        await wait_until(healthy, timeout_s=START_WAIT_S, what="the gateway to answer")
        assert process.poll() is None, process.stderr.read().decode()[-2000:]

        async def all_listening() -> bool:
            return len(_listening(process, port)) == WORKERS

        await wait_until(all_listening, timeout_s=START_WAIT_S, what="every worker to listen")
        yield process, port, base_url, tmp_path, settings
    finally:
        children = _children(process)  # read before the parent goes: then it names none
        if process.poll() is None:
            process.kill()
            process.wait()
        for child in children:
            if child.is_running():
                child.kill()


def _listening(process, port: int) -> list[psutil.Process]:
    return [child for child in _children(process)
            if any(c.status == psutil.CONN_LISTEN and c.laddr.port == port
                   for c in child.net_connections(kind="tcp"))]


def _children(process) -> list[psutil.Process]:
    """The gateway workers (not multiprocessing's resource tracker)."""
    try:
        children = psutil.Process(process.pid).children()
        return [c for c in children if any("spawn_main" in part for part in c.cmdline())]
    except psutil.NoSuchProcess:
        return []


async def test_workers_share_the_port_and_the_replay_window(served, db_pool):
    process, port, base_url, data_dir, settings = served
    assert len(_children(process)) == len(_listening(process, port)) == WORKERS

    identity = load_or_create_identity(None, data_dir)  # made once by the parent for all workers
    creds = await register_client(db_pool, mall_id=settings.sp_mchid, role="mall_app")
    target = f"/v3/pay/partner/transactions/out-trade-no/NOSUCHORDER?sp_mchid={settings.sp_mchid}&sub_mchid=1900000201"
    # A new connection per request, so the kernel spreads them over both workers; one
    # signed request replayed: only its first copy passes, whichever worker gets it.
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:
        client = SignedClient(base_url, creds, identity.private_key.public_key(), session)
        authorization = client.authorization("GET", target, b"")
        replies = [await client.request("GET", target, authorization=authorization) for _ in range(8)]
        fresh = await client.get(target)
    assert [r.status for r in replies] == [404] + [401] * 7
    assert {r.json["detail"].get("reason") for r in replies[1:]} == {"nonce_replayed"}
    assert fresh.status == 404


async def test_stopping_the_parent_stops_every_worker(served):
    process, *_ = served
    children = _children(process)
    process.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(process.wait, STOP_WAIT_S) == 0
    gone, alive = psutil.wait_procs(children, timeout=STOP_WAIT_S)
    assert alive == []


async def test_workers_stop_when_the_parent_is_killed(served):
    # SIGKILL gives the parent no chance to stop its workers; they notice it is gone.
    process, *_ = served
    children = _children(process)
    process.kill()
    await asyncio.to_thread(process.wait, STOP_WAIT_S)
    gone, alive = await asyncio.to_thread(psutil.wait_procs, children, STOP_WAIT_S)
    assert alive == []
    assert len(gone) == WORKERS


def test_signing_key_is_made_before_workers_start(tmp_path):
    # The parent makes the key; a worker loading it later finds the same one.
    first = load_or_create_identity(None, tmp_path)
    again = load_or_create_identity(None, tmp_path)
    assert first.public_key_id == again.public_key_id
    assert signing.verify(again.private_key.public_key(), b"m", first.sign(b"m"))
