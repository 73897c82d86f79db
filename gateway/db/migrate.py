"""Numbered SQL migrations, forward only.

Files are `migrations/NNNN_name.sql`. Each applies in its own transaction together with
its row in `schema_migrations`, so a failed file leaves no trace. A file's checksum is
recorded; editing an applied file is refused rather than silently diverging from the
databases it already ran on. Processes starting at once serialize on an advisory lock.
Statements that cannot run in a transaction (CREATE INDEX CONCURRENTLY) are not supported.

A baseline squashes the files before it into one (as Django's squashed migrations do).
Its leading comment lists each file it replaces, one a line, with the checksum that file
was applied with:

    -- replaces: 0001_core.sql sha256:96d8e68a…(64 hex digits)

and the replaced files are deleted. An empty database runs the baseline and records only
it. A database that recorded every replaced file records the baseline without running it
(in a transaction, like any file) and keeps the old rows, which count as known. One that
recorded only some of them is refused: what would bring it forward is gone, so it must
first be brought to the baseline's last replaced file with an earlier release. A recorded
row must carry the name and checksum the baseline lists, else it ran another history.
The replaced files themselves are gone, so nothing here can check any more that their SQL
still matches what the baseline declares; that was checked once, when the baseline was
written (both schemas dumped with pg_dump and compared). No file may be numbered below a
baseline; files after it apply as usual.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.resources
import itertools
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import asyncpg

from gateway.db import connect

# Arbitrary but fixed: every mallpay process agrees on it. ASCII "mallpay" as an int.
MIGRATION_LOCK_KEY = 0x6D616C6C706179
LOCK_WAIT_S_MAX = 120.0
LOCK_POLL_INTERVAL_S = 0.05
FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
REPLACES_PREFIX = "-- replaces:"
REPLACES_LINE = re.compile(r"^-- replaces: (\d{4})_([a-z0-9_]+)\.sql sha256:([0-9a-f]{64})$")

CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    int PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""
SELECT_APPLIED = "SELECT version, name, checksum FROM schema_migrations ORDER BY version"
HAS_TABLE = "SELECT to_regclass('schema_migrations') IS NOT NULL"
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


def file_name_of(version: int, name: str) -> str:
    """What FILE_NAME reads back as (version, name)."""
    return f"{version:04d}_{name}.sql"


@dataclass(frozen=True)
class Replaced:
    """A migration a baseline stands for: its file is gone, its row may be recorded."""
    version: int
    name: str
    checksum: str

    @property
    def file_name(self) -> str:
        return file_name_of(self.version, self.name)


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str
    checksum: str
    replaces: tuple[Replaced, ...] = ()  # non-empty: a baseline

    @property
    def file_name(self) -> str:
        return file_name_of(self.version, self.name)


class Step(NamedTuple):
    migration: Migration
    run: bool  # False: a baseline whose replaced files are all recorded, to record only


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
        sql = body.decode("utf-8")
        found[version] = Migration(
            version=version, name=match.group(2), sql=sql, checksum=hashlib.sha256(body).hexdigest(),
            replaces=_replaced_by(entry.name, version, sql),
        )
    migrations = [found[version] for version in sorted(found)]
    for baseline in (migration for migration in migrations if migration.replaces):
        if migrations[0] is not baseline:
            raise MigrationError(
                f"{migrations[0].file_name} is numbered below {baseline.file_name}, which replaces "
                "every migration before it; delete or renumber it"
            )
    return migrations


def _replaced_by(file_name: str, version: int, sql: str) -> tuple[Replaced, ...]:
    """The files a baseline replaces, read off the `-- replaces:` lines of its leading comment."""
    replaced = []
    for line in itertools.takewhile(lambda line: line.startswith("--"), sql.splitlines()):
        if not line.startswith(REPLACES_PREFIX):
            continue
        match = REPLACES_LINE.match(line)
        if match is None:
            raise MigrationError(f"{file_name}: {line!r} is not `-- replaces: NNNN_name.sql sha256:<64 hex digits>`")
        replaced.append(Replaced(version=int(match.group(1)), name=match.group(2), checksum=match.group(3)))
    for entry in replaced:
        if entry.version >= version:
            raise MigrationError(f"{file_name} cannot replace {entry.file_name}: only files numbered below it")
    if len({entry.version for entry in replaced}) < len(replaced):
        raise MigrationError(f"{file_name} lists a replaced version twice")
    return tuple(replaced)


async def migrate(conn_or_dsn: asyncpg.Connection | str, *, directory: Path | None = None) -> list[str]:
    """Apply the missing migrations in order; return the file names applied now (a baseline
    recorded over the files it replaces counts as applied)."""
    migrations = load_migrations(directory)
    if isinstance(conn_or_dsn, str):
        conn = await connect(conn_or_dsn)
        try:
            return await _migrate_locked(conn, migrations)
        finally:
            await conn.close()
    return await _migrate_locked(conn_or_dsn, migrations)


async def pending(dsn: str, *, directory: Path | None = None) -> list[str]:
    """The migration files the database has not applied (nothing is changed, locked or
    checked): for starting without migrating, which needs none missing. A database ahead
    of the code (a newer release migrated it; this one is still running during a deploy)
    misses nothing; `migrate` is the one that refuses a history it does not know."""
    migrations = load_migrations(directory)
    conn = await connect(dsn)
    try:
        applied = set()
        if await conn.fetchval(HAS_TABLE):
            applied = {row["version"] for row in await conn.fetch(SELECT_APPLIED)}
    finally:
        await conn.close()
    return [migration.file_name for migration in migrations
            if migration.version not in applied
            and not (migration.replaces and all(entry.version in applied for entry in migration.replaces))]


async def _migrate_locked(conn: asyncpg.Connection, migrations: list[Migration]) -> list[str]:
    await _acquire_lock(conn)
    try:
        await conn.execute(CREATE_TABLE)
        applied = {row["version"]: row for row in await conn.fetch(SELECT_APPLIED)}
        steps = _pending(migrations, applied)
        for migration, run in steps:
            if run:
                await _apply(conn, migration)
            else:
                await _record(conn, migration)
        return [migration.file_name for migration, _ in steps]
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


def _pending(migrations: list[Migration], applied: dict[int, asyncpg.Record]) -> list[Step]:
    """Check the applied history against the files and return what is left to do.
    Refuses an edited file, a database ahead of the code, a gap (a file numbered below one
    already applied: forward only means in order, too), and a database that applied only
    part of what a baseline replaces."""
    by_version = {migration.version: migration for migration in migrations}
    replaced = {entry.version: (migration, entry) for migration in migrations for entry in migration.replaces}
    for version, row in applied.items():
        if version in by_version:
            _check_checksum(by_version[version].file_name, by_version[version].checksum, row)
        elif version in replaced:
            _check_replaced(*replaced[version], row)
        else:
            raise MigrationError(
                f"database has migration {version:04d}_{row['name']} which this code does not know; "
                "it is newer than the code"
            )
    newest_applied = max(applied, default=0)
    pending = [migration for migration in migrations if migration.version not in applied]
    for migration in pending:
        if migration.version < newest_applied:
            raise MigrationError(
                f"{migration.file_name} is numbered below the applied {newest_applied:04d}; renumber it"
            )
    return [Step(migration, run=not _replaced_history(migration, applied)) for migration in pending]


def _check_checksum(file_name: str, checksum: str, row: asyncpg.Record) -> None:
    if checksum != row["checksum"]:
        raise MigrationChecksumMismatch(
            f"{file_name} changed after it was applied "
            f"(recorded sha256 {row['checksum'][:12]}…, file {checksum[:12]}…); "
            "add a new migration instead of editing an applied one"
        )


def _check_replaced(baseline: Migration, entry: Replaced, row: asyncpg.Record) -> None:
    """A recorded row of a replaced file is the file the baseline lists, not another one
    that once had its number."""
    if row["name"] != entry.name:
        raise MigrationError(
            f"database has migration {entry.version:04d}_{row['name']} where {baseline.file_name} "
            f"replaces {entry.file_name}; it went through another history than the baseline stands for"
        )
    _check_checksum(entry.file_name, entry.checksum, row)


def _replaced_history(migration: Migration, applied: dict[int, asyncpg.Record]) -> bool:
    """Whether the database recorded every file `migration` replaces (then it is recorded
    only), or none (then it runs). Part of them is refused."""
    missing = [entry for entry in migration.replaces if entry.version not in applied]
    if not migration.replaces or len(missing) == len(migration.replaces):
        return False
    if missing:
        last = max(migration.replaces, key=lambda entry: entry.version)
        raise MigrationError(
            f"database applied only part of what {migration.file_name} replaces (not "
            f"{', '.join(entry.file_name for entry in missing)}); the files that would finish it are gone: "
            f"bring it to {last.file_name} with an earlier release first"
        )
    return True


async def _apply(conn: asyncpg.Connection, migration: Migration) -> None:
    try:
        async with conn.transaction():
            await conn.execute(NO_STATEMENT_TIMEOUT)
            await conn.execute(migration.sql)
            await conn.execute(INSERT_APPLIED, migration.version, migration.name, migration.checksum)
    except asyncpg.PostgresError as exc:
        raise MigrationError(f"{migration.file_name} failed and was rolled back: {exc}") from exc


async def _record(conn: asyncpg.Connection, migration: Migration) -> None:
    """A baseline over a database that ran every file it replaces: the schema is there
    already, only the row is missing."""
    async with conn.transaction():
        await conn.execute(INSERT_APPLIED, migration.version, migration.name, migration.checksum)
