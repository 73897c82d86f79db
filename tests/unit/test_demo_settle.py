"""The demo waits for background work as long as it progresses, not for a fixed time."""

from __future__ import annotations

import io
from contextlib import asynccontextmanager

from gateway.demo import run


class _Counts:
    """Stands in for the pool: each look at the work left returns the next count."""

    def __init__(self, counts):
        self.counts = list(counts)

    @asynccontextmanager
    async def acquire(self):
        yield self

    async def fetchval(self, _query):
        return self.counts.pop(0) if len(self.counts) > 1 else self.counts[0]


class _Svc:
    def __init__(self, counts):
        self.pool = _Counts(counts)


async def test_waits_while_the_work_left_falls(monkeypatch):
    monkeypatch.setattr(run, "SETTLE_STALL_S", 0.8)  # each look is 0.5 s apart: a stall is two looks
    out = io.StringIO()
    await run._settle(_Svc([9, 8, 7, 6, 5, 4, 3, 2, 1, 0]), out, "work")
    assert " done (" in out.getvalue()


async def test_gives_up_once_nothing_finishes(monkeypatch):
    monkeypatch.setattr(run, "SETTLE_STALL_S", 0.8)
    out = io.StringIO()
    await run._settle(_Svc([5, 4, 4]), out, "work")
    assert out.getvalue().startswith("  waiting for work ... still 4 after ")
