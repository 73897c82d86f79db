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


# Accounts as rows that join another transaction as data (payment success): written by
# migrations/0014 `accounts_insert_row` before the transaction's transfers post to them.
ACCOUNTS_TABLE = "accounts"


def account_row(mall_id: str, spec: AccountSpec) -> dict:
    """An account made on first use, as `accounts_insert_row` takes it."""
    return {"mall_id": mall_id, "account": spec.name, "currency": spec.currency, "bound": spec.bound.value,
            "hot": spec.hot}


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


# --- statements, balances at an instant (SPEC 6) ---------------------------------------
# A transfer's created_at is its instant: the balance "at T" is the sum of the entries of
# transfers created before T, so day D's closing balance is day D+1's opening balance.

STORE_ACCOUNTS = """
SELECT account FROM accounts WHERE mall_id = $1 AND starts_with(account, 'tenant:' || $2 || ':') ORDER BY account
"""

# Both instants at once, for the named accounts (hot or not: from the entries, not the
# running balance, so the instant can lie in the past).
BALANCES_AT_TWO_INSTANTS = """
SELECT a.account,
       coalesce(sum(e.amount_fen) FILTER (WHERE t.created_at < $3), 0)::bigint AS opening_fen,
       coalesce(sum(e.amount_fen) FILTER (WHERE t.created_at < $4), 0)::bigint AS closing_fen
  FROM accounts a
  LEFT JOIN entries e ON e.mall_id = a.mall_id AND e.account = a.account
  LEFT JOIN transfers t ON t.mall_id = e.mall_id AND t.transfer_id = e.transfer_id
 WHERE a.mall_id = $1 AND a.account = ANY($2::text[])
 GROUP BY a.account
"""

# Every transfer of [$3, $4) touching one of the store's accounts ($2), with all its
# entries and the business ids it belongs to (from the ref's key, per kind). The store's
# entries are found by the (mall_id, account, transfer_id) index, their transfers by key:
# no pass over the mall's other stores.
STATEMENT_TRANSFERS = """
WITH touched AS MATERIALIZED (
    SELECT DISTINCT e.transfer_id FROM entries e WHERE e.mall_id = $1 AND e.account = ANY($2::text[])
)
SELECT t.transfer_id, t.kind, t.ref, t.created_at, p.accounts, p.amounts,
       coalesce(o.out_trade_no, r.out_trade_no, s.out_trade_no, sr.out_trade_no) AS out_trade_no,
       coalesce(o.transaction_id, r.transaction_id, s.transaction_id) AS transaction_id,
       s.purpose AS split_purpose
  FROM touched x
  -- One key lookup per touched transfer (OFFSET 0 keeps the planner from turning this
  -- into a hash join over every transfer of the day, all stores' included).
 CROSS JOIN LATERAL (SELECT * FROM transfers t WHERE t.mall_id = $1 AND t.transfer_id = x.transfer_id OFFSET 0) t
 CROSS JOIN LATERAL (SELECT array_agg(e.account ORDER BY e.account) AS accounts,
                            array_agg(e.amount_fen ORDER BY e.account) AS amounts
                       FROM entries e WHERE e.mall_id = $1 AND e.transfer_id = t.transfer_id) p
  LEFT JOIN orders o ON t.kind = 'payment' AND o.mall_id = $1 AND o.sub_mchid = $5
                    AND o.out_trade_no = split_part(t.ref, '/', 2)
  LEFT JOIN refunds r ON t.kind IN ('refund', 'refund_held', 'owed_by_guide') AND r.mall_id = $1
                     AND r.sub_mchid = $5 AND r.out_refund_no = split_part(t.ref, '/', 2)
  LEFT JOIN split_orders s ON t.kind IN ('split', 'unfreeze', 'recovery') AND s.mall_id = $1
                          AND s.sub_mchid = $5 AND s.out_order_no = split_part(t.ref, '/', 2)
  LEFT JOIN split_returns sr ON t.kind = 'split_return' AND sr.mall_id = $1
                            AND sr.sub_mchid = $5 AND sr.out_return_no = split_part(t.ref, '/', 2)
 WHERE t.created_at >= $3 AND t.created_at < $4
 ORDER BY t.created_at, t.transfer_id
"""

