"""What an operator gets wrong is said in one line, with the exit status 1, and leaves
nothing behind: a DATABASE_URL nothing answers, a database that does not exist or is not
migrated, an address already taken; and a gateway whose start fails half-way closes
what it opened (no connection left to the database)."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys

import asyncpg
import pytest
from aiohttp.test_utils import TestServer

from gateway.app import create_app
from gateway.db import DatabaseUnreachable, create_pool, redacted, with_database
from gateway.db.migrate import pending
from gateway.services import onboarding
from gateway.settings import Settings
from tests.support import add_tenant


from tests.conftest import REPO_ROOT

RUN_WAIT_S = 60.0


def _run(tmp_path, database_url: str, *argv: str) -> tuple[int, str]:
    """`mallpay ARGV` in its own process (serving would install its event loop policy,
    signal handlers and logging in the test's); its status and standard error."""
    env = {**os.environ, "DATABASE_URL": database_url, "MALLPAY_DATA_DIR": str(tmp_path),
           "MALLPAY_CHANNEL_URL": "http://127.0.0.1:9"}
    done = subprocess.run([sys.executable, "-m", "gateway.cli", *argv], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=RUN_WAIT_S)
    return done.returncode, done.stderr


@pytest.mark.parametrize("argv", [["migrate"], ["tenant", "list"], ["serve", "--port", "9"]])
def test_a_database_nothing_answers(tmp_path, argv):
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there now
    status, err = _run(tmp_path, f"postgresql://mall:s3cret@127.0.0.1:{port}/mallpay", *argv)
    assert status == 1, err
    assert err.startswith(f"mallpay: cannot connect to the database postgresql://mall:***@127.0.0.1:{port}/mallpay: ")
    assert "s3cret" not in err and "Traceback" not in err
    assert err.count("\n") == 1


def test_a_database_that_does_not_exist(tmp_path, pg_server):
    status, err = _run(tmp_path, with_database(pg_server, "no_such_mall_db"), "migrate")
    assert status == 1, err
    assert err.startswith("mallpay: cannot connect to the database ")
    assert 'database "no_such_mall_db" does not exist' in err


def test_serving_an_unmigrated_database_without_migrating(tmp_path, empty_database):
    status, err = _run(tmp_path, empty_database, "serve", "--port", "9", "--no-migrate")
    assert status == 1, err
    assert err.startswith("mallpay: the database lacks 0015_baseline.sql, ")
    assert err.rstrip().endswith("run `mallpay migrate` first")


async def test_pending_lists_what_migrate_would_apply(empty_database, database_url):
    assert (await pending(empty_database))[0] == "0015_baseline.sql"
    assert await pending(database_url) == []  # the tests' databases are migrated


def test_an_address_already_taken(tmp_path, database_url):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        port = taken.getsockname()[1]
        status, err = _run(tmp_path, database_url, "serve", "--port", str(port), "--no-migrate")
    finally:
        taken.close()
    assert status == 1, err
    # (a warning logged while starting may come first: the last line is the error)
    assert err.strip().splitlines()[-1].startswith("mallpay: [Errno 98] error while attempting to bind on address ")
    assert "Traceback" not in err


def test_redacted_leaves_a_dsn_without_password_as_it_is():
    assert redacted("postgresql://postgres@/mallpay?host=/run/pg") == "postgresql://postgres@/mallpay?host=/run/pg"
    assert redacted("postgresql://u:p%40ss@db:5432/x") == "postgresql://u:***@db:5432/x"


async def test_a_start_that_fails_half_way_closes_what_it_opened(empty_database, pg_server, tmp_path):
    # The pool opens, then the first read fails (no schema): the pool and the HTTP
    # sessions made before it must not stay open.
    settings = Settings().with_(data_dir=tmp_path, channel_url="http://127.0.0.1:9")
    server = TestServer(create_app(settings, database_url=empty_database, run_workers=False))
    with pytest.raises(asyncpg.UndefinedTableError):
        await server.start_server()
    await server.close()
    name = empty_database.rsplit("/", 1)[1].split("?")[0]
    conn = await asyncpg.connect(pg_server)
    try:
        left = await conn.fetchval("SELECT count(*) FROM pg_stat_activity WHERE datname = $1", name)
    finally:
        await conn.close()
    assert left == 0


async def test_create_pool_says_which_database(pg_server):
    with pytest.raises(DatabaseUnreachable, match="no_such_mall_db"):
        await create_pool(with_database(pg_server, "no_such_mall_db"), min_size=1, max_size=1,
                          statement_timeout_ms=1000)
    await asyncio.sleep(0)


async def test_client_create_into_a_folder_it_cannot_make_registers_nothing(tmp_path, database_url, db_pool):
    (tmp_path / "a_file").write_text("not a folder")
    before = await db_pool.fetchval("SELECT count(*) FROM clients")
    status, err = await asyncio.to_thread(_run, tmp_path, database_url, "client", "create", "--role", "mall_app",
                                          "--out", str(tmp_path / "a_file" / "client"))
    assert status == 1, err
    assert err.startswith("mallpay: [Errno ") and "a_file" in err and "Traceback" not in err
    assert await db_pool.fetchval("SELECT count(*) FROM clients") == before


async def test_a_statement_into_a_closed_pipe_ends_quietly(tmp_path, database_url, db_pool):
    settings = Settings()
    await onboarding.ensure_mall(db_pool, settings.sp_mchid, settings.sp_appid, settings.mall_name)
    await add_tenant(db_pool, settings.sp_mchid, "1900000201")
    read_end, write_end = os.pipe()
    os.close(read_end)  # as `| head` does once it has its lines
    # Buffered, as a shell runs it: the write fits the buffer and the pipe breaks only when
    # standard output is flushed (with PYTHONUNBUFFERED the write itself fails).
    env = {key: value for key, value in os.environ.items() if key != "PYTHONUNBUFFERED"}
    env.update(DATABASE_URL=database_url, MALLPAY_DATA_DIR=str(tmp_path))
    try:
        done = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "gateway.cli", "statement", "--sub-mchid", "1900000201",
                             "--date", "2026-11-03"],
            cwd=REPO_ROOT, env=env, stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=RUN_WAIT_S)
    finally:
        os.close(write_end)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr and "BrokenPipeError" not in done.stderr, done.stderr


async def test_a_database_ahead_of_the_code_misses_nothing(database_url, db_pool):
    # A newer release migrated it; this one may still start with --no-migrate meanwhile.
    await db_pool.execute("INSERT INTO schema_migrations (version, name, checksum) VALUES (9999, 'later', 'x')")
    assert await pending(database_url) == []
