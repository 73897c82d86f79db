"""Statements against the ledger on seeded random histories: for random days and ranges,
each statement ties, its closing balances are the trial balance at the day's end, its net
is what the store's proceeds accounts gained, and days add up to their range."""

from __future__ import annotations

import random
from datetime import date, datetime, timedelta, timezone

import pytest

from gateway import invariants
from gateway.services import onboarding, statements
from ledger import accounts, repo
from ledger.statement_formats import rendered_csv, rendered_json_bytes, statement_csv, statement_json_bytes
from ledger.statements import period_bounds
from ledger.transfers import Move, transfer_of
from tests.support import add_tenant, on_pool, seed_ledger_history

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
        statement = await statements.statement(on_pool(db_pool), MALL, store, first, last)
        assert statement.ties, statement.tie_text
        from_at, to_at = period_bounds(first, last)
        before = dict((a, b) for a, _, b in await statements.trial_balance_at(on_pool(db_pool), MALL, from_at))
        after = dict((a, b) for a, _, b in await statements.trial_balance_at(on_pool(db_pool), MALL, to_at))
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
        days = [await statements.statement(on_pool(db_pool), MALL, store, d, d) for d in _days(first, last)]
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
    rows = await statements.trial_balance_at(on_pool(db_pool), MALL, at)
    assert {a: b for a, _, b in rows if b} == {a: b for a, b in expected.items() if b}
    assert sum(b for _, _, b in rows) == 0
    frozen = f"tenant:{STORES[0]}:frozen"
    assert await statements.balances_at(on_pool(db_pool), MALL, [frozen, "nope"], at) == [(frozen, "CNY", expected.get(frozen, 0))]
    now = await statements.balances_at(on_pool(db_pool), MALL, [frozen], None)
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
        together = await statements.statements_of_all_stores(on_pool(db_pool), MALL, first, last)
        assert [s.sub_mchid for s in together] == sorted([*STORES, "1900000299"])
        for batch in together:
            alone = await statements.statement(on_pool(db_pool), MALL, batch.sub_mchid, first, last)
            assert batch == alone
        assert sum(len(s.lines) for s in together) > 0
    assert history.items


# --- the database-shaped statements are the Python-built ones, byte for byte -------------

async def _python_built(pool, store: str, first: date, last: date) -> tuple[bytes, bytes]:
    built = await statements.statement(on_pool(pool), MALL, store, first, last)
    return statement_csv(built), statement_json_bytes(built)


@pytest.mark.parametrize("seed", [11, 12])
async def test_shaped_statements_are_the_python_built_ones_byte_for_byte(db_pool, seed):
    await _seed(db_pool, seed)
    await add_tenant(db_pool, MALL, "1900000299")  # no ledger history at all
    rng = random.Random(seed)
    for _ in range(3):
        first = rng.choice(DAYS)
        last = first + timedelta(days=rng.randrange(0, 3))
        together = await statements.rendered_of_all_stores(on_pool(db_pool), MALL, first, last, csv=True, json=True)
        assert [s.sub_mchid for s in together] == sorted([*STORES, "1900000299"])
        shared_out = await statements.rendered_of_all_stores(on_pool(db_pool), MALL, first, last, csv=True, json=True,
                                                             connections=2)
        assert shared_out == together
        for batch in together:
            expected = await _python_built(db_pool, batch.sub_mchid, first, last)
            assert (rendered_csv(batch), rendered_json_bytes(batch)) == expected
            csv_only = await statements.rendered(on_pool(db_pool), MALL, batch.sub_mchid, first, last, csv=True)
            json_only = await statements.rendered(on_pool(db_pool), MALL, batch.sub_mchid, first, last, json=True)
            assert (rendered_csv(csv_only), rendered_json_bytes(json_only)) == expected
            assert csv_only.json_lines is None and json_only.csv_lines is None
        assert sum(s.count for s in together) > 0


