"""The ledger's storage adapter: SQL over asyncpg, nothing else.

The invariant queries are what every integration and e2e test runs at its end (SPEC 4);
`check_invariants` returns the violations it finds, an empty list when the books hold.
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

TRIAL_BALANCE = """
SELECT a.account, a.currency, coalesce(sum(e.amount_fen), 0)::bigint AS balance_fen
  FROM accounts a
  LEFT JOIN entries e ON e.mall_id = a.mall_id AND e.account = a.account
 WHERE a.mall_id = $1
 GROUP BY a.account, a.currency
 ORDER BY a.account
"""

# Each query returns one row per violation, with a human-readable `problem`.
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
    "paid_order_without_one_payment": """
        SELECT o.mall_id || ' order ' || o.sub_mchid || '/' || o.out_trade_no || ' is ' || o.state
               || ' with ' || count(t.transfer_id) || ' payment transfers' AS problem
          FROM orders o
          LEFT JOIN transfers t ON t.mall_id = o.mall_id AND t.kind = 'payment'
                               AND t.ref = o.sub_mchid || '/' || o.out_trade_no
         GROUP BY o.mall_id, o.sub_mchid, o.out_trade_no, o.state
        HAVING count(t.transfer_id) <> (CASE WHEN o.state = 'SUCCESS' THEN 1 ELSE 0 END)
    """,
    "payment_amount_differs": """
        SELECT o.mall_id || ' order ' || o.sub_mchid || '/' || o.out_trade_no || ' paid '
               || o.total_fen || ' but the ledger took ' || -e.amount_fen || ' from payer' AS problem
          FROM orders o
          JOIN transfers t ON t.mall_id = o.mall_id AND t.kind = 'payment'
                          AND t.ref = o.sub_mchid || '/' || o.out_trade_no
          JOIN entries e ON e.mall_id = t.mall_id AND e.transfer_id = t.transfer_id AND e.account = 'payer'
         WHERE -e.amount_fen <> o.total_fen
    """,
    "splits_exceed_cap": """
        SELECT f.mall_id || ' order ' || f.sub_mchid || '/' || f.out_trade_no || ' split '
               || sum(e.amount_fen) || ' away, cap ' || (f.paid_fen * f.max_ratio_bps / 10000) AS problem
          FROM order_funds f
          JOIN split_orders s ON s.mall_id = f.mall_id AND s.sub_mchid = f.sub_mchid
                             AND s.out_trade_no = f.out_trade_no AND s.kind = 'split'
          JOIN transfers t ON t.mall_id = s.mall_id AND t.kind = 'split'
                          AND t.ref = s.sub_mchid || '/' || s.out_order_no
          JOIN entries e ON e.mall_id = t.mall_id AND e.transfer_id = t.transfer_id AND e.amount_fen > 0
         GROUP BY f.mall_id, f.sub_mchid, f.out_trade_no, f.paid_fen, f.max_ratio_bps
        HAVING sum(e.amount_fen) > f.paid_fen * f.max_ratio_bps / 10000
    """,
    "refunds_exceed_paid": """
        SELECT f.mall_id || ' order ' || f.sub_mchid || '/' || f.out_trade_no || ' refunded '
               || sum(e.amount_fen) || ' of ' || f.paid_fen AS problem
          FROM order_funds f
          JOIN refunds r ON r.mall_id = f.mall_id AND r.sub_mchid = f.sub_mchid AND r.out_trade_no = f.out_trade_no
          JOIN transfers t ON t.mall_id = r.mall_id AND t.kind = 'refund'
                          AND t.ref = r.sub_mchid || '/' || r.out_refund_no
          JOIN entries e ON e.mall_id = t.mall_id AND e.transfer_id = t.transfer_id AND e.account = 'payer'
         GROUP BY f.mall_id, f.sub_mchid, f.out_trade_no, f.paid_fen
        HAVING sum(e.amount_fen) > f.paid_fen
    """,
    "refund_without_one_transfer_and_notification": """
        SELECT r.mall_id || ' refund ' || r.sub_mchid || '/' || r.out_refund_no || ' is ' || r.state
               || ' with ' || (SELECT count(*) FROM transfers t WHERE t.mall_id = r.mall_id AND t.kind = 'refund'
                                  AND t.ref = r.sub_mchid || '/' || r.out_refund_no)
               || ' transfers and '
               || (SELECT count(*) FROM outbox x WHERE x.mall_id = r.mall_id AND x.event_type = 'REFUND.SUCCESS'
                      AND x.ref = r.sub_mchid || '/' || r.out_refund_no) || ' notifications' AS problem
          FROM refunds r
         WHERE (SELECT count(*) FROM transfers t WHERE t.mall_id = r.mall_id AND t.kind = 'refund'
                   AND t.ref = r.sub_mchid || '/' || r.out_refund_no) <> (CASE WHEN r.state = 'SUCCESS' THEN 1 ELSE 0 END)
            OR (SELECT count(*) FROM outbox x WHERE x.mall_id = r.mall_id AND x.event_type = 'REFUND.SUCCESS'
                   AND x.ref = r.sub_mchid || '/' || r.out_refund_no) <> (CASE WHEN r.state = 'SUCCESS' THEN 1 ELSE 0 END)
    """,
    "paid_order_without_funds": """
        SELECT o.mall_id || ' order ' || o.sub_mchid || '/' || o.out_trade_no || ' is ' || o.state
               || ' with ' || count(f.out_trade_no) || ' funds rows' AS problem
          FROM orders o
          LEFT JOIN order_funds f USING (mall_id, sub_mchid, out_trade_no)
         GROUP BY o.mall_id, o.sub_mchid, o.out_trade_no, o.state
        HAVING count(f.out_trade_no) <> (CASE WHEN o.state = 'SUCCESS' THEN 1 ELSE 0 END)
    """,
    "paid_order_without_one_notification": """
        SELECT o.mall_id || ' order ' || o.sub_mchid || '/' || o.out_trade_no || ' is ' || o.state
               || ' with ' || count(x.event_id) || ' TRANSACTION.SUCCESS outbox rows' AS problem
          FROM orders o
          LEFT JOIN outbox x ON x.mall_id = o.mall_id AND x.event_type = 'TRANSACTION.SUCCESS'
                            AND x.ref = o.sub_mchid || '/' || o.out_trade_no
         GROUP BY o.mall_id, o.sub_mchid, o.out_trade_no, o.state
        HAVING count(x.event_id) <> (CASE WHEN o.state = 'SUCCESS' THEN 1 ELSE 0 END)
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


async def trial_balance(conn, mall_id: str) -> list[tuple[str, str, int]]:
    """(account, currency, balance_fen) for every account, read from one snapshot."""
    rows = await conn.fetch(TRIAL_BALANCE, mall_id)
    return [(r["account"], r["currency"], r["balance_fen"]) for r in rows]


async def check_invariants(conn) -> list[str]:
    """Every violation of SPEC 4's invariants in this database, across all malls."""
    problems: list[str] = []
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        for name, query in INVARIANT_QUERIES.items():
            for row in await conn.fetch(query):
                problems.append(f"{name}: {row['problem']}")
    return problems
