"""Shared fixtures: one PostgreSQL server per test run, one migrated template database,
and a fresh copy of it for every test that asks for `database_url` or `db_pool`.

Set `DATABASE_URL` to a server-level DSN to run against an existing PostgreSQL (tests
create and drop databases on it); otherwise an embedded server in `<repo>/.mallpay/test-pg`
is started, reused across runs, and left running if an earlier run started it.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from pathlib import Path

import asyncpg
import pytest

from gateway.db import create_pool, quote_ident, with_database
from gateway.db.embedded import EmbeddedPostgres
from gateway.db.migrate import migrate

REPO_ROOT = Path(__file__).resolve().parent.parent
TEST_DATA_ROOT = REPO_ROOT / ".mallpay" / "test-pg"
# Measured here (PostgreSQL 18, fsync on, ~8 MB migrated template, 15 clones each, twice):
# WAL_LOG (the default) creates in ~24-30 ms and drops in ~9 ms; FILE_COPY takes ~49-60 ms
# and ~38-42 ms, its two checkpoints costing more than logging a small database's pages.
CLONE_STRATEGY = "WAL_LOG"
TEST_POOL_SIZE_MAX = 4
TEST_STATEMENT_TIMEOUT_MS = 10_000


@pytest.fixture(scope="session")
def pg_server() -> str:
    """A server-level DSN (database `postgres`) for tests to create databases on."""
    if os.environ.get("DATABASE_URL"):
        yield os.environ["DATABASE_URL"]
        return
    server = EmbeddedPostgres(TEST_DATA_ROOT)
    dsn = server.start()
    yield dsn
    if server.started_here:
        server.stop()


@pytest.fixture(scope="session")
def template_database(pg_server: str) -> str:
    """Name of a database holding the migrated schema, cloned by every test."""
    name = f"mallpay_test_template_{os.getpid()}"
    asyncio.run(_create_template(pg_server, name))
    yield name
    asyncio.run(_drop_database(pg_server, name))


async def _create_template(server_dsn: str, name: str) -> None:
    await _drop_database(server_dsn, name)  # a leftover of a killed run with a reused pid
    await _execute(server_dsn, f"CREATE DATABASE {quote_ident(name)}")
    await migrate(with_database(server_dsn, name))


@pytest.fixture
async def database_url(pg_server: str, template_database: str) -> str:
    """DSN of a fresh, migrated database, dropped after the test."""
    name = f"t_{secrets.token_hex(6)}"
    await _execute(
        pg_server,
        f"CREATE DATABASE {quote_ident(name)} TEMPLATE {quote_ident(template_database)} STRATEGY {CLONE_STRATEGY}",
    )
    yield with_database(pg_server, name)
    await _drop_database(pg_server, name)


@pytest.fixture
async def empty_database(pg_server: str) -> str:
    """A new database with nothing in it (not migrated), dropped afterwards."""
    name = f"m_{secrets.token_hex(6)}"
    await _execute(pg_server, f"CREATE DATABASE {quote_ident(name)}")
    yield with_database(pg_server, name)
    await _drop_database(pg_server, name)


@pytest.fixture
async def db_pool(database_url: str) -> asyncpg.Pool:
    pool = await create_pool(
        database_url, min_size=1, max_size=TEST_POOL_SIZE_MAX, statement_timeout_ms=TEST_STATEMENT_TIMEOUT_MS,
    )
    yield pool
    await pool.close()


async def _drop_database(server_dsn: str, name: str) -> None:
    # FORCE: a test that leaked a connection must not leave its database behind.
    await _execute(server_dsn, f"DROP DATABASE IF EXISTS {quote_ident(name)} WITH (FORCE)")


async def _execute(server_dsn: str, sql: str) -> None:
    conn = await asyncpg.connect(server_dsn)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()
