"""The ledger's storage adapter: SQL over asyncpg, nothing else.

`INVARIANT_QUERIES` are the ledger's own checks (SPEC 4); every integration and e2e test
runs them with the other modules' through gateway.invariants.check_invariants.
"""

from __future__ import annotations

import re
from datetime import datetime

import orjson

from ledger.accounts import AccountSpec
from ledger.statements import (COLUMN_OF_ACCOUNT, COLUMN_OF_PREFIX, COLUMNS, LABELS, RECEIVED_COLUMNS,
                               SPLIT_PURPOSE_LABELS)
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
# the SQL function `accounts_insert_row` before the transaction's transfers post to them.
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


# --- statements shaped by the database ------------------------------------------------
# The same lines as STATEMENT_TRANSFERS read through ledger.statements, but aggregated and
# written out here: each line's columns from its counterparty entries (the rules of
# ledger.statements.COLUMN_OF_ACCOUNT / COLUMN_OF_PREFIX), then its CSV row and JSON object
# exactly as ledger.statement_formats writes a Statement's (tests compare the bytes), then
# per store: a summary row (count, totals, each account's movement), then its lines in
# order, one row each with its written texts. Decoding a quarter of a million rows of
# columns and formatting them in Python cost more than the whole query did.
#
# The line sources below give CTEs `period` (the transfers, with kind, ref, key, created_at),
# `ent` (their entries), `own` (the entries on a store's accounts, with `store`) and
# `balances` (the store's opening and closing balances, when the source reads them).
# Parameters shared by every variant: $1 the mall, $2 / $3 the labels by kind / by split
# purpose (JSON texts), $4 / $5 the period [from, to).


def _sql_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _column_sums() -> str:
    """Per transfer: each column's counterparty sum, the received columns negated, and
    `other_all`, the entries no rule claims (every store's own entries among them), over
    `classed`: the entries, each with the index in COLUMNS of the column it lands in."""
    sums = []
    for n, column in enumerate(COLUMNS):
        if column in COLUMN_OF_ACCOUNT.values() or column in COLUMN_OF_PREFIX.values():
            sign = "-" if column in RECEIVED_COLUMNS else ""
            sums.append(f"{sign}coalesce(sum(amount_fen) FILTER (WHERE col = {n}), 0) AS {column}")
    sums.append(f"coalesce(sum(amount_fen) FILTER (WHERE col = {COLUMNS.index('other')}), 0) AS other_all")
    return ",\n           ".join(sums)


def _column_index() -> str:
    """The index in COLUMNS of the column an entry on `account` lands in, exact names first."""
    tests = [f"WHEN {_sql_text(a)} THEN {COLUMNS.index(c)}" for a, c in COLUMN_OF_ACCOUNT.items()]
    prefixes = [f"WHEN starts_with(account, {_sql_text(p)}) THEN {COLUMNS.index(c)}" for p, c in COLUMN_OF_PREFIX.items()]
    return (f"CASE account {' '.join(tests)} ELSE CASE {' '.join(prefixes)} "
            f"ELSE {COLUMNS.index('other')} END END")


_CSV_SPECIAL = "E'[,\"\\r\\n]'"   # what makes Python's csv writer quote a field


def _csv_field(value: str) -> str:
    """A non-null text as the CSV field "`value" (quoted as csv.writer quotes)."""
    return (f"CASE WHEN {value} ~ {_CSV_SPECIAL} THEN '\"`' || replace({value}, '\"', '\"\"') || '\"' "
            f"ELSE '`' || {value} END")


def _csv_yuan(amount: str) -> str:
    # numeric times 0.01 has exactly two decimals: ledger.money.yuan's text
    return f"CASE WHEN {amount} = 0 THEN '`0.00' ELSE '`' || ({amount} * 0.01)::text END"


