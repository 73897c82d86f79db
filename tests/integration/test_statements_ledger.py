"""Statements against the ledger on seeded random histories: for random days and ranges,
each statement ties, its closing balances are the trial balance at the day's end, its net
is what the store's proceeds accounts gained, and days add up to their range."""

from __future__ import annotations

import random
from datetime import date, datetime, timedelta, timezone

import pytest

from gateway import invariants
from gateway.services import statements
from ledger import repo
from ledger.statements import period_bounds
from tests.support import add_tenant, seed_ledger_history

MALL = "1900000100"
STORES = ["1900000201", "1900000202", "1900000203"]
FIRST_DAY = date(2026, 11, 1)
DAYS = [FIRST_DAY + timedelta(days=n) for n in range(6)]


async def _seed(pool, seed: int):
    return await seed_ledger_history(pool, MALL, STORES, DAYS, seed=seed, orders_per_day=12)


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_statements_tie_to_the_ledger_on_random_days(db_pool, seed):
    history = await _seed(db_pool, seed)
    rng = random.Random(seed)
    for _ in range(4):
        store = rng.choice(STORES)
        first = rng.choice(DAYS)
        last = min(first + timedelta(days=rng.randint(0, 3)), DAYS[-1])
        statement = await statements.statement(db_pool, MALL, store, first, last)
        assert statement.ties, statement.tie_text
        from_at, to_at = period_bounds(first, last)
        before = dict((a, b) for a, _, b in await statements.trial_balance_at(db_pool, MALL, from_at))
        after = dict((a, b) for a, _, b in await statements.trial_balance_at(db_pool, MALL, to_at))
        for tie in statement.accounts:
            assert (tie.opening_fen, tie.closing_fen) == (before[tie.account], after[tie.account])
        proceeds = [a for a in after if a.startswith(f"tenant:{store}:") and not a.endswith(":settled")]
        assert statement.totals_fen["net"] == sum(after[a] - before[a] for a in proceeds)
        settled = f"tenant:{store}:settled"
        assert statement.totals_fen["payout"] == after[settled] - before[settled]
        # Gross is what the shoppers paid this store less what was refunded to them, from the history itself.
        expected_gross = sum(-amount for transfer, at in history.items if from_at <= at < to_at
                             and transfer.ref.startswith(store + "/")
                             for account, amount in zip(transfer.accounts, transfer.amounts_fen) if account == "payer")
        assert statement.totals_fen["gross"] == expected_gross
        assert len(statement.lines) == sum(1 for t, at in history.items if from_at <= at < to_at
                                           and any(a.startswith(f"tenant:{store}:") for a in t.accounts))
        days = [await statements.statement(db_pool, MALL, store, d, d) for d in _days(first, last)]
        for column, total in statement.totals_fen.items():
            assert total == sum(day.totals_fen[column] for day in days), column
    async with db_pool.acquire() as conn:
        assert await invariants.check_invariants(conn) == []


async def test_balances_at_an_instant(db_pool):
    history = await _seed(db_pool, 7)
    at = datetime(2026, 11, 3, 4, 0, tzinfo=timezone.utc)
    expected: dict[str, int] = {}
    for transfer, when in history.items:
        if when < at:
            for account, amount in zip(transfer.accounts, transfer.amounts_fen):
                expected[account] = expected.get(account, 0) + amount
    rows = await statements.trial_balance_at(db_pool, MALL, at)
    assert {a: b for a, _, b in rows if b} == {a: b for a, b in expected.items() if b}
    assert sum(b for _, _, b in rows) == 0
    frozen = f"tenant:{STORES[0]}:frozen"
    assert await statements.balances_at(db_pool, MALL, [frozen, "nope"], at) == [(frozen, "CNY", expected.get(frozen, 0))]
    now = await statements.balances_at(db_pool, MALL, [frozen], None)
    async with db_pool.acquire() as conn:
        assert now[0][2] == await repo.balance_fen(conn, MALL, frozen)


def _days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


@pytest.mark.parametrize("seed", [4, 5])
async def test_all_stores_at_once_equal_each_store_alone(db_pool, seed):
    history = await _seed(db_pool, seed)
    await add_tenant(db_pool, MALL, "1900000299")  # a store with no ledger history at all
    rng = random.Random(seed)
    for _ in range(3):
        first = rng.choice(DAYS)
        last = first + timedelta(days=rng.randrange(0, 3))
        together = await statements.statements_of_all_stores(db_pool, MALL, first, last)
        assert [s.sub_mchid for s in together] == sorted([*STORES, "1900000299"])
        for batch in together:
            alone = await statements.statement(db_pool, MALL, batch.sub_mchid, first, last)
            assert batch == alone
        assert sum(len(s.lines) for s in together) > 0
    assert history.items
