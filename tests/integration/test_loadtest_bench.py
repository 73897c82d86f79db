"""loadtests/bench_payment_tx.py keeps measuring the gateway's real payment transaction:
its pgbench script prepares exactly the gateway's APPLY_PAYMENT, both sides send the same
arguments, and a short run of each side pays distinct orders with the books intact."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest

from gateway import invariants
from gateway.db.embedded import EmbeddedPostgres
from gateway.repo import orders as orders_repo
from gateway.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "loadtests"))

import bench_orders as orders  # noqa: E402  (loadtests/ is a folder of scripts, not a package)
import bench_payment_tx as bench  # noqa: E402
import legacy_payment  # noqa: E402

STORES = 3
ORDERS = 5_000  # more than either side pays in its short run here
PGBENCH_TRANSACTIONS_PER_CLIENT = 50


@pytest.fixture
async def bench_db(database_url):
    settings = Settings()
    context = await orders.set_up(database_url, settings, STORES, profit_sharing=False)
    shape = await orders.derive_shape(settings, context)
    await orders.top_up_orders(database_url, settings, context, STORES, ORDERS)
    return database_url, settings, context, shape


async def test_pgbench_prepares_the_gateways_own_sql(bench_db):
    _, _, _, shape = bench_db
    next_order, apply_call = shape.pgbench_script().splitlines()
    assert next_order.endswith("\\gset") and "nextval('bench_seq')" in next_order
    # pgbench -M prepared turns :pN into $N in order of appearance.
    assert re.sub(r":p(\d+)", r"$\1", apply_call.rstrip(";")) == orders_repo.APPLY_PAYMENT.strip()


async def test_both_sides_send_the_same_arguments(bench_db):
    database_url, settings, context, shape = bench_db
    await orders.self_check(database_url, settings, context, shape)  # raises on any difference


async def test_python_side_pays_distinct_orders_through_apply(bench_db, db_pool):
    database_url, _, context, _ = bench_db
    result = await bench.python_side(database_url, context, clients=2, seconds=0.3, profile=False)
    assert result["failed"] == 0 and 0 < result["transactions"] < ORDERS
    paid = result["transactions"] + result["warm_up"]  # one per connection before the clock starts
    assert result["warm_up"] == 2
    async with db_pool.acquire() as conn:
        assert await conn.fetchval(orders.PAID_ORDERS) == paid
        assert await conn.fetchval("SELECT count(DISTINCT transaction_id) FROM orders WHERE state = 'SUCCESS'") \
            == paid
        assert await conn.fetchval("SELECT count(*) FROM outbox") == paid
        assert await conn.fetchval("SELECT count(*) FROM order_funds") == paid
        assert await invariants.check_invariants(conn) == []


async def test_legacy_side_pays_through_the_old_function(bench_db, db_pool):
    database_url, _, context, _ = bench_db
    async with db_pool.acquire() as conn:
        await legacy_payment.install(conn)
    result = await bench.python_side(database_url, context, clients=2, seconds=0.3, profile=False,
                                     apply=legacy_payment.apply)
    assert result["failed"] == 0 and result["transactions"] > 0
    paid = result["transactions"] + result["warm_up"]
    async with db_pool.acquire() as conn:
        assert await conn.fetchval(orders.PAID_ORDERS) == paid
        assert await conn.fetchval("SELECT count(*) FROM order_funds") == paid
        assert await invariants.check_invariants(conn) == []


@pytest.mark.skipif(bool(os.environ.get("DATABASE_URL")), reason="pgbench comes with the embedded server")
async def test_pgbench_side_pays_distinct_orders(bench_db, db_pool, tmp_path):
    database_url, _, _, shape = bench_db
    from tests.conftest import TEST_DATA_ROOT
    script = tmp_path / "payment_tx.sql"
    script.write_text(shape.pgbench_script())
    argv = bench.pgbench_argv(EmbeddedPostgres(TEST_DATA_ROOT).bin_dir, database_url, script, shape, 2, 1)
    duration = argv.index("-T")
    argv[duration:duration + 2] = ["-t", str(PGBENCH_TRANSACTIONS_PER_CLIENT)]  # a count, not a time
    result = bench.run_pgbench(argv, 30)
    assert result["failed"] == 0 and result["transactions"] == 2 * PGBENCH_TRANSACTIONS_PER_CLIENT
    async with db_pool.acquire() as conn:
        assert await conn.fetchval(orders.PAID_ORDERS) == result["transactions"]
        assert await invariants.check_invariants(conn) == []