async def test_shaped_statements_write_awkward_ids_and_instants_as_python_does(db_pool):
    """Ids with what CSV quotes and JSON escapes, split purposes, a ref without a slash,
    instants with and without microseconds, a transfer touching two stores."""
    await onboarding.ensure_mall(db_pool, MALL, "wxmall", "Test mall")
    for store in STORES[:2]:
        await add_tenant(db_pool, MALL, store)
    a, b = STORES[:2]
    day = DAYS[0]
    start, _ = period_bounds(day, day)
    frozen, available = accounts.tenant_frozen(a), accounts.tenant_available(a)
    odd_ids = ['4200,"quoted"\r\nline', "tab\there\\back\x01ctl é 😀 \u2028", 'only"quote', "only\nnewline",
               "only\rreturn"]
    specs = accounts.mall_accounts() + accounts.tenant_accounts(a) + accounts.tenant_accounts(b) \
        + accounts.guide_accounts("G1") + accounts.receiver_accounts("1900009999")
    async with db_pool.acquire() as conn:
        await repo.ensure_accounts(conn, MALL, specs)
        for n, transaction_id in enumerate(odd_ids):
            no = f"Ab_*|-{n:03d}"
            at = start + timedelta(hours=n, microseconds=(0, 120_000, 7, 0, 1)[n])
            await repo.post_transfer(conn, MALL, transfer_of("payment", f"{a}/{no}", accounts.CNY, [
                Move("payer", frozen, 10_000 + n), Move(frozen, "channel:fees", 60)]), at)
            await conn.execute("SET session_replication_role = replica")  # the order row alone, no client
            await conn.execute(
                """INSERT INTO orders (mall_id, sub_mchid, out_trade_no, client_id, request_hash, sp_appid,
                                       description, total_fen, currency, notify_url, profit_sharing, fee_rate_bps,
                                       time_expire, state, transaction_id, success_at, created_at, next_check_at)
                   VALUES ($1, $2, $3, 'c', 'h', 'wx', 'd', $4, 'CNY', 'https://example.com/n', true, 60, $5,
                           'SUCCESS', $6, $5, $5, $5)""", MALL, a, no, 10_000 + n, at, transaction_id)
            await conn.execute("SET session_replication_role = origin")
        for n, (ref, purpose) in enumerate([(f"{a}/SPLIT_1", "guide_reward"), (f"{a}/SPLIT_2", "commission"),
                                            (f"{a}/SPLIT_3", "api")]):
            await repo.post_transfer(conn, MALL, transfer_of("split", ref, accounts.CNY, [
                Move(frozen, "guide:G1:rewards" if n == 0 else "mall:commission", 100)]),
                start + timedelta(hours=5, seconds=n))
            await conn.execute("SET session_replication_role = replica")
            await conn.execute(
                """INSERT INTO split_orders (mall_id, sub_mchid, out_order_no, out_trade_no, transaction_id, kind,
                                             purpose, request_hash, parts, state, created_at)
                   VALUES ($1, $2, $3, 'Ab_*|-000', $4, 'split', $5, 'h', '[]', 'FINISHED', $6)""",
                MALL, a, ref.split("/", 1)[1], odd_ids[n], purpose, start)
            await conn.execute("SET session_replication_role = origin")
        await repo.post_transfer(conn, MALL, transfer_of("odd_kind", "no-slash,at all", accounts.CNY, [
            Move(frozen, available, 50)]), start + timedelta(hours=6))
        await repo.post_transfer(conn, MALL, transfer_of("refund", f'{a}/R"q,\r\n\\x', accounts.CNY, [
            Move(available, "payer", 7)]), start + timedelta(hours=6, microseconds=500))
        await repo.post_transfer(conn, MALL, transfer_of("transfer_between_stores", f"{a}/X1", accounts.CNY, [
            Move(available, accounts.tenant_available(b), 3)]), start + timedelta(hours=7, microseconds=999_999))
    for store in (a, b):
        expected = await _python_built(db_pool, store, day, day)
        shaped = await statements.rendered(on_pool(db_pool), MALL, store, day, day, csv=True, json=True)
        assert (rendered_csv(shaped), rendered_json_bytes(shaped)) == expected
    together = await statements.rendered_of_all_stores(on_pool(db_pool), MALL, day, day, csv=True, json=True)
    assert [(rendered_csv(s), rendered_json_bytes(s)) for s in together] == [
        await _python_built(db_pool, store, day, day) for store in (a, b)]
    assert together[0].count == 11 and together[1].count == 1 and all(s.ties for s in together)
    assert odd_ids[1].encode() not in rendered_json_bytes(together[0])  # escaped, as JSON must
    assert '"`4200,""quoted""\r\nline"'.encode() in rendered_csv(together[0])  # quoted, as CSV must
    assert b'"time":"' + (start + timedelta(hours=1, microseconds=120_000)).isoformat().encode() in (
        rendered_json_bytes(together[0]))


async def test_connections_sharing_a_statement_run_read_one_snapshot(db_pool):
    await _seed(db_pool, 8)
    count = "SELECT count(*) FROM transfers WHERE mall_id = $1"
    async with db_pool.acquire() as first, db_pool.acquire() as second, db_pool.acquire() as writer:
        async with first.transaction(isolation="repeatable_read", readonly=True):
            snapshot = await repo.export_snapshot(first)
            before = await first.fetchval(count, MALL)
            # A payment lands (and commits) between the export and the second connection's start.
            assert await repo.post_transfer(writer, MALL, transfer_of("payment", f"{STORES[0]}/LATE01", accounts.CNY, [
                Move("payer", accounts.tenant_frozen(STORES[0]), 100)]), datetime(2026, 11, 3, tzinfo=timezone.utc))
            assert await writer.fetchval(count, MALL) == before + 1
            async with second.transaction(isolation="repeatable_read", readonly=True):
                await repo.use_snapshot(second, snapshot)
                assert await second.fetchval(count, MALL) == before