def _csv_row() -> str:
    fields = ["'`' || left(l.china_at, 19)", _csv_field("l.label"), _csv_field("l.store"),
              f"CASE WHEN l.out_trade_no IS NULL THEN '`' ELSE {_csv_field('l.out_trade_no')} END",
              f"CASE WHEN l.transaction_id IS NULL THEN '`' ELSE {_csv_field('l.transaction_id')} END",
              _csv_field("l.reference"), "'`' || l.transfer_id",
              *(_csv_yuan(f"l.{column}") for column in COLUMNS)]
    return " || ',' || ".join(f"({f})" for f in fields) + " || E'\\r\\n'"


def _json_object() -> str:
    # datetime.isoformat() of the UTC instant: microseconds only when there are some, six digits.
    time = ("left(l.utc_at, 10) || 'T' || substr(l.utc_at, 12, 8) "
            "|| CASE WHEN length(l.utc_at) > 19 THEN rpad(substr(l.utc_at, 20), 7, '0') ELSE '' END || '+00:00'")
    parts = [f"'{{\"time\":\"' || {time} || '\",\"type\":' || to_json(l.kind)::text",
             "',\"label\":' || to_json(l.label)::text",
             "',\"out_trade_no\":' || coalesce(to_json(l.out_trade_no)::text, 'null')",
             "',\"transaction_id\":' || coalesce(to_json(l.transaction_id)::text, 'null')",
             "',\"reference\":' || to_json(l.reference)::text",
             "',\"transfer_id\":' || l.transfer_id",
             *(f"',\"{column}\":' || l.{column}" for column in COLUMNS)]
    return " || ".join(parts) + " || '}'"


def _time_texts(*, csv: bool, json: bool) -> str:
    """The line's instant as PostgreSQL writes it (ISO, SHAPED_SETTINGS), in China time for
    the CSV and in UTC for the JSON: `china_at, utc_at`."""
    china_at = "((t.created_at AT TIME ZONE 'UTC') + interval '8 hours')::text" if csv else "NULL"
    utc_at = "(t.created_at AT TIME ZONE 'UTC')::text" if json else "NULL"
    return f"{china_at}, {utc_at}"


# Where a line's business ids come from, by kind of transfer: its order, refund, split
# order or split return, keyed by the store and the ref's key.
_LOOKUPS = (
    ("o", "orders", "out_trade_no", ("payment",)),
    ("r", "refunds", "out_refund_no", ("refund", "refund_held", "owed_by_guide")),
    ("s", "split_orders", "out_order_no", ("split", "unfreeze", "recovery")),
    ("sr", "split_returns", "out_return_no", ("split_return",)),
)


def _label_lookups(*, lateral: bool) -> str:
    """LEFT JOINs of each line to the row its ids come from: hash joins for a whole mall's
    day, or (`lateral`) one key lookup per line, only in the table of the line's kind."""
    joins = []
    for alias, table, key, kinds in _LOOKUPS:
        kind_test = f"t.kind IN ({', '.join(map(_sql_text, kinds))})"
        match = f"{alias}.mall_id = $1 AND {alias}.sub_mchid = x.store AND {alias}.{key} = t.key"
        if lateral:
            joins.append(f"LEFT JOIN LATERAL (SELECT * FROM {table} {alias} WHERE {kind_test} AND {match} OFFSET 0) "
                         f"{alias} ON true")
        else:
            joins.append(f"LEFT JOIN {table} {alias} ON {kind_test} AND {match}")
    return "\n      ".join(joins)


