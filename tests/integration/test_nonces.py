"""Nonces are remembered many per statement, and a replay is refused however requests race."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import pytest

from gateway.errors import SignError
from gateway.nonces import NonceBook, RequestNonce
from gateway.repo import orders as orders_repo
from gateway.services import onboarding
from tests.support import add_tenant

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


# -- a nonce recorded by the request's own first statement (gateway.repo.clients.REQUEST_NONCE_CTES) --

MALL, STORE = "1900000100", "1900000201"


def _order_values(out_trade_no: str) -> dict:
    return {"mall_id": MALL, "sub_mchid": STORE, "out_trade_no": out_trade_no, "client_id": "c1",
            "request_hash": "h", "sp_appid": "wxmall", "sub_appid": None, "description": "tea",
            "total_fen": 1000, "currency": "CNY", "payer_sp_openid": "oShopper", "payer_sub_openid": None,
            "notify_url": "https://mall.example.com/n", "attach": None, "profit_sharing": False,
            "time_expire": NOW + timedelta(hours=2), "mall_info": {}, "created_at": NOW,
            "next_check_at": NOW + timedelta(minutes=1)}


async def _orders(pool) -> list[str]:
    async with pool.acquire() as conn:
        return [r["out_trade_no"] for r in await conn.fetch("SELECT out_trade_no FROM orders ORDER BY 1")]


async def _until_waiting_on_locks(pool, backends: int) -> None:
    async with pool.acquire() as conn:
        for _ in range(100):
            waiting = await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'")
            if waiting >= backends:
                return
            await asyncio.sleep(0.05)
    raise AssertionError(f"fewer than {backends} statements waiting on a lock")


async def _mall_with_store(pool) -> None:
    await onboarding.ensure_mall(pool, MALL, "wxmall", "Test mall")
    await add_tenant(pool, MALL, STORE)


async def test_an_order_statement_records_its_nonce_and_a_replay_changes_nothing(db_pool):
    await _mall_with_store(db_pool)
    async with db_pool.acquire() as conn:
        nonce = RequestNonce("c1", "n1", NOW)
        row = await orders_repo.insert_order(conn, _order_values("T00001"), nonce)
        assert (row["out_trade_no"], nonce.spent) == ("T00001", True)
        with pytest.raises(SignError) as replay:
            await orders_repo.insert_order(conn, _order_values("T00002"), RequestNonce("c1", "n1", NOW))
        assert replay.value.reason == "nonce_replayed"
        with pytest.raises(SignError):
            await orders_repo.order(conn, MALL, STORE, "T00001", RequestNonce("c1", "n1", NOW))
        read = RequestNonce("c1", "n2", NOW)
        assert (await orders_repo.order(conn, MALL, STORE, "T00001", read))["out_trade_no"] == "T00001"
        assert await orders_repo.order(conn, MALL, STORE, "T00009", RequestNonce("c1", "n3", NOW)) is None
        # The book and the statements share one record: a nonce either has seen is a replay.
        assert await NonceBook(batch_max=8).remember(db_pool, "c1", "n2", NOW) is False
        assert await NonceBook(batch_max=8).remember(db_pool, "c1", "n4", NOW) is True
        with pytest.raises(SignError):
            await orders_repo.order_by_transaction_id(conn, MALL, STORE, "4200", RequestNonce("c1", "n4", NOW))
        # Another client's nonce is its own.
        assert await orders_repo.insert_order(conn, _order_values("T00003"), RequestNonce("c2", "n1", NOW)) is not None
    assert await _orders(db_pool) == ["T00001", "T00003"]


@pytest.mark.parametrize("first_commits", [True, False])
async def test_two_requests_with_one_nonce_at_once_one_has_effect(db_pool, first_commits):
    """The second statement waits on the first's uncommitted nonce: refused if it commits,
    recorded itself if it rolls back."""
    await _mall_with_store(db_pool)
    async with db_pool.acquire() as first, db_pool.acquire() as second:
        transaction = first.transaction()
        await transaction.start()
        await orders_repo.insert_order(first, _order_values("A00001"), RequestNonce("c1", "same", NOW))
        racing = asyncio.create_task(orders_repo.insert_order(second, _order_values("B00001"),
                                                              RequestNonce("c1", "same", NOW)))
        booked = asyncio.create_task(NonceBook(batch_max=8).remember(db_pool, "c1", "same", NOW))
        await _until_waiting_on_locks(db_pool, 2)  # both wait on the first's nonce
        assert not racing.done() and not booked.done()
        if first_commits:
            await transaction.commit()
            with pytest.raises(SignError):
                await racing
            assert await booked is False
            assert await _orders(db_pool) == ["A00001"]
        else:
            await transaction.rollback()
            inserted, booked_fresh = await asyncio.gather(racing, booked, return_exceptions=True)
            racing_fresh = not isinstance(inserted, SignError)
            assert racing_fresh != booked_fresh, (inserted, booked_fresh)  # one records it, the other finds it
            assert await _orders(db_pool) == (["B00001"] if racing_fresh else [])
