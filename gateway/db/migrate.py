"""Numbered SQL migrations, forward only.

Files are `migrations/NNNN_name.sql`. Each applies in its own transaction together with
its row in `schema_migrations`, so a failed file leaves no trace. A file's checksum is
recorded; editing an applied file is refused rather than silently diverging from the
databases it already ran on. Processes starting at once serialize on an advisory lock.
Statements that cannot run in a transaction (CREATE INDEX CONCURRENTLY) are not supported.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.resources
import re
import time
from dataclasses import dataclass
from pathlib import Path

import asyncpg

# Arbitrary but fixed: every mallpay process agrees on it. ASCII "mallpay" as an int.
MIGRATION_LOCK_KEY = 0x6D616C6C706179
LOCK_WAIT_S_MAX = 120.0
LOCK_POLL_INTERVAL_S = 0.05
CONNECT_TIMEOUT_S = 10.0
FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    int PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""
SELECT_APPLIED = "SELECT version, name, checksum FROM schema_migrations ORDER BY version"
INSERT_APPLIED = "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)"
TRY_LOCK = "SELECT pg_try_advisory_lock($1)"
UNLOCK = "SELECT pg_advisory_unlock($1)"
# Schema changes on big tables may legitimately run for minutes; the pool's statement
# timeout is for requests. LOCAL: it ends with the migration's transaction.
NO_STATEMENT_TIMEOUT = "SET LOCAL statement_timeout = 0"


class MigrationError(RuntimeError):
    """The migrations cannot be applied; the database is left as it was."""


class MigrationChecksumMismatch(MigrationError):
    """An applied migration file was edited afterwards."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str
    checksum: str

    @property
    def file_name(self) -> str:
        return f"{self.version:04d}_{self.name}.sql"


def load_migrations(directory: Path | None = None) -> list[Migration]:
    """The migration files in version order; the `migrations` package unless told."""
    folder = directory if directory is not None else importlib.resources.files("migrations")
    found: dict[int, Migration] = {}
    for entry in folder.iterdir():
        match = FILE_NAME.match(entry.name)
        if match is None:
            continue
        body = entry.read_bytes()
        version = int(match.group(1))
        if version in found:
            raise MigrationError(f"two migration files share version {version:04d}")
        found[version] = Migration(
            version=version, name=match.group(2), sql=body.decode("utf-8"),
            checksum=hashlib.sha256(body).hexdigest(),
        )
    return [found[version] for version in sorted(found)]


async def migrate(conn_or_dsn: asyncpg.Connection | str, *, directory: Path | None = None) -> list[str]:
    """Apply the missing migrations in order; return the file names applied now."""
    migrations = load_migrations(directory)
    if isinstance(conn_or_dsn, str):
        conn = await asyncpg.connect(conn_or_dsn, timeout=CONNECT_TIMEOUT_S)
        try:
            return await _migrate_locked(conn, migrations)
        finally:
            await conn.close()
    return await _migrate_locked(conn_or_dsn, migrations)


async def _migrate_locked(conn: asyncpg.Connection, migrations: list[Migration]) -> list[str]:
    await _acquire_lock(conn)
    try:
        await conn.execute(CREATE_TABLE)
        applied = {row["version"]: row for row in await conn.fetch(SELECT_APPLIED)}
        pending = _pending(migrations, applied)
        for migration in pending:
            await _apply(conn, migration)
        return [migration.file_name for migration in pending]
    finally:
        await conn.execute(UNLOCK, MIGRATION_LOCK_KEY)


async def _acquire_lock(conn: asyncpg.Connection) -> None:
    """Poll rather than block in pg_advisory_lock: the wait gets a bound of its own,
    independent of whatever statement_timeout the connection carries."""
    deadline = time.monotonic() + LOCK_WAIT_S_MAX
    while not await conn.fetchval(TRY_LOCK, MIGRATION_LOCK_KEY):
        if time.monotonic() > deadline:
            raise MigrationError(f"another process held the migration lock for over {LOCK_WAIT_S_MAX:.0f} s")
        await asyncio.sleep(LOCK_POLL_INTERVAL_S)


def _pending(migrations: list[Migration], applied: dict[int, asyncpg.Record]) -> list[Migration]:
    """Check the applied history against the files and return what is left to apply.
    Refuses an edited file, a database ahead of the code, and a gap (a file numbered
    below one already applied: forward only means in order, too)."""
    by_version = {migration.version: migration for migration in migrations}
    for version, row in applied.items():
        migration = by_version.get(version)
        if migration is None:
            raise MigrationError(
                f"database has migration {version:04d}_{row['name']} which this code does not know; "
                "it is newer than the code"
            )
        if migration.checksum != row["checksum"]:
            raise MigrationChecksumMismatch(
                f"{migration.file_name} changed after it was applied "
                f"(recorded sha256 {row['checksum'][:12]}…, file {migration.checksum[:12]}…); "
                "add a new migration instead of editing an applied one"
            )
    newest_applied = max(applied, default=0)
    pending = [migration for migration in migrations if migration.version not in applied]
    for migration in pending:
        if migration.version < newest_applied:
            raise MigrationError(
                f"{migration.file_name} is numbered below the applied {newest_applied:04d}; renumber it"
            )
    return pending


async def _apply(conn: asyncpg.Connection, migration: Migration) -> None:
    try:
        async with conn.transaction():
            await conn.execute(NO_STATEMENT_TIMEOUT)
            await conn.execute(migration.sql)
            await conn.execute(INSERT_APPLIED, migration.version, migration.name, migration.checksum)
    except asyncpg.PostgresError as exc:
        raise MigrationError(f"{migration.file_name} failed and was rolled back: {exc}") from exc