def _statement_lines_sql(source: str, *, csv: bool, json: bool, lateral: bool) -> str:
    """The query over `source`: per store with a line, first a summary row (count, totals,
    each account's movement), then one row per line in order with its CSV row and/or JSON
    object. Sorted while narrow; written out after (the texts are most of the bytes)."""
    csv_line = f"CASE WHEN l.transfer_id IS NOT NULL THEN {_csv_row()} END" if csv else "NULL::text"
    json_line = (f"CASE WHEN l.transfer_id IS NOT NULL THEN {_json_object()} END" if json else "NULL::text")
    column_values = ", ".join(f"c.{column}" for column in COLUMNS if column not in ("payout", "other", "net"))
    return f"""
{source},
labels AS MATERIALIZED (  -- (texts, whatever jsonb codec the connection has)
    SELECT $2::text::jsonb AS by_kind, $3::text::jsonb AS by_purpose
), sides AS (
    SELECT transfer_id,
           {_column_sums()}
      FROM (SELECT transfer_id, amount_fen, {_column_index()} AS col FROM ent) classed
     GROUP BY transfer_id
), per_store AS (
    SELECT transfer_id, store, sum(amount_fen) AS own,
           coalesce(sum(amount_fen) FILTER (WHERE account = 'tenant:' || store || ':settled'), 0) AS payout
      FROM own GROUP BY transfer_id, store
), moves AS (
    SELECT store, array_agg(account ORDER BY account) AS accounts, array_agg(moved ORDER BY account) AS moved
      FROM (SELECT store, account, sum(amount_fen)::bigint AS moved FROM own GROUP BY store, account) m
     GROUP BY store
), summaries AS (
    SELECT x.store, count(*) AS count,
           ARRAY[{", ".join(f"sum(c.{column})" for column in COLUMNS if column not in ("payout", "other", "net"))},
                 sum(x.payout), sum(c.other_all - x.own), sum(x.own - x.payout)]::bigint[] AS totals
      FROM per_store x JOIN sides c ON c.transfer_id = x.transfer_id
     GROUP BY x.store
)
SELECT l.store, l.count, l.totals, l.accounts, l.moved, l.balance_accounts, l.opening, l.closing, {csv_line} AS csv_line, {json_line} AS json_line
  FROM (
    -- Per store: its summary row first (no instant), then its lines in order.
    SELECT s.store, NULL::timestamptz AS created_at, NULL::bigint AS transfer_id, s.count, s.totals,
           m.accounts, m.moved, b.accounts AS balance_accounts, b.opening, b.closing, NULL::text AS china_at, NULL::text AS utc_at, NULL::text AS kind, NULL::text AS label, NULL::text AS reference,
           NULL::text AS out_trade_no, NULL::text AS transaction_id,
           {", ".join(f"NULL::bigint AS {column}" for column in COLUMNS)}
      FROM summaries s JOIN moves m ON m.store = s.store LEFT JOIN balances b ON b.store = s.store
    UNION ALL
    SELECT x.store, t.created_at, t.transfer_id, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
           {_time_texts(csv=csv, json=json)}, t.kind,
           coalesce(CASE WHEN t.kind = 'split' THEN labels.by_purpose ->> s.purpose END, labels.by_kind ->> t.kind,
                    t.kind),
           CASE WHEN strpos(t.ref, '/') > 0 THEN substr(t.ref, strpos(t.ref, '/') + 1) ELSE t.ref END,
           coalesce(o.out_trade_no, r.out_trade_no, s.out_trade_no, sr.out_trade_no),
           coalesce(o.transaction_id, r.transaction_id, s.transaction_id),
           {column_values}, x.payout, c.other_all - x.own, x.own - x.payout
      FROM per_store x
      JOIN sides c ON c.transfer_id = x.transfer_id
      JOIN period t ON t.transfer_id = x.transfer_id
     CROSS JOIN labels
{_label_lookups(lateral=lateral)}
     ORDER BY 1, 2 NULLS FIRST, 3
  ) l
 ORDER BY l.store, l.created_at NULLS FIRST, l.transfer_id
"""