# A whole day's statements at once (every store of the mall): one pass over the period's
# transfers instead of one index walk per store. One row per (transfer, store it touched),
# labelled from that store's own orders, refunds and split orders exactly as
# STATEMENT_TRANSFERS labels them.
STATEMENT_TRANSFERS_ALL_STORES = """
WITH period AS MATERIALIZED (
    SELECT t.mall_id, t.transfer_id, t.kind, t.ref, t.created_at FROM transfers t
     WHERE t.mall_id = $1 AND t.created_at >= $2 AND t.created_at < $3
), parts AS MATERIALIZED (
    -- The period's entries as one range of the entries' primary key (the transfer ids the
    -- period spans), not one key lookup per transfer.
    -- (Both arrays aggregate the same rows in the same order, so they pair up; which
    -- order does not matter to a statement.)
    SELECT e.transfer_id, array_agg(e.account) AS accounts, array_agg(e.amount_fen) AS amounts,
           array_agg(DISTINCT split_part(e.account, ':', 2))
               FILTER (WHERE starts_with(e.account, 'tenant:')) AS stores
      FROM entries e
     WHERE e.mall_id = $1
       AND e.transfer_id BETWEEN (SELECT min(d.transfer_id) FROM period d) AND (SELECT max(d.transfer_id) FROM period d)
     GROUP BY e.transfer_id
)
SELECT x.store AS sub_mchid, t.transfer_id, t.kind, t.ref, t.created_at, p.accounts, p.amounts,
       coalesce(o.out_trade_no, r.out_trade_no, s.out_trade_no, sr.out_trade_no) AS out_trade_no,
       coalesce(o.transaction_id, r.transaction_id, s.transaction_id) AS transaction_id,
       s.purpose AS split_purpose
  FROM period t
  JOIN parts p ON p.transfer_id = t.transfer_id
 CROSS JOIN LATERAL unnest(p.stores) AS x(store)
  LEFT JOIN orders o ON t.kind = 'payment' AND o.mall_id = $1 AND o.sub_mchid = x.store
                    AND o.out_trade_no = split_part(t.ref, '/', 2)
  LEFT JOIN refunds r ON t.kind IN ('refund', 'refund_held', 'owed_by_guide') AND r.mall_id = $1
                     AND r.sub_mchid = x.store AND r.out_refund_no = split_part(t.ref, '/', 2)
  LEFT JOIN split_orders s ON t.kind IN ('split', 'unfreeze', 'recovery') AND s.mall_id = $1
                          AND s.sub_mchid = x.store AND s.out_order_no = split_part(t.ref, '/', 2)
  LEFT JOIN split_returns sr ON t.kind = 'split_return' AND sr.mall_id = $1
                            AND sr.sub_mchid = x.store AND sr.out_return_no = split_part(t.ref, '/', 2)
"""

# For that one big read, inside its transaction: no JIT compile (seconds, for a plan that
# runs once), room to hash the day in memory instead of spilling to disk, and a statement
# timeout that fits a day of a busy mall (the pool's default is for single requests).
STATEMENT_BATCH_SETTINGS = """
SELECT set_config('jit', 'off', true), set_config('work_mem', '64MB', true),
       set_config('statement_timeout', '300s', true)
"""

# Every store account of the mall (`tenant:{sub_mchid}:...`).
ALL_STORE_ACCOUNTS = "SELECT account FROM accounts WHERE mall_id = $1 AND starts_with(account, 'tenant:') ORDER BY account"

TRIAL_BALANCE_AT = """
SELECT a.account, a.currency, coalesce(sum(e.amount_fen) FILTER (WHERE t.created_at < $2), 0)::bigint AS balance_fen
  FROM accounts a
  LEFT JOIN entries e ON e.mall_id = a.mall_id AND e.account = a.account
  LEFT JOIN transfers t ON t.mall_id = e.mall_id AND t.transfer_id = e.transfer_id
 WHERE a.mall_id = $1
 GROUP BY a.account, a.currency
 ORDER BY a.account
"""

