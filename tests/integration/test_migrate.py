"""The migration runner: in order, once, atomically, and never over an edited file."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import asyncpg
import pytest

from gateway.db.migrate import (
    MIGRATION_LOCK_KEY,
    MigrationChecksumMismatch,
    MigrationError,
    load_migrations,
    migrate,
)

# No IF NOT EXISTS on purpose: applying a file twice fails loudly. The sleep holds the
# lock long enough for a concurrent runner to really wait on it.
ACCOUNTS = "CREATE TABLE accounts (id bigint PRIMARY KEY, balance_fen bigint NOT NULL);\nSELECT pg_sleep(0.2);\n"
ENTRIES = "CREATE TABLE entries (account_id bigint REFERENCES accounts (id), amount_fen bigint NOT NULL);\n"


@pytest.fixture
def migration_dir(tmp_path: Path) -> Path:
    (tmp_path / "0001_accounts.sql").write_text(ACCOUNTS)
    (tmp_path / "0002_entries.sql").write_text(ENTRIES)
    (tmp_path / "README.txt").write_text("not a migration")
    return tmp_path


def baseline(sql: str, *replaced: tuple[str, str]) -> str:
    """A baseline's text: a `-- replaces:` line per (file name, its text), then `sql`."""
    header = "".join(f"-- replaces: {name} sha256:{hashlib.sha256(text.encode()).hexdigest()}\n"
                     for name, text in replaced)
    return header + "--\n-- The schema of the files above, whole.\n" + sql


# What 0001 and 0002 give, squashed; and a baseline that proves it was never run.
SQUASHED = baseline(ACCOUNTS + ENTRIES, ("0001_accounts.sql", ACCOUNTS), ("0002_entries.sql", ENTRIES))
NEVER_RUN = baseline("DO $$ BEGIN RAISE EXCEPTION 'the baseline ran'; END $$;\n",
                     ("0001_accounts.sql", ACCOUNTS), ("0002_entries.sql", ENTRIES))
REFUNDS = "CREATE TABLE refunds (id bigint);\n"


def squash(directory: Path, baseline_sql: str) -> None:
    """Replace 0001 and 0002 in `directory` by a baseline 0003, and add 0004 after it."""
    for old in directory.glob("000[12]_*.sql"):
        old.unlink()
    (directory / "0003_baseline.sql").write_text(baseline_sql)
    (directory / "0004_refunds.sql").write_text(REFUNDS)


