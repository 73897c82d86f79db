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
import structlog

from gateway.db.embedded import EmbeddedPostgres, EmbeddedPostgresError

if TYPE_CHECKING:
    from gateway.settings import Settings

__all__ = [
    "EMBEDDED_DATABASE",
    "EmbeddedPostgres",
    "EmbeddedPostgresError",
    "BoundedPool",
    "CONNECTION_BROKEN",
    "DATABASE_UNAVAILABLE",
    "DatabaseUnreachable",
    "connect",
    "create_pool",
    "ensure_database",
    "resolve_database_url",
    "quote_ident",
    "with_database",
]

EMBEDDED_DATABASE = "mallpay"
CONNECT_TIMEOUT_S = 10.0


ACQUIRE_TIMEOUT_S_DEFAULT = 5.0
CLOSE_TIMEOUT_S = 10.0
MAX_QUERIES_PER_CONNECTION = 50_000
INACTIVE_CONNECTION_LIFETIME_S = 300.0

# What asyncpg raises when the database is away or overwhelmed rather than when a query is
# wrong: a server starting or shutting down, a terminated or dropped connection, a refused
# connect, too many clients, a statement or pool wait past its timeout, a serialization
# failure. The API answers these 503 SYSTEM_ERROR (retry later); they are not bugs.
DATABASE_UNAVAILABLE = (
    asyncpg.PostgresConnectionError,      # ConnectionDoesNotExistError, ConnectionFailureError, ...
    asyncpg.exceptions.OperatorInterventionError,  # CannotConnectNow, AdminShutdown, QueryCanceled
    asyncpg.exceptions.InsufficientResourcesError,  # TooManyConnections
    asyncpg.exceptions.TransactionRollbackError,    # serialization failure, deadlock
    # Connecting: refused, reset, the embedded server's socket file gone while it is
    # stopped, a pool acquire or connect past its timeout (TimeoutError is an OSError).
    OSError,
    # A connection the server terminated while it sat idle in the pool can fail its next
    # use with these ("connection is closed", "another operation is in progress") before
    # asyncpg notices the close. They can also be our bugs: logged with a stack trace.
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.InternalClientError,
)
CONNECTION_BROKEN = (asyncpg.exceptions.InterfaceError, asyncpg.exceptions.InternalClientError)

# Why a first connection fails when the DSN itself is the problem or nothing answers it:
# refused, unknown host, timed out, no such database, credentials refused, server starting.
CONNECT_FAILURES = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.InvalidCatalogNameError,
    asyncpg.exceptions.InvalidAuthorizationSpecificationError,  # and InvalidPasswordError
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.TooManyConnectionsError,
)


class DatabaseUnreachable(ConnectionError):
    """The database a DSN names cannot be used at all (see CONNECT_FAILURES); the message
    names it, password left out, and says why. A ConnectionError, so what handled the
    underlying OSError before handles this too."""

    def __init__(self, dsn: str, cause: BaseException):
        super().__init__(f"cannot connect to the database {redacted(dsn)}: {cause or type(cause).__name__}")


def redacted(dsn: str) -> str:
    """The DSN with its password (if any) replaced by ***."""
    parts = urlsplit(dsn)
    if parts.password is None:
        return dsn
    user = parts.username or ""
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


async def connect(dsn: str) -> asyncpg.Connection:
    """One plain connection (set-up work: migrations, creating a database)."""
    try:
        return await asyncpg.connect(dsn, timeout=CONNECT_TIMEOUT_S)
    except CONNECT_FAILURES as exc:
        raise DatabaseUnreachable(dsn, exc) from exc


PING = "SELECT 1"
log = structlog.get_logger(__name__)


async def ping(pool: asyncpg.Pool) -> None:
    """One round trip through a pooled connection: raises when the database is away."""
    async with pool.acquire() as conn:
        await conn.fetchval(PING)


class BoundedPool(asyncpg.Pool):
    """An asyncpg pool whose `acquire()` waits at most `acquire_timeout_s` for a
    connection (asyncpg waits forever by default), so an exhausted pool or a database
    that does not answer turns into a prompt, retryable error instead of a hung request."""

    acquire_timeout_s: float = ACQUIRE_TIMEOUT_S_DEFAULT

    def acquire(self, *, timeout: float | None = None):
        return super().acquire(timeout=self.acquire_timeout_s if timeout is None else timeout)

    async def close(self) -> None:
        """Close gracefully, but cut what is still busy after `CLOSE_TIMEOUT_S` (asyncpg
        waits forever): a connection whose query a cancelled task left running, or whose
        clean-up failed, must not keep the process from shutting down."""
        try:
            await asyncio.wait_for(super().close(), CLOSE_TIMEOUT_S)
        except TimeoutError:
            log.warning("pool_close_timeout", timeout_s=CLOSE_TIMEOUT_S)
            self.terminate()


async def create_pool(dsn: str, *, min_size: int, max_size: int, statement_timeout_ms: int,
                      acquire_timeout_s: float = ACQUIRE_TIMEOUT_S_DEFAULT) -> asyncpg.Pool:
    """A pool whose connections time out runaway statements on the server and decode
    json/jsonb columns to Python values; waiting for a connection is bounded too."""
    assert 0 < min_size <= max_size, (min_size, max_size)
    assert statement_timeout_ms > 0, statement_timeout_ms
    assert acquire_timeout_s > 0, acquire_timeout_s
    # What asyncpg.create_pool does, with our pool class (it takes no class argument).
    pool = BoundedPool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        max_queries=MAX_QUERIES_PER_CONNECTION,
        max_inactive_connection_lifetime=INACTIVE_CONNECTION_LIFETIME_S,
        loop=None,
        connection_class=asyncpg.Connection,
        record_class=asyncpg.Record,
        timeout=CONNECT_TIMEOUT_S,
        server_settings={"statement_timeout": str(statement_timeout_ms)},
        init=_init_connection,
        reset=_keep_session,
    )
    pool.acquire_timeout_s = acquire_timeout_s
    try:
        return await pool
    except CONNECT_FAILURES as exc:
        raise DatabaseUnreachable(dsn, exc) from exc


async def _init_connection(conn: asyncpg.Connection) -> None:
    # asyncpg hands json/jsonb over as text by default; decode once here so repos never
    # call json.loads themselves. orjson: the payment transaction sends its effects as
    # jsonb rows, and the standard library's encoder was a visible share of its CPU.
    # jsonb travels in its binary form (a version byte, then the JSON text): the bytes
    # orjson makes go out as they are, and come back without a trip through str.
    await conn.set_type_codec("jsonb", encoder=_jsonb_binary, decoder=_jsonb_from_binary, schema="pg_catalog",
                              format="binary")
    await conn.set_type_codec("json", encoder=_json_dumps, decoder=orjson.loads, schema="pg_catalog")


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


JSONB_VERSION = b"\x01"  # jsonb's binary format: version 1, then the JSON text


def _jsonb_binary(value: object) -> bytes:
    return JSONB_VERSION + orjson.dumps(value)


def _jsonb_from_binary(data: bytes) -> object:
    assert data[:1] == JSONB_VERSION, data[:1]
    return orjson.loads(memoryview(data)[1:])


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
    conn = await connect(server_dsn)
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
