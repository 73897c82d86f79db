"""Nonces are remembered many per statement, and a replay is refused however requests race."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone

import pytest

from gateway.nonces import NonceBook

NOW = datetime(2026, 11, 30, 8, 0, tzinfo=timezone.utc)


class CountingPool:
    """The real pool, counting the statements that recorded nonces."""

    def __init__(self, pool):
        self.pool = pool
        self.statements = 0

    def acquire(self):
        self.statements += 1
        return self.pool.acquire()


async def test_concurrent_requests_share_statements_and_each_nonce_passes_once(db_pool):
    pool = CountingPool(db_pool)
    book = NonceBook(batch_max=8)
    seen = [("c1", f"n{i}") for i in range(30)] + [("c2", "n0"), ("c1", "n0"), ("c1", "n0")]
    answers = await asyncio.gather(*(book.remember(pool, c, n, NOW) for c, n in seen))
    assert answers == [True] * 31 + [False, False]
    assert pool.statements < len(seen)            # batched: at most 8 per statement
    assert pool.statements >= len(seen) / 8
    assert await book.remember(pool, "c1", "n5", NOW) is False   # later replay
    assert await book.remember(pool, "c1", "n-new", NOW) is True
    async with db_pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM request_nonces") == 32


async def test_a_failed_statement_fails_its_requests_and_the_next_ones_still_pass(db_pool):
    class BrokenOnce(CountingPool):
        def acquire(self):
            self.statements += 1
            if self.statements == 1:
                raise ConnectionError("database went away")
            return self.pool.acquire()

    pool = BrokenOnce(db_pool)
    book = NonceBook(batch_max=4)
    with pytest.raises(ConnectionError):
        await book.remember(pool, "c1", "a", NOW)
    assert await book.remember(pool, "c1", "a", NOW) is True
