"""The ledger's storage adapter: SQL over asyncpg, nothing else.

`INVARIANT_QUERIES` are the ledger's own checks (SPEC 4); every integration and e2e test
runs them with the other modules' through gateway.invariants.check_invariants.
"""

from __future__ import annotations

from datetime import datetime

from ledger.accounts import AccountSpec
from ledger.transfers import Transfer

ENSURE_ACCOUNT = """
INSERT INTO accounts (mall_id, account, currency, bound, hot)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (mall_id, account) DO NOTHING
"""

POST_TRANSFER = "SELECT ledger_post_transfer($1, $2, $3, $4, $5, $6, $7)"

ACCOUNT_BALANCE = """
SELECT a.currency,
       CASE WHEN a.hot THEN coalesce((SELECT sum(e.amount_fen) FROM entries e
                                       WHERE e.mall_id = a.mall_id AND e.account = a.account), 0)::bigint
            ELSE a.balance_fen END AS balance_fen
  FROM accounts a
 WHERE a.mall_id = $1 AND a.account = $2
"""

# A non-hot account's balance, its row locked until the transaction ends (a store's
# available balance while a refund of that store is planned: one at a time).
BALANCE_FOR_UPDATE = """
SELECT balance_fen FROM accounts WHERE mall_id = $1 AND account = $2 AND NOT hot FOR UPDATE
"""

TRIAL_BALANCE = """
SELECT a.account, a.currency, coalesce(sum(e.amount_fen), 0)::bigint AS balance_fen
  FROM accounts a
  LEFT JOIN entries e ON e.mall_id = a.mall_id AND e.account = a.account
 WHERE a.mall_id = $1
 GROUP BY a.account, a.currency
 ORDER BY a.account
"""

# The ledger's own invariants (SPEC 4); each query returns one row per violation, with a
# human-readable `problem`. gateway.invariants.check_invariants runs them with every other
# module's.
INVARIANT_QUERIES = {
    "transfer_unbalanced": """
        SELECT mall_id || ' transfer ' || transfer_id || ' sums to ' || sum(amount_fen) AS problem
          FROM entries GROUP BY mall_id, transfer_id, currency HAVING sum(amount_fen) <> 0
    """,
    "currency_not_zero": """
        SELECT mall_id || ' ' || currency || ' balances sum to ' || sum(amount_fen) AS problem
          FROM entries GROUP BY mall_id, currency HAVING sum(amount_fen) <> 0
    """,
    "bound_broken": """
        SELECT a.mall_id || ' ' || a.account || ' is ' || s.total || ' (' || a.bound || ')' AS problem
          FROM accounts a
          JOIN (SELECT mall_id, account, sum(amount_fen) AS total FROM entries
                 GROUP BY mall_id, account) s USING (mall_id, account)
         WHERE (a.bound = 'non_negative' AND s.total < 0) OR (a.bound = 'non_positive' AND s.total > 0)
    """,
    "stored_balance_differs": """
        SELECT a.mall_id || ' ' || a.account || ' stores ' || a.balance_fen
               || ' but its entries sum to ' || coalesce(s.total, 0) AS problem
          FROM accounts a
          LEFT JOIN (SELECT mall_id, account, sum(amount_fen) AS total FROM entries
                      GROUP BY mall_id, account) s USING (mall_id, account)
         WHERE NOT a.hot AND a.balance_fen <> coalesce(s.total, 0)
    """,
    "entry_on_unknown_account": """
        SELECT e.mall_id || ' transfer ' || e.transfer_id || ' posts to unknown ' || e.account AS problem
          FROM entries e LEFT JOIN accounts a USING (mall_id, account)
         WHERE a.account IS NULL OR a.currency <> e.currency
    """,
}


async def ensure_accounts(conn, mall_id: str, specs: list[AccountSpec]) -> None:
    await conn.executemany(
        ENSURE_ACCOUNT,
        [(mall_id, s.name, s.currency, s.bound.value, s.hot) for s in specs],
    )


async def post_transfer(conn, mall_id: str, transfer: Transfer, created_at: datetime) -> int | None:
    """Post inside the caller's transaction; None if (kind, ref) was already posted."""
    return await conn.fetchval(
        POST_TRANSFER, mall_id, transfer.kind, transfer.ref, transfer.currency, created_at,
        transfer.accounts, transfer.amounts_fen,
    )


async def balance_fen(conn, mall_id: str, account: str) -> int | None:
    row = await conn.fetchrow(ACCOUNT_BALANCE, mall_id, account)
    return None if row is None else row["balance_fen"]


async def balance_for_update(conn, mall_id: str, account: str) -> int | None:
    return await conn.fetchval(BALANCE_FOR_UPDATE, mall_id, account)


async def trial_balance(conn, mall_id: str) -> list[tuple[str, str, int]]:
    """(account, currency, balance_fen) for every account, read from one snapshot."""
    rows = await conn.fetch(TRIAL_BALANCE, mall_id)
    return [(r["account"], r["currency"], r["balance_fen"]) for r in rows]
