"""Exports re-read equal the ledger: CSV and JSON Lines entry for entry, beancount through
bean-check and beancount's own balances; and an export taken while payments keep landing
is one balanced snapshot."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import subprocess
import sys
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

from beancount import loader
from beancount.core import realization

from gateway import invariants
from gateway.services import exports, statements
from ledger import accounts, repo
from ledger.export import CSV_HEADER, beancount_names
from ledger.payments import channel_fee_fen, payment_transfer
from ledger.statements import period_bounds
from ledger.transfers import Move, transfer_of
from tests.support import on_pool, seed_ledger_history

MALL = "1900000100"
STORES = ["1900000201", "1900000202", "1900000203"]
DAYS = [date(2026, 11, 1) + timedelta(days=n) for n in range(4)]


async def _seeded(pool, seed: int = 11):
    history = await seed_ledger_history(pool, MALL, STORES, DAYS, seed=seed, orders_per_day=15)
    async with pool.acquire() as conn:
        # A guide id that is no valid beancount component, and a points account.
        await repo.ensure_accounts(conn, MALL, accounts.guide_accounts("g_x-1") + [
            accounts.AccountSpec("points:issued", accounts.PTS, accounts.Bound.ANY),
            accounts.AccountSpec("points:member:00ab12cd34ef5678", accounts.PTS, accounts.Bound.NON_NEGATIVE)])
        await repo.post_transfer(conn, MALL, transfer_of("points_earn", "1900000201/P1", accounts.PTS, [
            Move("points:issued", "points:member:00ab12cd34ef5678", 120)]), datetime(2026, 11, 2, 5, tzinfo=timezone.utc))
    return history


async def _export(pool, fmt: str, from_at, to_at) -> bytes:
    chunks: list[bytes] = []

    async def write(chunk: bytes) -> None:
        chunks.append(chunk)

    await exports.export(on_pool(pool), MALL, from_at, to_at, fmt, write)
    return b"".join(chunks)


def _entries_of(history, from_at, to_at) -> list[tuple[str, str, int]]:
    return sorted((t.ref, a, f) for t, at in history.items if from_at <= at < to_at
                  for a, f in zip(t.accounts, t.amounts_fen))


async def test_csv_and_jsonl_reread_equal_the_ledger(db_pool):
    history = await _seeded(db_pool)
    from_at, to_at = period_bounds(DAYS[1], DAYS[2])
    async with db_pool.acquire() as conn:
        ledger_rows = await conn.fetch(
            "SELECT t.transfer_id, t.kind, t.ref, t.currency, e.account, e.amount_fen FROM transfers t "
            "JOIN entries e USING (mall_id, transfer_id) WHERE t.created_at >= $1 AND t.created_at < $2",
            from_at, to_at)
    expected = sorted((r["transfer_id"], r["kind"], r["ref"], r["currency"], r["account"], r["amount_fen"])
                      for r in ledger_rows)
    assert expected and len({r[0] for r in expected}) > 20
    rows = list(csv.DictReader(io.StringIO((await _export(db_pool, "csv", from_at, to_at)).decode())))
    assert sorted((int(r["transfer_id"]), r["kind"], r["ref"], r["currency"], r["account"], int(r["amount_fen"]))
                  for r in rows) == expected
    assert list(rows[0]) == list(CSV_HEADER)
    assert sorted((r["ref"], r["account"], int(r["amount_fen"])) for r in rows
                  if r["currency"] == "CNY") == _entries_of(history, from_at, to_at)
    lines = (await _export(db_pool, "jsonl", from_at, to_at)).decode().splitlines()
    transfers = [json.loads(line) for line in lines]
    assert sorted((t["transfer_id"], t["kind"], t["ref"], t["currency"], p["account"], p["amount_fen"])
                  for t in transfers for p in t["postings"]) == expected
    order = [(t["created_at"], t["transfer_id"]) for t in transfers]
    assert order == sorted(order) and len(order) == len({r[0] for r in expected})


async def test_beancount_passes_bean_check_and_equals_the_trial_balance(db_pool, tmp_path: Path):
    await _seeded(db_pool)
    from_at, to_at = period_bounds(DAYS[1], DAYS[3])
    path = tmp_path / "ledger.beancount"
    path.write_bytes(await _export(db_pool, "beancount", from_at, to_at))
    checked = subprocess.run([str(Path(sys.executable).with_name("bean-check")), str(path)],
                             capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    entries, errors, _ = loader.load_file(str(path))
    assert errors == []
    real = realization.realize(entries)
    trial = await statements.trial_balance_at(on_pool(db_pool), MALL, to_at)
    names = beancount_names([a for a, _, _ in trial])
    for account, currency, balance in trial:
        node = realization.get(real, names[account])
        units = node.balance.get_currency_units(currency).number if node is not None else Decimal(0)
        expected = Decimal(balance) / 100 if currency == "CNY" else Decimal(balance)
        assert units == expected, (account, units, expected)
    assert any(currency == "PTS" and balance for _, currency, balance in trial)
    assert "Liabilities:Guide:X675F782D31:Rewards" in path.read_text()


async def test_an_export_taken_while_payments_flow_is_balanced(db_pool):
    await _seeded(db_pool)
    far = datetime(2100, 1, 1, tzinfo=timezone.utc)
    stop = asyncio.Event()

    async def shoppers():
        n = 0
        async with db_pool.acquire() as conn:
            while not stop.is_set():
                n += 1
                async with conn.transaction():
                    await repo.post_transfer(conn, MALL, payment_transfer(
                        sub_mchid=STORES[n % 3], out_trade_no=f"LIVE{n:08d}", total_fen=1000 + n, fee_fen=channel_fee_fen(1000 + n, 60),
                        profit_sharing=True), datetime.now(timezone.utc))
                await asyncio.sleep(0)
        return n

    paying = asyncio.create_task(shoppers())
    await asyncio.sleep(0.2)
    for fmt in ("csv", "jsonl"):
        body = (await _export(db_pool, fmt, datetime(2000, 1, 1, tzinfo=timezone.utc), far)).decode()
        if fmt == "csv":
            amounts = [int(r["amount_fen"]) for r in csv.DictReader(io.StringIO(body))]
        else:
            amounts = [p["amount_fen"] for line in body.splitlines() for p in json.loads(line)["postings"]
                       if json.loads(line)["currency"] == "CNY"]
        assert amounts and sum(amounts) == 0
        await asyncio.sleep(0.05)
    stop.set()
    paid = await paying
    assert paid > 3, "payments kept landing while the exports ran"
    async with db_pool.acquire() as conn:
        assert await invariants.check_invariants(conn) == []
