"""Every module's invariants, checked together: what every integration and e2e test runs
at its end, and the load tests after a run.

Each module owns the checks over its own tables (`INVARIANT_QUERIES` in ledger/repo.py,
gateway/repo/orders.py, splitting/repo.py): one query per invariant, one row per
violation with a human-readable `problem`. A module that adds tables adds its dict here.
"""

from __future__ import annotations

from gateway.repo import orders as orders_repo
from ledger import repo as ledger_repo
from splitting import repo as splitting_repo

INVARIANTS = (ledger_repo.INVARIANT_QUERIES, orders_repo.INVARIANT_QUERIES, splitting_repo.INVARIANT_QUERIES)


async def check_invariants(conn) -> list[str]:
    """Every violation in this database, across all malls, read from one snapshot; an
    empty list when the books hold."""
    problems: list[str] = []
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        for queries in INVARIANTS:
            for name, query in queries.items():
                for row in await conn.fetch(query):
                    problems.append(f"{name}: {row['problem']}")
    return problems
