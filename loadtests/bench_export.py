"""Ledger export of a million transfers: the gateway's export against PostgreSQL's own COPY.

    python loadtests/bench_export.py [--transfers 1000000] [--server-dsn postgresql://...]

A fresh database gets N payment transfers (three entries each: payer, the store's frozen
account, the channel's fee) generated inside PostgreSQL. Then, one after the other in one
run: PostgreSQL's own `COPY (SELECT <the raw entry rows>) TO STDOUT`, read by asyncpg and
thrown away (the baseline), and the gateway's export (gateway.services.exports.export, as
`mallpay export` and the API run it) in each format, written to a file. Reported per run:
seconds, entry rows and transfers per second, the ratio to the baseline, bytes, and the
process's resident memory sampled while the export streams (flat = it does not grow with
the rows written). Without --server-dsn the embedded PostgreSQL under loadtests/out/ runs.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from contextlib import ExitStack
from datetime import datetime, timezone
from pathlib import Path

import asyncpg
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from stack import OUT_DIR, fresh_database, start_postgres  # noqa: E402

from gateway.app import database_services  # noqa: E402
from gateway.db.migrate import migrate  # noqa: E402
from gateway.services import exports  # noqa: E402
from gateway.settings import Settings  # noqa: E402

MALL = "1900000100"
STORES = 200
START = datetime(2026, 11, 1, tzinfo=timezone.utc)
FAR = datetime(2100, 1, 1, tzinfo=timezone.utc)

SEED = """
INSERT INTO malls (mall_id, sp_appid, name) VALUES ($1, 'wxbenchmall', 'bench');
INSERT INTO accounts (mall_id, account, currency, bound, hot)
SELECT $1, a, 'CNY', 'any', a IN ('payer', 'channel:fees')
  FROM (SELECT unnest(ARRAY['payer', 'channel:fees']) AS a
        UNION ALL SELECT 'tenant:' || (1900000200 + s) || ':frozen' FROM generate_series(1, $2::int) s) x;
"""
# Generated in SQL, the ledger's triggers off (session_replication_role): a benchmark
# fixture, not a ledger; every transfer still balances by construction.
TRANSFERS = """
INSERT INTO transfers (mall_id, kind, ref, currency, created_at)
SELECT $1, 'payment', (1900000200 + 1 + n % $3::int) || '/B' || n, 'CNY', $4::timestamptz + n * interval '25 ms'
  FROM generate_series(1, $2::int) n
"""
ENTRIES = """
INSERT INTO entries (mall_id, transfer_id, account, amount_fen, currency)
SELECT t.mall_id, t.transfer_id, x.account, x.amount, 'CNY'
  FROM transfers t,
       LATERAL (SELECT 100 + t.transfer_id % 50000 AS total, (100 + t.transfer_id % 50000) * 60 / 10000 + 1 AS fee) m,
       LATERAL (VALUES ('payer', -m.total),
                       ('tenant:' || split_part(t.ref, '/', 1) || ':frozen', m.total - m.fee),
                       ('channel:fees', m.fee)) x(account, amount)
 WHERE t.mall_id = $1
"""
RAW_ROWS = """
SELECT t.transfer_id, t.created_at, t.kind, t.ref, t.currency, e.account, e.amount_fen
  FROM transfers t JOIN entries e ON e.mall_id = t.mall_id AND e.transfer_id = t.transfer_id
 WHERE t.mall_id = $1 AND t.created_at >= $2 AND t.created_at < $3
 ORDER BY t.created_at, t.transfer_id, e.account
"""


async def seed(dsn: str, transfers: int) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SET session_replication_role = replica")
        for statement in SEED.strip().split(";\n"):
            if statement.strip():
                await conn.execute(statement, MALL, *([STORES] if "$2" in statement else []))
        await conn.execute(TRANSFERS, MALL, transfers, STORES, START)
        await conn.execute(ENTRIES, MALL)
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


class Sampler:
    """Bytes written and the process's RSS, sampled every `every` chunks."""

    def __init__(self, every: int = 200):
        self.every, self.chunks, self.bytes, self.rss = every, 0, 0, []
        self.process = psutil.Process()

    def seen(self, chunk: bytes) -> None:
        self.chunks += 1
        self.bytes += len(chunk)
        if self.chunks % self.every == 1:
            self.rss.append(self.process.memory_info().rss)


async def baseline(dsn: str) -> tuple[float, Sampler]:
    conn = await asyncpg.connect(dsn)
    sampler = Sampler()

    async def output(chunk: bytes) -> None:
        sampler.seen(chunk)

    try:
        started = time.perf_counter()
        await conn.copy_from_query(RAW_ROWS, MALL, START, FAR, output=output)
        return time.perf_counter() - started, sampler
    finally:
        await conn.close()


async def gateway_export(dsn: str, fmt: str, out: Path) -> tuple[float, Sampler]:
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=1)
    sampler = Sampler()
    try:
        with out.open("wb") as file:
            async def write(chunk: bytes) -> None:
                file.write(chunk)
                sampler.seen(chunk)

            started = time.perf_counter()
            await exports.export(database_services(Settings.from_env({}), pool), MALL, START, FAR, fmt, write)
            return time.perf_counter() - started, sampler
    finally:
        await pool.close()


def report(name: str, seconds: float, sampler: Sampler, entries: int, transfers: int, base_rate: float | None):
    rate = entries / seconds
    ratio = "" if base_rate is None else f"  {rate / base_rate:5.2f}x baseline"
    rss = sampler.rss or [psutil.Process().memory_info().rss]
    print(f"{name:22s} {seconds:7.2f} s  {rate:10,.0f} entry rows/s  {transfers / seconds:9,.0f} transfers/s"
          f"{ratio}  {sampler.bytes / 1e6:8.1f} MB  RSS min/max while streaming {min(rss) / 1e6:.0f}/"
          f"{max(rss) / 1e6:.0f} MB", flush=True)
    return rate


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transfers", type=int, default=1_000_000)
    parser.add_argument("--server-dsn", help="a PostgreSQL server (database `postgres`); default: embedded")
    args = parser.parse_args()
    with ExitStack() as stack:
        server_dsn = args.server_dsn or start_postgres(stack)[1]
        dsn = await fresh_database(server_dsn, "bench_export")
        await migrate(dsn)
        started = time.perf_counter()
        await seed(dsn, args.transfers)
        entries = args.transfers * 3
        print(f"seeded {args.transfers:,} transfers ({entries:,} entries) in {time.perf_counter() - started:.1f} s")
        OUT_DIR.mkdir(parents=True, exist_ok=True)
        seconds, sampler = await baseline(dsn)
        base_rate = report("PostgreSQL COPY (raw)", seconds, sampler, entries, args.transfers, None)
        for fmt in ("csv", "jsonl", "beancount"):
            seconds, sampler = await gateway_export(dsn, fmt, OUT_DIR / f"bench_export.{fmt}")
            report(f"export {fmt}", seconds, sampler, entries, args.transfers, base_rate)
        seconds, sampler = await baseline(dsn)
        report("PostgreSQL COPY again", seconds, sampler, entries, args.transfers, base_rate)
        print(f"peak RSS of this process: {psutil.Process().memory_info().rss / 1e6:.0f} MB now; "
              f"ru_maxrss {__import__('resource').getrusage(__import__('resource').RUSAGE_SELF).ru_maxrss / 1e3:.0f} MB")


if __name__ == "__main__":
    asyncio.run(main())
