"""The readiness check's one query: the database answers."""

from __future__ import annotations

PING = "SELECT 1"


async def ping(conn) -> None:
    await conn.fetchval(PING)
