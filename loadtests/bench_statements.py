"""Statements for a busy mall's day: every store's statement, one after the other.

    python loadtests/bench_statements.py [--stores 200] [--orders 100000] [--concurrency N | --all-stores]
                                         [--connections N] [--rounds 3] [--reference]
                                         [--server-dsn postgresql://...]

A fresh database gets one China-time day of a mall (loadtests/ledger_history.py, seeded):
payments, guide rewards, commission and brand splits, split returns, unfreezes, refunds and
payouts, posted with the gateway's own posting functions, plus the orders, refunds and
split orders the statements label their lines from. The ledger rows are loaded with COPY
(the benchmark measures statements, not posting). Then each store's statement of the day
is built as the API builds it (gateway.services.statements.rendered: the database writes
the lines) as CSV and JSON; reported: total and slowest seconds, lines, and whether every
statement ties. `--reference` also runs the Python-built path (statements.statement with
ledger.statement_formats.statement_csv / statement_json_bytes) in each round, right after,
checks that both give the same bytes for every store, and reports the ratio of medians.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from contextlib import ExitStack
from datetime import date
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from stack import fresh_database, start_postgres  # noqa: E402

from gateway.app import database_services  # noqa: E402
from gateway.db.migrate import migrate  # noqa: E402
from gateway.services import onboarding, statements  # noqa: E402
from gateway.settings import Settings  # noqa: E402
from ledger import repo as ledger_repo  # noqa: E402
from ledger.statement_formats import (rendered_csv, rendered_json_bytes, statement_csv,  # noqa: E402
                                      statement_json_bytes)
from loadtests.ledger_history import build_history  # noqa: E402

MALL = "1900000100"
DAY = date(2026, 11, 30)

STAGE = """
CREATE TEMP TABLE stage_transfers (transfer_id bigint, kind text, ref text, created_at timestamptz);
CREATE TEMP TABLE stage_entries (transfer_id bigint, account text, amount_fen bigint)
"""
LOAD = [
    """INSERT INTO transfers (mall_id, transfer_id, kind, ref, currency, created_at) OVERRIDING SYSTEM VALUE
       SELECT $1, transfer_id, kind, ref, 'CNY', created_at FROM stage_transfers""",
    """INSERT INTO entries (mall_id, transfer_id, account, amount_fen, currency)
       SELECT $1, transfer_id, account, amount_fen, 'CNY' FROM stage_entries""",
    # What the statement's labels come from: the orders, refunds and split orders.
    """INSERT INTO orders (mall_id, sub_mchid, out_trade_no, client_id, request_hash, sp_appid, description,
                          total_fen, currency, notify_url, profit_sharing, fee_rate_bps, time_expire, state,
                          transaction_id, success_at, created_at, next_check_at)
       SELECT $1, split_part(t.ref, '/', 1), split_part(t.ref, '/', 2), 'bench', 'h', 'wxbenchmall', 'bench',
              -e.amount_fen, 'CNY', 'https://example.com/n', true, 60, t.created_at, 'SUCCESS',
              '42' || lpad(t.transfer_id::text, 20, '0'), t.created_at, t.created_at, t.created_at
         FROM stage_transfers t JOIN stage_entries e ON e.transfer_id = t.transfer_id AND e.account = 'payer'
        WHERE t.kind = 'payment'""",
    """INSERT INTO split_orders (mall_id, sub_mchid, out_order_no, out_trade_no, transaction_id, kind, purpose,
                                request_hash, parts, state, created_at)
       SELECT $1, split_part(t.ref, '/', 1), split_part(t.ref, '/', 2), substr(split_part(t.ref, '/', 2), 2),
              'x', CASE WHEN t.kind = 'split' THEN 'split' ELSE 'unfreeze' END, 'api', 'h', '[]', 'FINISHED',
              t.created_at
         FROM stage_transfers t WHERE t.kind IN ('split', 'unfreeze')""",
    """INSERT INTO refunds (mall_id, sub_mchid, out_refund_no, out_trade_no, transaction_id, amount_fen,
                           total_fen, request_hash, plan, state, client_id, created_at)
       SELECT $1, split_part(t.ref, '/', 1), split_part(t.ref, '/', 2), substr(split_part(t.ref, '/', 2), 2),
              'x', 1, 1, 'h', '{}', 'SUCCESS', 'bench', t.created_at
         FROM stage_transfers t WHERE t.kind = 'refund'""",
]


SET_BALANCES = """
UPDATE accounts a SET balance_fen = s.total
  FROM (SELECT account, sum(amount_fen) AS total FROM entries WHERE mall_id = $1 GROUP BY account) s
 WHERE a.mall_id = $1 AND a.account = s.account AND NOT a.hot
