"""Replay protection's storage: each request's (client, nonce) remembered in PostgreSQL,
many concurrent requests in one statement, or in the first statement the request runs
anyway.

A request waits for the statement that records its nonce, so a replay is refused before
it has any effect, whichever gateway process it reaches (the nonce's primary key makes
two statements recording it wait for each other, and the second finds it). While one
`NonceBook` statement runs, the nonces of requests arriving meanwhile gather for the
next, so under load a statement (one database transaction) carries many nonces, and when
idle a request waits for no one. A request whose first statement records its nonce itself
(`RequestNonce`, order creation and queries) costs no statement of its own.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime

from gateway.errors import SignError
from gateway.repo import clients


def replayed() -> SignError:
    return SignError("nonce_replayed", "nonce_str was already used")


@dataclass(slots=True)
class RequestNonce:
    """A signed request's nonce, not yet recorded: the first statement its handler runs
    records it (`gateway.repo.clients.REQUEST_NONCE_CTES`) and says whether it was new, and
    `spend` refuses a replay right then, before the request has any effect. A handler that
    ends without such a statement (a refusal before it, a failed statement) leaves the
    nonce unspent, and the book records it on the way out (`gateway.api.middleware`)."""

    client_id: str
    nonce: str
    seen_at: datetime
    spent: bool = False

    def spend(self, fresh: bool) -> None:
        """After the statement that recorded the nonce (`fresh`) or found it already there."""
        assert not self.spent, "a request's nonce is recorded once"
        self.spent = True
        if not fresh:
            raise replayed()

    def rolled_back(self) -> None:
        """The transaction of the statement that recorded it rolled back: not recorded after all."""
        self.spent = False


class NonceBook:
    def __init__(self, batch_max: int):
        assert batch_max > 0, batch_max
        self._batch_max = batch_max
        self._waiting: list[tuple[str, str, datetime, asyncio.Future]] = []
        self._writer: asyncio.Task | None = None

    async def record(self, pool, nonce: RequestNonce) -> None:
        """Record a request's nonce in a statement of its own; a replay is refused."""
        nonce.spend(await self.remember(pool, nonce.client_id, nonce.nonce, nonce.seen_at))

    async def remember(self, pool, client_id: str, nonce: str, seen_at: datetime) -> bool:
        """True when the nonce is new for this client; False for a replay."""
        answer = asyncio.get_running_loop().create_future()
        self._waiting.append((client_id, nonce, seen_at, answer))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_all(pool))
        return await answer

    async def _write_all(self, pool) -> None:
        while self._waiting:
            batch = self._waiting[:self._batch_max]
            del self._waiting[:self._batch_max]
            try:
                async with pool.acquire() as conn:
                    stored = await clients.remember_nonces(conn, [(c, n, s) for c, n, s, _ in batch])
            except BaseException as exc:  # handed to every waiter; the next batch tries again
                for *_, answer in batch:
                    if not answer.done():
                        answer.set_exception(exc)
                if isinstance(exc, asyncio.CancelledError):
                    raise
                continue
            for client_id, nonce, _, answer in batch:
                fresh = (client_id, nonce) in stored
                stored.discard((client_id, nonce))  # the same nonce twice in one batch: once fresh
                if not answer.done():
                    answer.set_result(fresh)