ACCOUNT_BALANCE_AT = """
SELECT a.account, a.currency, coalesce(sum(e.amount_fen) FILTER (WHERE t.created_at < $3), 0)::bigint AS balance_fen
  FROM accounts a
  LEFT JOIN entries e ON e.mall_id = a.mall_id AND e.account = a.account
  LEFT JOIN transfers t ON t.mall_id = e.mall_id AND t.transfer_id = e.transfer_id
 WHERE a.mall_id = $1 AND a.account = ANY($2::text[])
 GROUP BY a.account, a.currency
 ORDER BY a.account
"""


async def store_accounts(conn, mall_id: str, sub_mchid: str) -> list[str]:
    return [r["account"] for r in await conn.fetch(STORE_ACCOUNTS, mall_id, sub_mchid)]


async def balances_at_two_instants(conn, mall_id: str, names: list[str], first_at: datetime,
                                   second_at: datetime) -> tuple[dict[str, int], dict[str, int]]:
    rows = await conn.fetch(BALANCES_AT_TWO_INSTANTS, mall_id, names, first_at, second_at)
    return ({r["account"]: r["opening_fen"] for r in rows}, {r["account"]: r["closing_fen"] for r in rows})


async def statement_transfers(conn, mall_id: str, sub_mchid: str, names: list[str], from_at: datetime,
                              to_at: datetime) -> list:
    """Rows of STATEMENT_TRANSFERS; ledger.statements.LedgerTransfer is built by the caller."""
    return await conn.fetch(STATEMENT_TRANSFERS, mall_id, names, from_at, to_at, sub_mchid)


async def all_store_accounts(conn, mall_id: str) -> list[str]:
    return [r["account"] for r in await conn.fetch(ALL_STORE_ACCOUNTS, mall_id)]


async def statement_transfers_all_stores(conn, mall_id: str, from_at: datetime, to_at: datetime) -> list:
    """Rows of STATEMENT_TRANSFERS_ALL_STORES, each naming the store (`sub_mchid`) it is for,
    in no order (a statement orders its lines). Run inside a transaction."""
    await conn.execute(STATEMENT_BATCH_SETTINGS)
    return await conn.fetch(STATEMENT_TRANSFERS_ALL_STORES, mall_id, from_at, to_at)


async def trial_balance_at(conn, mall_id: str, at: datetime) -> list[tuple[str, str, int]]:
    rows = await conn.fetch(TRIAL_BALANCE_AT, mall_id, at)
    return [(r["account"], r["currency"], r["balance_fen"]) for r in rows]


async def balances_at(conn, mall_id: str, names: list[str], at: datetime) -> list[tuple[str, str, int]]:
    rows = await conn.fetch(ACCOUNT_BALANCE_AT, mall_id, names, at)
    return [(r["account"], r["currency"], r["balance_fen"]) for r in rows]


# --- exports: PostgreSQL formats the rows inside COPY ... TO STDOUT --------------------
# $1 mall, [$2, $3) the range of instants. Run inside one REPEATABLE READ READ ONLY
# transaction with the header queries, so the whole file is one snapshot.

EXPORT_ACCOUNTS = "SELECT account, currency FROM accounts WHERE mall_id = $1 ORDER BY account"

EXPORT_COUNT = "SELECT count(*) FROM transfers WHERE mall_id = $1 AND created_at >= $2 AND created_at < $3"

# A second pass over the range; only for a progress bar counted in CSV rows.
EXPORT_ENTRY_COUNT = """
SELECT count(*) FROM entries e JOIN transfers t ON t.mall_id = e.mall_id AND t.transfer_id = e.transfer_id
 WHERE t.mall_id = $1 AND t.created_at >= $2 AND t.created_at < $3
"""

# A long export must not trip the pool's per-statement timeout; it still has a bound.
EXPORT_STATEMENT_TIMEOUT = "SELECT set_config('statement_timeout', $1, true)"

_AMOUNT_TEXT = """CASE WHEN e.currency = 'CNY' THEN (e.amount_fen::numeric / 100)::numeric(20, 2)::text
            ELSE e.amount_fen::text END"""

# Instants are written by PostgreSQL's own timestamptz output in UTC (EXPORT_TIMEZONE is
# set for the export's transaction): to_char costs more than the whole row otherwise.
EXPORT_TIMEZONE = "SELECT set_config('TimeZone', 'UTC', true)"