"""


async def seed(dsn: str, stores: list[str], orders: int) -> int:
    history = build_history(2026, stores, [DAY], orders_per_day=orders)
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    try:
        await onboarding.ensure_mall(pool, MALL, "wxbenchmall", "bench")
        async with pool.acquire() as conn:
            await conn.execute("SET session_replication_role = replica")  # tenants' rows in bulk, below
            await conn.executemany(
                "INSERT INTO tenants (mall_id, sub_mchid, name) VALUES ($1, $2, $3)",
                [(MALL, s, f"Store {s}") for s in stores])
            await ledger_repo.ensure_accounts(conn, MALL, history.account_specs())
            await conn.execute(STAGE)
            await conn.copy_records_to_table("stage_transfers", records=[
                (n, t.kind, t.ref, at) for n, (t, at) in enumerate(history.items, start=1)])
            await conn.copy_records_to_table("stage_entries", records=[
                (n, account, amount) for n, (t, _) in enumerate(history.items, start=1)
                for account, amount in zip(t.accounts, t.amounts_fen)])
            for statement in LOAD:
                await conn.execute(statement, MALL)
            # The running balances posting keeps (the rows above skipped the posting function).
            await conn.execute(SET_BALANCES, MALL)
    finally:
        await pool.close()
    conn = await asyncpg.connect(dsn)  # what autovacuum does for a day-old table: index-only scans work
    try:
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()
    return len(history.items)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stores", type=int, default=200)
    parser.add_argument("--orders", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=1, help="statements built at once (one connection each)")
    parser.add_argument("--all-stores", action="store_true",
                        help="build every store's statement in one pass (statements.rendered_of_all_stores)")
    parser.add_argument("--connections", type=int, default=1,
                        help="with --all-stores: connections sharing the stores out over one snapshot")
    parser.add_argument("--rounds", type=int, default=3, help="rounds to take the median of")
    parser.add_argument("--reference", action="store_true",
                        help="also run the Python-built statements each round, compare bytes and report the ratio")
    parser.add_argument("--server-dsn", help="a PostgreSQL server (database `postgres`); default: embedded")
    args = parser.parse_args()
    stores = [str(1900000201 + n) for n in range(args.stores)]
    with ExitStack() as stack:
        server_dsn = args.server_dsn or start_postgres(stack)[1]
        dsn = await fresh_database(server_dsn, "bench_statements")
        await migrate(dsn)
        started = time.perf_counter()
        transfers = await seed(dsn, stores, args.orders)
        print(f"seeded {args.orders:,} orders of {args.stores} stores as {transfers:,} transfers "
              f"in {time.perf_counter() - started:.1f} s", flush=True)
        size = max(args.concurrency, args.connections)
        pool = await asyncpg.create_pool(dsn, min_size=size, max_size=size)
        svc = database_services(Settings.from_env({}), pool)
        try:
            timings: dict[str, list[float]] = {"shaped": [], "reference": []}
            for n in range(args.rounds):
                for path in ("shaped", "reference") if args.reference else ("shaped",):
                    started = time.perf_counter()
                    outputs, results = await run(svc, stores, path, args)
                    elapsed = time.perf_counter() - started
                    timings[path].append(elapsed)
                    print(f"round {n + 1} {path}: {report(results, elapsed, args, path)}; load average "
                          f"{os.getloadavg()[0]:.1f}", flush=True)
                    if path == "shaped":
                        shaped_outputs = outputs
                    elif outputs != shaped_outputs:
                        raise SystemExit("the shaped and the reference statements differ")
                    del outputs
            if args.all_stores:  # the one pass gives each store exactly its own statement
                together = await statements.rendered_of_all_stores(svc, MALL, DAY, DAY, csv=True, json=True)
                for found in together[:3]:
                    alone = await statements.rendered(svc, MALL, found.sub_mchid, DAY, DAY, csv=True, json=True)
                    assert (rendered_csv(found), rendered_json_bytes(found)) == (
                        rendered_csv(alone), rendered_json_bytes(alone))
        finally:
            await pool.close()
        shaped = statistics.median(timings["shaped"])
        line = f"median of {args.rounds} rounds: {shaped:.2f} s"
        if args.reference:
            reference = statistics.median(timings["reference"])
            line += (f"; reference (Python-built) {reference:.2f} s, ratio {shaped / reference:.2f}; "
                     f"CSV and JSON identical byte for byte")
        print(line)


async def run(svc, stores: list[str], path: str, args) -> tuple[dict, list]:
    """Every store's statement by `path`: {store: (CSV, JSON)} and (seconds, lines, ties, bytes) each."""
    limit = asyncio.Semaphore(args.concurrency)
    outputs: dict[str, tuple[bytes, bytes]] = {}
    results: list[tuple[float, int, bool, int]] = []
    started = time.perf_counter()

    def done(found, began: float, count: int) -> None:
        if path == "shaped":
            body = rendered_csv(found), rendered_json_bytes(found)
        else:
            body = statement_csv(found), statement_json_bytes(found)
        outputs[found.sub_mchid] = body
        results.append((time.perf_counter() - began, count, found.ties, len(body[0]) + len(body[1])))

    async def one(store: str) -> None:
        async with limit:
            began = time.perf_counter()
            if path == "shaped":
                found = await statements.rendered(svc, MALL, store, DAY, DAY, csv=True, json=True)
                done(found, began, found.count)
            else:
                found = await statements.statement(svc, MALL, store, DAY, DAY)
                done(found, began, len(found.lines))

    if args.all_stores:
        if path == "shaped":
            for found in await statements.rendered_of_all_stores(svc, MALL, DAY, DAY, csv=True, json=True,
                                                                 connections=args.connections):
                done(found, started, found.count)
        else:
            for found in await statements.statements_of_all_stores(svc, MALL, DAY, DAY):
                done(found, started, len(found.lines))
    else:
        await asyncio.gather(*(one(store) for store in stores))
    return outputs, results


def report(results: list, elapsed: float, args, path: str) -> str:
    slowest = max(r[0] for r in results)
    lines = sum(r[1] for r in results)
    all_tie = all(r[2] for r in results)
    total_bytes = sum(r[3] for r in results)
    connections = args.connections if path == "shaped" else 1
    mode = (f"in one pass over {connections} connection(s)" if args.all_stores
            else f"at concurrency {args.concurrency}")
    return (f"{len(results)} statements ({lines:,} lines, CSV and JSON {total_bytes / 1e6:.1f} MB) in "
            f"{elapsed:.2f} s {mode}; slowest {slowest * 1000:.0f} ms; every statement ties: {all_tie}")


if __name__ == "__main__":
    asyncio.run(main())
