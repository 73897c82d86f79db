"""Database plumbing: the asyncpg pool, and where the database is.

`DATABASE_URL` names an operator's PostgreSQL; without it an embedded server is started in
the project's data directory, so a fresh machine with only Python runs everything.
"""

from __future__ import annotations

import asyncio
import threading
from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg
import orjson

from gateway.db.embedded import EmbeddedPostgres, EmbeddedPostgresError

if TYPE_CHECKING:
    from gateway.settings import Settings

__all__ = [
    "EMBEDDED_DATABASE",
    "EmbeddedPostgres",
    "EmbeddedPostgresError",
    "create_pool",
    "ensure_database",
    "resolve_database_url",
    "quote_ident",
    "with_database",
]

EMBEDDED_DATABASE = "mallpay"
CONNECT_TIMEOUT_S = 10.0


async def create_pool(dsn: str, *, min_size: int, max_size: int, statement_timeout_ms: int) -> asyncpg.Pool:
    """A pool whose connections time out runaway statements on the server and decode
    json/jsonb columns to Python values."""
    assert 0 < min_size <= max_size, (min_size, max_size)
    assert statement_timeout_ms > 0, statement_timeout_ms
    return await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        timeout=CONNECT_TIMEOUT_S,
        server_settings={"statement_timeout": str(statement_timeout_ms)},
        init=_init_connection,
        reset=_keep_session,
    )


async def _init_connection(conn: asyncpg.Connection) -> None:
    # asyncpg hands json/jsonb over as text by default; decode once here so repos never
    # call json.loads themselves. orjson: the payment transaction sends its effects as
    # jsonb rows, and the standard library's encoder was a visible share of its CPU.
    for type_name in ("jsonb", "json"):
        await conn.set_type_codec(type_name, encoder=_json_dumps, decoder=orjson.loads, schema="pg_catalog")


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Return a connection to the pool without asyncpg's default reset query.

    asyncpg still rolls back a transaction left open before calling this. The default
    query (advisory unlock, CLOSE ALL, UNLISTEN, RESET ALL) was nearly half the database
    round trips of a payment in the load test; the gateway keeps no session state on
    pooled connections (no LISTEN, no cursors outside transactions, no session SET, the
    migration lock lives on its own connection), so there is nothing for it to undo.
    """


def _json_dumps(value: object) -> str:
    return orjson.dumps(value).decode()


def resolve_database_url(settings: "Settings") -> tuple[str, EmbeddedPostgres | None]:
    """The DSN to use, plus the embedded server when one was started or reused (the
    caller stops it on exit only if `server.started_here`)."""
    if settings.database_url:
        return settings.database_url, None
    server = EmbeddedPostgres(settings.data_dir)
    server_dsn = server.start()
    _run_blocking(ensure_database(server_dsn, EMBEDDED_DATABASE))
    return server.dsn(EMBEDDED_DATABASE), server


async def ensure_database(server_dsn: str, name: str) -> bool:
    """Create database `name` unless it exists; True when this call created it."""
    conn = await asyncpg.connect(server_dsn, timeout=CONNECT_TIMEOUT_S)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if exists:
            return False
        try:
            # CREATE DATABASE takes no parameters; the name is quoted as an identifier.
            await conn.execute(f"CREATE DATABASE {quote_ident(name)}")
        except asyncpg.DuplicateDatabaseError:
            return False  # another process created it between our look and our create
        return True
    finally:
        await conn.close()


def with_database(dsn: str, name: str) -> str:
    """The same server and credentials as `dsn`, for database `name`."""
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path="/" + quote(name, safe="")))


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _run_blocking(coro) -> object:
    """Run a coroutine to completion from sync code, even when the caller is itself
    inside a running event loop (then on a short-lived thread with its own loop)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    result: dict[str, object] = {}

    def target() -> None:
        try:
            result["value"] = asyncio.run(coro)
        except BaseException as exc:  # handed back to the caller's thread below
            result["error"] = exc

    thread = threading.Thread(target=target, name="mallpay-db-setup")
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]  # type: ignore[misc]
    return result.get("value")
