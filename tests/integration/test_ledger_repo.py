"""The database holds the ledger's invariants on its own, whatever code talks to it."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone

import asyncpg
import pytest

from gateway import invariants
from ledger import accounts, repo
from ledger.payments import channel_fee_fen, payment_transfer
from ledger.transfers import Move, transfer_of
from gateway.services import onboarding
from tests.support import add_tenant, wait_until

MALL = "1900000100"
STORE = "1900000201"
NOW = datetime(2026, 11, 22, 8, 0, tzinfo=timezone.utc)


@pytest.fixture
async def ledger_pool(db_pool):
    await onboarding.ensure_mall(db_pool, MALL, "wxmall", "Test mall")
    await add_tenant(db_pool, MALL, STORE)
    yield db_pool
    async with db_pool.acquire() as conn:
        assert await invariants.check_invariants(conn) == []


async def test_posted_payment_moves_balances(ledger_pool):
    transfer = payment_transfer(sub_mchid=STORE, out_trade_no="ORDER-1", total_fen=10_000,
                                fee_fen=channel_fee_fen(10_000, 60), profit_sharing=True)
    async with ledger_pool.acquire() as conn:
        assert await repo.post_transfer(conn, MALL, transfer, NOW) is not None
        assert await repo.post_transfer(conn, MALL, transfer, NOW) is None  # (kind, ref) once
        assert await repo.balance_fen(conn, MALL, accounts.tenant_frozen(STORE)) == 9_940
        assert await repo.balance_fen(conn, MALL, accounts.CHANNEL_FEES) == 60
        assert await repo.balance_fen(conn, MALL, accounts.PAYER) == -10_000


async def test_database_refuses_an_unbalanced_transfer(ledger_pool):
    async with ledger_pool.acquire() as conn:
        with pytest.raises(asyncpg.CheckViolationError, match="does not balance"):
            await conn.fetchval(repo.POST_TRANSFER, MALL, "payment", "bad/1", "CNY", NOW,
                                [accounts.PAYER, accounts.tenant_available(STORE)], [-100, 99])
        assert await conn.fetchval("SELECT count(*) FROM transfers") == 0


async def test_database_refuses_unknown_accounts_and_mixed_currencies(ledger_pool):
    async with ledger_pool.acquire() as conn:
        with pytest.raises(asyncpg.CheckViolationError, match="unknown account"):
            await conn.fetchval(repo.POST_TRANSFER, MALL, "payment", "bad/2", "CNY", NOW,
                                [accounts.PAYER, "tenant:nobody:available"], [-100, 100])
        with pytest.raises(asyncpg.CheckViolationError, match="unknown account or mixes"):
            await conn.fetchval(repo.POST_TRANSFER, MALL, "points", "bad/3", "PTS", NOW,
                                [accounts.PAYER, accounts.tenant_available(STORE)], [-100, 100])


async def test_a_bounded_account_cannot_go_negative(ledger_pool):
    overdraw = transfer_of("settlement", "bad/4", accounts.CNY,
                           [Move(accounts.tenant_available(STORE), accounts.tenant_settled(STORE), 1)])
    async with ledger_pool.acquire() as conn:
        with pytest.raises(asyncpg.CheckViolationError):
            await repo.post_transfer(conn, MALL, overdraw, NOW)
        assert await repo.balance_fen(conn, MALL, accounts.tenant_available(STORE)) == 0


async def test_the_ledger_is_append_only(ledger_pool):
    transfer = payment_transfer(sub_mchid=STORE, out_trade_no="ORDER-2", total_fen=500,
                                fee_fen=channel_fee_fen(500, 60), profit_sharing=False)
    async with ledger_pool.acquire() as conn:
        await repo.post_transfer(conn, MALL, transfer, NOW)
        for statement in ("UPDATE entries SET amount_fen = amount_fen + 1",
                          "DELETE FROM entries", "DELETE FROM transfers", "TRUNCATE entries CASCADE"):
            with pytest.raises(asyncpg.IntegrityConstraintViolationError, match="append-only"):
                await conn.execute(statement)
        trial = {name: balance for name, _, balance in await repo.trial_balance(conn, MALL)}
        assert sum(trial.values()) == 0 and trial[accounts.PAYER] == -500


async def test_invariant_check_reports_a_tampered_balance(ledger_pool):
    transfer = payment_transfer(sub_mchid=STORE, out_trade_no="ORDER-3", total_fen=700,
                                fee_fen=0, profit_sharing=False)
    async with ledger_pool.acquire() as conn:
        await repo.post_transfer(conn, MALL, transfer, NOW)
        await conn.execute("UPDATE accounts SET balance_fen = balance_fen + 1 WHERE account = $1",
                           accounts.tenant_available(STORE))
        problems = await invariants.check_invariants(conn)
        assert any(p.startswith("stored_balance_differs") for p in problems), problems
        await conn.execute("UPDATE accounts SET balance_fen = balance_fen - 1 WHERE account = $1",
                           accounts.tenant_available(STORE))


async def test_a_transfer_locks_the_balances_it_changes_in_account_order(db_pool, database_url):
    """Two transfers sharing two balances must take them in the same order, or each can
    hold one and wait for the other (a deadlock PostgreSQL ends by aborting one). Here the
    later account is stored first and the join is forced to read the table in stored
    order: the transfer must still wait for the earlier account before touching the later."""
    first, later = "1900000201", "1900000202"
    await onboarding.ensure_mall(db_pool, MALL, "wxmall", "Test mall")
    await add_tenant(db_pool, MALL, later)  # stored first
    await add_tenant(db_pool, MALL, first)
    first_account, later_account = accounts.tenant_available(first), accounts.tenant_available(later)
    holder, poster, prober = [await asyncpg.connect(database_url) for _ in range(3)]
    try:
        holder_tx = holder.transaction()
        await holder_tx.start()
        await holder.execute("SELECT 1 FROM accounts WHERE mall_id = $1 AND account = $2 FOR UPDATE",
                             MALL, first_account)
        for setting in ("enable_nestloop", "enable_indexscan", "enable_bitmapscan", "enable_indexonlyscan"):
            await poster.execute(f"SET {setting} = off")
        posting = asyncio.create_task(poster.fetchval(
            repo.POST_TRANSFER, MALL, "payment", f"{first}/LOCK-ORDER", "CNY", NOW,
            [accounts.PAYER, first_account, later_account], [-10, 5, 5]))
        poster_pid = poster.get_server_pid()

        async def poster_waits() -> bool:
            return await prober.fetchval("SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1",
                                         poster_pid)
        await wait_until(poster_waits, what="the transfer waiting for the held balance")
        async with prober.transaction():  # the later balance is still free: nothing took it out of order
            assert await prober.fetchval("SELECT 1 FROM accounts WHERE mall_id = $1 AND account = $2 "
                                         "FOR UPDATE NOWAIT", MALL, later_account) == 1
        await holder_tx.rollback()
        assert await asyncio.wait_for(posting, 10) is not None
        assert await repo.balance_fen(poster, MALL, later_account) == 5
    finally:
        for conn in (holder, poster, prober):
            await conn.close()
    async with db_pool.acquire() as conn:
        assert await invariants.check_invariants(conn) == []
