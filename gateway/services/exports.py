"""Ledger exports for finance: one consistent snapshot, streamed with flat memory.

Everything an export reads — the account list, the balances carried into the range and
the rows — comes from one REPEATABLE READ READ ONLY transaction, so payments committing
meanwhile are either wholly in the file or wholly out of it: an export always balances.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Awaitable, Callable

from ledger import export as formats
from ledger import repo as ledger_repo
from ledger.statements import CHINA

EXPORT_STATEMENT_TIMEOUT_MS = 3_600_000  # an hour: far above a million transfers, still a bound

Write = Callable[[bytes], Awaitable[None]]


@dataclass(frozen=True)
class ExportStarted:
    """What is known before the first row: how many transfers the file will hold."""

    transfers: int
    entries: int | None  # counted only when asked: it costs a second pass over the range


async def export(svc, mall_id: str, from_at: datetime, to_at: datetime, fmt: str, write: Write, *,
                 started: Callable[[ExportStarted], Awaitable[None]] | None = None,
                 count_entries: bool = False) -> int:
    """Write the ledger's transfers of [from_at, to_at) in `fmt` to `write`; their count."""
    assert fmt in formats.FORMATS, fmt
    async with svc.pool.acquire() as conn:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            count = await ledger_repo.export_count(conn, mall_id, from_at, to_at)
            entries = await ledger_repo.export_entry_count(conn, mall_id, from_at, to_at) if count_entries else None
            if started is not None:
                await started(ExportStarted(count, entries))
            names_json = None
            if fmt == "beancount":
                accounts = await ledger_repo.export_accounts(conn, mall_id)
                names = formats.beancount_names([a for a, _ in accounts])
                opening = await ledger_repo.trial_balance_at(conn, mall_id, from_at)
                from_on = from_at.astimezone(CHINA).date()
                await write(formats.beancount_header(accounts, names, opening, from_on).encode())
                names_json = json.dumps(names)
            output = write if fmt == "csv" else _unquoted(write)
            await ledger_repo.copy_export(conn, fmt, mall_id, from_at, to_at, output,
                                          beancount_names_json=names_json,
                                          statement_timeout_ms=EXPORT_STATEMENT_TIMEOUT_MS)
    return count


def _unquoted(write: Write) -> Write:
    """Rows written through COPY's csv format come wrapped in a quote byte the text never
    contains; dropping it is one bytes.replace per chunk."""
    quote = ledger_repo.RAW_ROW_QUOTE.encode()

    async def output(chunk: bytes) -> None:
        await write(chunk.replace(quote, b""))

    return output