async def fetch(dsn: str, sql: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetch(sql)
    finally:
        await conn.close()


async def tables(dsn: str) -> set[str]:
    rows = await fetch(dsn, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    return {row["tablename"] for row in rows}


async def test_applies_files_in_order_once_and_records_checksums(empty_database: str, migration_dir: Path):
    first = await migrate(empty_database, directory=migration_dir)
    second = await migrate(empty_database, directory=migration_dir)

    assert first == ["0001_accounts.sql", "0002_entries.sql"]
    assert second == []
    rows = await fetch(empty_database, "SELECT version, name, checksum FROM schema_migrations ORDER BY version")
    assert [(row["version"], row["name"]) for row in rows] == [(1, "accounts"), (2, "entries")]
    assert rows[0]["checksum"] == hashlib.sha256(ACCOUNTS.encode()).hexdigest()
    assert await tables(empty_database) == {"schema_migrations", "accounts", "entries"}
    held = await fetch(empty_database, "SELECT 1 FROM pg_locks WHERE locktype = 'advisory'")
    assert held == []


async def test_two_runners_at_once_apply_each_file_once(empty_database: str, migration_dir: Path):
    conns = [await asyncpg.connect(empty_database) for _ in range(2)]
    try:
        results = await asyncio.gather(*(migrate(conn, directory=migration_dir) for conn in conns))
    finally:
        for conn in conns:
            await conn.close()

    assert sorted(results, key=len) == [[], ["0001_accounts.sql", "0002_entries.sql"]]
    rows = await fetch(empty_database, "SELECT version FROM schema_migrations ORDER BY version")
    assert [row["version"] for row in rows] == [1, 2]


async def test_edited_applied_file_is_refused_and_nothing_else_runs(empty_database: str, migration_dir: Path):
    await migrate(empty_database, directory=migration_dir)
    (migration_dir / "0001_accounts.sql").write_text(ACCOUNTS + "-- a later edit\n")
    (migration_dir / "0003_refunds.sql").write_text("CREATE TABLE refunds (id bigint);\n")

    with pytest.raises(MigrationChecksumMismatch, match="0001_accounts.sql changed after it was applied"):
        await migrate(empty_database, directory=migration_dir)

    assert "refunds" not in await tables(empty_database)


async def test_failing_file_rolls_back_whole_and_can_be_fixed(empty_database: str, migration_dir: Path):
    await migrate(empty_database, directory=migration_dir)
    broken = migration_dir / "0003_refunds.sql"
    broken.write_text("CREATE TABLE refunds (id bigint);\nINSERT INTO no_such_table VALUES (1);\n")

    with pytest.raises(MigrationError, match="0003_refunds.sql failed and was rolled back"):
        await migrate(empty_database, directory=migration_dir)
    assert "refunds" not in await tables(empty_database)

    broken.write_text("CREATE TABLE refunds (id bigint);\n")
    assert await migrate(empty_database, directory=migration_dir) == ["0003_refunds.sql"]


async def test_database_newer_than_the_code_is_refused(empty_database: str, migration_dir: Path):
    await migrate(empty_database, directory=migration_dir)
    (migration_dir / "0002_entries.sql").unlink()

    with pytest.raises(MigrationError, match="0002_entries which this code does not know"):
        await migrate(empty_database, directory=migration_dir)


async def test_file_numbered_below_an_applied_one_is_refused(empty_database: str, migration_dir: Path):
    (migration_dir / "0001_accounts.sql").rename(migration_dir / "0005_accounts.sql")
    (migration_dir / "0002_entries.sql").rename(migration_dir / "0006_entries.sql")
    await migrate(empty_database, directory=migration_dir)
    (migration_dir / "0004_late.sql").write_text("CREATE TABLE late (id bigint);\n")

    with pytest.raises(MigrationError, match="0004_late.sql is numbered below the applied 0006"):
        await migrate(empty_database, directory=migration_dir)


def test_two_files_with_one_version_are_refused(tmp_path: Path):
    (tmp_path / "0001_a.sql").write_text("SELECT 1;")
    (tmp_path / "0001_b.sql").write_text("SELECT 1;")

    with pytest.raises(MigrationError, match="share version 0001"):
        load_migrations(tmp_path)


async def test_packaged_migrations_apply_to_an_empty_database(empty_database: str):
    packaged = [migration.file_name for migration in load_migrations()]

    assert packaged, "the migrations package holds no NNNN_name.sql file"
    assert await migrate(empty_database) == packaged
    assert await migrate(empty_database) == []


async def test_lock_is_released_even_when_a_file_fails(empty_database: str, tmp_path: Path):
    (tmp_path / "0001_bad.sql").write_text("SELECT * FROM no_such_table;\n")
    runner, other = await asyncpg.connect(empty_database), await asyncpg.connect(empty_database)
    try:
        with pytest.raises(MigrationError):
            await migrate(runner, directory=tmp_path)
        # Advisory locks are reentrant within a session: only another session can tell.
        assert await other.fetchval("SELECT pg_try_advisory_lock($1)", MIGRATION_LOCK_KEY) is True
        assert await other.fetchval("SELECT count(*) FROM schema_migrations") == 0
    finally:
        await runner.close()
        await other.close()


async def test_each_test_gets_a_fresh_migrated_database(db_pool: asyncpg.Pool):
    packaged = [(migration.version, migration.checksum) for migration in load_migrations()]
    rows = await db_pool.fetch("SELECT version, checksum FROM schema_migrations ORDER BY version")

    assert [(row["version"], row["checksum"]) for row in rows] == packaged
    assert (await db_pool.fetchval("SELECT current_database()")).startswith("t_")
    assert await db_pool.fetchval("SHOW statement_timeout") == "10s"
    assert await db_pool.fetchval("SELECT $1::jsonb", {"amount_fen": 100, "memo": "停车费"}) == {
        "amount_fen": 100, "memo": "停车费",
    }


async def versions(dsn: str) -> list[tuple[int, str]]:
    return [(row["version"], row["name"])
            for row in await fetch(dsn, "SELECT version, name FROM schema_migrations ORDER BY version")]


async def test_fresh_database_runs_the_baseline_and_records_only_it(empty_database: str, tmp_path: Path):
    squash(tmp_path, SQUASHED)

    assert await migrate(empty_database, directory=tmp_path) == ["0003_baseline.sql", "0004_refunds.sql"]

    assert await versions(empty_database) == [(3, "baseline"), (4, "refunds")]
    assert await tables(empty_database) == {"schema_migrations", "accounts", "entries", "refunds"}
    assert await migrate(empty_database, directory=tmp_path) == []


async def test_database_with_every_replaced_file_records_the_baseline_without_running_it(
        empty_database: str, migration_dir: Path):
    await migrate(empty_database, directory=migration_dir)
    squash(migration_dir, NEVER_RUN)

    assert await migrate(empty_database, directory=migration_dir) == ["0003_baseline.sql", "0004_refunds.sql"]

    assert await versions(empty_database) == [(1, "accounts"), (2, "entries"), (3, "baseline"), (4, "refunds")]
    recorded = await fetch(empty_database, "SELECT checksum FROM schema_migrations WHERE version = 3")
    assert recorded[0]["checksum"] == hashlib.sha256(NEVER_RUN.encode()).hexdigest()
    assert await tables(empty_database) == {"schema_migrations", "accounts", "entries", "refunds"}
    assert await migrate(empty_database, directory=migration_dir) == []  # the old rows stay known


async def test_database_with_part_of_the_replaced_files_is_refused_untouched(empty_database: str, migration_dir: Path):
    (migration_dir / "0002_entries.sql").unlink()
    await migrate(empty_database, directory=migration_dir)
    squash(migration_dir, SQUASHED)

    with pytest.raises(MigrationError, match=r"only part of what 0003_baseline.sql replaces \(not 0002_entries.sql\)"
                                             r".* bring it to 0002_entries.sql with an earlier release first"):
        await migrate(empty_database, directory=migration_dir)

    assert await versions(empty_database) == [(1, "accounts")]
    assert await tables(empty_database) == {"schema_migrations", "accounts"}


async def test_replaced_file_recorded_under_another_name_or_checksum_is_refused(
        empty_database: str, migration_dir: Path):
    await migrate(empty_database, directory=migration_dir)
    squash(migration_dir, baseline(ACCOUNTS + ENTRIES, ("0001_accounts.sql", ACCOUNTS), ("0002_ledger.sql", ENTRIES)))

    with pytest.raises(MigrationError, match="has migration 0002_entries where 0003_baseline.sql replaces 0002_ledger"):
        await migrate(empty_database, directory=migration_dir)

    squash(migration_dir, baseline(ACCOUNTS + ENTRIES, ("0001_accounts.sql", ACCOUNTS),
                                   ("0002_entries.sql", ENTRIES + "-- as it was before an edit\n")))
    with pytest.raises(MigrationChecksumMismatch, match="0002_entries.sql changed after it was applied"):
        await migrate(empty_database, directory=migration_dir)

    assert await versions(empty_database) == [(1, "accounts"), (2, "entries")]


async def test_after_a_baseline_the_order_and_the_newer_database_checks_still_hold(
        empty_database: str, migration_dir: Path):
    await migrate(empty_database, directory=migration_dir)
    squash(migration_dir, NEVER_RUN)
    (migration_dir / "0004_refunds.sql").rename(migration_dir / "0005_refunds.sql")
    await migrate(empty_database, directory=migration_dir)

    (migration_dir / "0004_late.sql").write_text("CREATE TABLE late (id bigint);\n")
    with pytest.raises(MigrationError, match="0004_late.sql is numbered below the applied 0005"):
        await migrate(empty_database, directory=migration_dir)
    (migration_dir / "0004_late.sql").unlink()
    (migration_dir / "0005_refunds.sql").unlink()
    with pytest.raises(MigrationError, match="0005_refunds which this code does not know"):
        await migrate(empty_database, directory=migration_dir)


def test_a_file_numbered_below_a_baseline_is_refused(tmp_path: Path):
    squash(tmp_path, SQUASHED)
    (tmp_path / "0002_entries.sql").write_text(ENTRIES)

    with pytest.raises(MigrationError, match="0002_entries.sql is numbered below 0003_baseline.sql"):
        load_migrations(tmp_path)


@pytest.mark.parametrize("line", [
    "-- replaces: 0001-0002",
    "-- replaces: 0001_accounts.sql",
    "-- replaces: 0001_accounts.sql sha256:abc",
])
def test_an_unreadable_replaces_line_is_refused(tmp_path: Path, line: str):
    (tmp_path / "0003_baseline.sql").write_text(f"{line}\n{ACCOUNTS}")

    with pytest.raises(MigrationError, match="is not `-- replaces: NNNN_name.sql"):
        load_migrations(tmp_path)


def test_a_baseline_lists_a_replaced_version_once(tmp_path: Path):
    (tmp_path / "0003_baseline.sql").write_text(baseline(ACCOUNTS, ("0001_accounts.sql", ACCOUNTS),
                                                         ("0001_ledger.sql", ACCOUNTS)))

    with pytest.raises(MigrationError, match="0003_baseline.sql lists a replaced version twice"):
        load_migrations(tmp_path)


def test_a_baseline_replaces_only_files_numbered_below_it(tmp_path: Path):
    (tmp_path / "0003_baseline.sql").write_text(baseline(ACCOUNTS, ("0003_accounts.sql", ACCOUNTS)))

    with pytest.raises(MigrationError, match="0003_baseline.sql cannot replace 0003_accounts.sql"):
        load_migrations(tmp_path)
