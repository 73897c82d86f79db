"""Closing the pool never hangs on a connection that is still busy (gateway.db.BoundedPool)."""

from __future__ import annotations

import asyncio
import time

import asyncpg

import gateway.db
from gateway.db import create_pool


async def test_closing_cuts_a_connection_still_busy_after_the_timeout(database_url, monkeypatch):
    monkeypatch.setattr(gateway.db, "CLOSE_TIMEOUT_S", 0.3)
    pool = await create_pool(database_url, min_size=1, max_size=2, statement_timeout_ms=60_000)
    conn = await pool.acquire()
    busy = asyncio.create_task(conn.fetchval("SELECT pg_sleep(30)"))
    await asyncio.sleep(0.1)
    began = time.monotonic()
    await pool.close()  # asyncpg alone waits for the query and the release, i.e. forever
    assert time.monotonic() - began < 5
    [cut] = await asyncio.gather(busy, return_exceptions=True)
    assert isinstance(cut, asyncpg.ConnectionDoesNotExistError), cut


async def test_closing_an_idle_pool_is_graceful(database_url):
    pool = await create_pool(database_url, min_size=2, max_size=2, statement_timeout_ms=60_000)
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT 1") == 1
    await pool.close()
    assert pool._closed