# One store ($6, its accounts $7): the store's entries by the (mall_id, account,
# transfer_id) index, their transfers by key, no pass over the mall's other stores.
# (Fragments, not queries: lower-case names keep them out of the checks of whole queries.)
_one_store_source = """
WITH touched_entries AS MATERIALIZED (
    SELECT e.transfer_id, e.account, e.amount_fen FROM entries e WHERE e.mall_id = $1 AND e.account = ANY($7::text[])
), touched AS MATERIALIZED (
    SELECT t.transfer_id, t.kind, t.ref, t.created_at
      FROM (SELECT DISTINCT transfer_id FROM touched_entries) x
     CROSS JOIN LATERAL (SELECT * FROM transfers t WHERE t.mall_id = $1 AND t.transfer_id = x.transfer_id OFFSET 0) t
), period AS MATERIALIZED (
    SELECT transfer_id, kind, ref, split_part(ref, '/', 2) AS key, created_at FROM touched
     WHERE created_at >= $4 AND created_at < $5
), ent AS MATERIALIZED (
    SELECT e.transfer_id, e.account, e.amount_fen
      FROM period p
     CROSS JOIN LATERAL (SELECT * FROM entries e WHERE e.mall_id = $1 AND e.transfer_id = p.transfer_id OFFSET 0) e
), own AS (
    SELECT transfer_id, $6::text AS store, account, amount_fen FROM ent WHERE starts_with(account, 'tenant:' || $6 || ':')
), balances AS (
    -- The store's accounts at both instants, from its entries found by account (the lines'
    -- come from their transfers' entries): what BALANCES_AT_TWO_INSTANTS reads, in passing.
    SELECT $6::text AS store, array_agg(account ORDER BY account) AS accounts,
           array_agg(opening ORDER BY account) AS opening, array_agg(closing ORDER BY account) AS closing
      FROM (SELECT e.account, coalesce(sum(e.amount_fen) FILTER (WHERE t.created_at < $4), 0)::bigint AS opening,
                   coalesce(sum(e.amount_fen) FILTER (WHERE t.created_at < $5), 0)::bigint AS closing
              FROM touched_entries e JOIN touched t ON t.transfer_id = e.transfer_id
             GROUP BY e.account) b
)"""

# Every store of the mall at once: one pass over the period's transfers and their entries
# (one range of the entries' primary key: $6..$7, the least and greatest transfer id of the
# period, PERIOD_TRANSFER_IDS), stores told apart by their account names; only the stores
# in $8 when it is not NULL (a share of the stores, for one of several connections).
_all_stores_source = """
WITH period AS MATERIALIZED (
    SELECT t.transfer_id, t.kind, t.ref, split_part(t.ref, '/', 2) AS key, t.created_at FROM transfers t
     WHERE t.mall_id = $1 AND t.created_at >= $4 AND t.created_at < $5
), ent AS MATERIALIZED (
    -- (Transfers of other periods inside the id range get a row in `sides` that no line joins.)
    SELECT e.transfer_id, e.account, e.amount_fen
      FROM entries e
     WHERE e.mall_id = $1 AND e.transfer_id BETWEEN $6 AND $7
), own AS (
    SELECT e.transfer_id, split_part(e.account, ':', 2) AS store, e.account, e.amount_fen
      FROM ent e JOIN period d ON d.transfer_id = e.transfer_id
     WHERE starts_with(e.account, 'tenant:') AND strpos(substr(e.account, 8), ':') > 0
       AND ($8::text[] IS NULL OR split_part(e.account, ':', 2) = ANY($8::text[]))
), balances AS (  -- (read apart, by BALANCES_AT_TWO_INSTANTS)
    SELECT NULL::text AS store, NULL::text[] AS accounts, NULL::bigint[] AS opening, NULL::bigint[] AS closing
     WHERE false
)"""

# The least and greatest transfer id of a period, and how many transfers it has (by the
# transfers_by_time index).
PERIOD_TRANSFER_IDS = """
SELECT min(transfer_id) AS first_id, max(transfer_id) AS last_id, count(*) AS transfers
  FROM transfers WHERE mall_id = $1 AND created_at >= $2 AND created_at < $3
"""