# One row per entry: the transfer's columns repeated, its amount in fen (exact integers;
# yuan would cost a numeric division per row, and the file is for machines).
EXPORT_CSV = """
SELECT t.transfer_id, t.created_at, t.kind, t.ref, t.currency, e.account, e.amount_fen
  FROM transfers t
  JOIN entries e ON e.mall_id = t.mall_id AND e.transfer_id = t.transfer_id
 WHERE t.mall_id = $1 AND t.created_at >= $2 AND t.created_at < $3
 ORDER BY t.created_at, t.transfer_id, e.account
"""

# One JSON object per transfer with its postings. Written through COPY's csv format with
# a quote and delimiter that JSON never contains raw (\x01, \x02), so rows come out as is.
EXPORT_JSONL = """
SELECT json_build_object('transfer_id', t.transfer_id, 'created_at', t.created_at, 'kind', t.kind, 'ref', t.ref,
                         'currency', t.currency,
                         'postings', json_agg(json_build_object('account', e.account, 'amount_fen', e.amount_fen)
                                              ORDER BY e.account))
  FROM transfers t
  JOIN entries e ON e.mall_id = t.mall_id AND e.transfer_id = t.transfer_id
 WHERE t.mall_id = $1 AND t.created_at >= $2 AND t.created_at < $3
 GROUP BY t.mall_id, t.transfer_id
 ORDER BY t.created_at, t.transfer_id
"""

# One beancount transaction per transfer, dated in China time; $4 maps ledger names to
# beancount names (ledger.export). Multi-line rows come out wrapped in the \x01 quote,
# which the reader strips (the text itself never contains it).
EXPORT_BEANCOUNT = f"""
SELECT (t.created_at AT TIME ZONE 'Asia/Shanghai')::date || ' * "' || t.kind || '" "' || t.ref
       || E'"\n  transfer_id: "' || t.transfer_id || '"'
       || string_agg(E'\n  ' || ($4::text::jsonb ->> e.account) || '  ' || {_AMOUNT_TEXT} || ' ' || e.currency,
                     '' ORDER BY e.account)
       || E'\n'
  FROM transfers t
  JOIN entries e ON e.mall_id = t.mall_id AND e.transfer_id = t.transfer_id
 WHERE t.mall_id = $1 AND t.created_at >= $2 AND t.created_at < $3
 GROUP BY t.mall_id, t.transfer_id
 ORDER BY t.created_at, t.transfer_id
"""

EXPORT_QUERIES = {"csv": EXPORT_CSV, "jsonl": EXPORT_JSONL, "beancount": EXPORT_BEANCOUNT}
RAW_ROW_QUOTE, RAW_ROW_DELIMITER = "\x01", "\x02"


async def export_accounts(conn, mall_id: str) -> list[tuple[str, str]]:
    return [(r["account"], r["currency"]) for r in await conn.fetch(EXPORT_ACCOUNTS, mall_id)]


async def export_count(conn, mall_id: str, from_at: datetime, to_at: datetime) -> int:
    return await conn.fetchval(EXPORT_COUNT, mall_id, from_at, to_at)


async def export_entry_count(conn, mall_id: str, from_at: datetime, to_at: datetime) -> int:
    return await conn.fetchval(EXPORT_ENTRY_COUNT, mall_id, from_at, to_at)


async def copy_export(conn, fmt: str, mall_id: str, from_at: datetime, to_at: datetime, output, *,
                      beancount_names_json: str | None = None, statement_timeout_ms: int) -> None:
    """Stream the export's rows to `output` (an async callable taking bytes) by COPY."""
    await conn.fetchval(EXPORT_STATEMENT_TIMEOUT, str(statement_timeout_ms))
    await conn.fetchval(EXPORT_TIMEZONE)
    args = [mall_id, from_at, to_at] + ([beancount_names_json] if fmt == "beancount" else [])
    if fmt == "csv":
        await conn.copy_from_query(EXPORT_QUERIES[fmt], *args, output=output, format="csv", header=True)
    else:
        await conn.copy_from_query(EXPORT_QUERIES[fmt], *args, output=output, format="csv",
                                   quote=RAW_ROW_QUOTE, delimiter=RAW_ROW_DELIMITER)