_FORMATS = ((True, False), (False, True), (True, True))
SHAPED_STATEMENT = {(csv, json): _statement_lines_sql(_one_store_source, csv=csv, json=json, lateral=True)
                    for csv, json in _FORMATS}
SHAPED_STATEMENTS_ALL_STORES = {(csv, json): _statement_lines_sql(_all_stores_source, csv=csv, json=json,
                                                                  lateral=False)
                                for csv, json in _FORMATS}

# What the shaped lines' instants are written with: UTC and ISO dates (the texts above
# are cut from PostgreSQL's own timestamp output), whatever the session had; and plans
# made for the actual period and ids.
SHAPED_SETTINGS = """
SELECT set_config('jit', 'off', true), set_config('work_mem', '64MB', true),
       set_config('statement_timeout', '300s', true), set_config('TimeZone', 'UTC', true),
       set_config('DateStyle', 'ISO, YMD', true), set_config('plan_cache_mode', 'force_custom_plan', true)
"""

# Relations are joined by hashing, whatever the estimates of the CTEs say (they are
# guesses, and a nested loop over a CTE scan is quadratic); key lookups written as LATERAL
# subqueries stay what they are, having no other plan.
SHAPED_JOIN_SETTINGS = """
SELECT set_config('enable_nestloop', 'off', true), set_config('enable_mergejoin', 'off', true)
"""

SHAPED_PREFETCH = 5000


async def shaped_statement(conn, mall_id: str, sub_mchid: str, names: list[str], from_at: datetime,
                           to_at: datetime, *, csv: bool, json: bool) -> list:
    """The rows of SHAPED_STATEMENT for the store: its summary, then its lines (none at all
    when the period has no line). Run inside a transaction."""
    await conn.execute(SHAPED_SETTINGS)
    await conn.execute(SHAPED_JOIN_SETTINGS)
    return await conn.fetch(SHAPED_STATEMENT[csv, json], mall_id, _LABELS_JSON, _PURPOSE_LABELS_JSON,
                            from_at, to_at, sub_mchid, names)


async def shaped_statements_all_stores(conn, mall_id: str, from_at: datetime, to_at: datetime, *, csv: bool,
                                       json: bool, stores: list[str] | None = None):
    """The rows of SHAPED_STATEMENTS_ALL_STORES, streamed: per store with a line in the
    period (of `stores` only, when given), its summary then its lines; stores in sub_mchid
    order. Run inside a transaction."""
    await conn.execute(SHAPED_SETTINGS)
    await conn.execute(SHAPED_JOIN_SETTINGS)
    ids = await conn.fetchrow(PERIOD_TRANSFER_IDS, mall_id, from_at, to_at)
    if not ids["transfers"]:
        return
    async for row in conn.cursor(SHAPED_STATEMENTS_ALL_STORES[csv, json], mall_id, _LABELS_JSON,
                                 _PURPOSE_LABELS_JSON, from_at, to_at, ids["first_id"], ids["last_id"], stores,
                                 prefetch=SHAPED_PREFETCH):
        yield row


# One snapshot read by several connections (each in a REPEATABLE READ transaction): the
# first exports it, the others adopt it before any other statement of their transaction.
EXPORT_SNAPSHOT = "SELECT pg_export_snapshot()"
_SNAPSHOT_ID = re.compile(r"[0-9A-F]+-[0-9A-F]+(-[0-9]+)?")


async def export_snapshot(conn) -> str:
    return await conn.fetchval(EXPORT_SNAPSHOT)


async def use_snapshot(conn, snapshot_id: str) -> None:
    assert _SNAPSHOT_ID.fullmatch(snapshot_id), snapshot_id  # (SET takes no parameter)
    await conn.execute(f"SET TRANSACTION SNAPSHOT '{snapshot_id}'")


_LABELS_JSON = orjson.dumps(LABELS).decode()
_PURPOSE_LABELS_JSON = orjson.dumps(SPLIT_PURPOSE_LABELS).decode()
