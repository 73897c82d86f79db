"""The schema distributes by mall (Citus), checked in plain PostgreSQL.

Citus cannot run here, so its rules are read off the catalog of the migrated database and
off the parse trees of every SQL constant in the repo modules. Tables and queries added
later are checked without touching this file; a new table without `mall_id` must be
classified below, with a reason.
"""

from __future__ import annotations

import pytest

from tests.citus_rule import analyse, repo_modules, sql_constants
from tests.conftest import REPO_ROOT

# Tables every node holds a full copy of (Citus reference tables): small, read by every
# mall's requests, and needed before the mall is known.
REFERENCE_TABLES = {
    "malls": "one row per mall; clients and stores refer to it",
    "clients": "found by the request's mchid (client_id) before the caller's mall is known",
    "client_keys": "found by (mchid, serial_no) before the caller's mall is known",
}
# Tables distributed by a column other than mall_id (their own colocation group).
OTHER_DISTRIBUTION = {
    "request_nonces": ("client_id", "replay protection is per client, checked before the mall is known"),
}
# Tables kept on the coordinator only.
LOCAL_TABLES = {
    "schema_migrations": "the migration runner's bookkeeping, read once at start",
}
# Queries that span every mall on purpose. On Citus they run on every shard (multi-shard
# statements); they must still join mall-scoped tables on mall_id (checked below).
GLOBAL_QUERIES = {
    "gateway.repo.clients.FORGET_NONCES_BEFORE": "nonce clean-up drops every client's expired nonces",
    "ledger.repo.INVARIANT_QUERIES": "the ledger invariants are checked over all malls at once",
    "gateway.repo.orders.INVARIANT_QUERIES": "the payment invariants are checked over all malls at once",
    "splitting.repo.INVARIANT_QUERIES": "the splitting invariants are checked over all malls at once",
}

CATALOG_TABLES = """
SELECT c.relname AS name,
       array(SELECT a.attname FROM pg_attribute a
              WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped) AS columns,
       EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'mall_id'
                  AND a.attnotnull) AS mall_id_not_null
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')
"""


def _column_names(attnums: str, relation: str) -> str:
    """SQL for the names of the columns numbered `attnums` (an index's or a constraint's
    key) of table `relation`, in key order."""
    return (f"array(SELECT a.attname FROM unnest({attnums}) WITH ORDINALITY AS k(attnum, n)"
            f" JOIN pg_attribute a ON a.attrelid = {relation} AND a.attnum = k.attnum ORDER BY k.n)")


CATALOG_UNIQUE_INDEXES = f"""
SELECT t.relname AS table_name, ic.relname AS index_name, i.indisprimary AS is_primary,
       {_column_names("i.indkey", "i.indrelid")} AS columns
  FROM pg_index i
  JOIN pg_class t ON t.oid = i.indrelid
  JOIN pg_class ic ON ic.oid = i.indexrelid
  JOIN pg_namespace n ON n.oid = t.relnamespace
 WHERE n.nspname = 'public' AND i.indisunique
"""

CATALOG_FOREIGN_KEYS = f"""
SELECT f.conname AS name, t.relname AS table_name, r.relname AS referenced,
       {_column_names("f.conkey", "f.conrelid")} AS columns,
       {_column_names("f.confkey", "f.confrelid")} AS referenced_columns
  FROM pg_constraint f
  JOIN pg_class t ON t.oid = f.conrelid
  JOIN pg_class r ON r.oid = f.confrelid
  JOIN pg_namespace n ON n.oid = t.relnamespace
 WHERE n.nspname = 'public' AND f.contype = 'f'
"""


@pytest.fixture
async def catalog(db_pool):
    async with db_pool.acquire() as conn:
        tables = {row["name"]: row for row in await conn.fetch(CATALOG_TABLES)}
        uniques = await conn.fetch(CATALOG_UNIQUE_INDEXES)
        foreign_keys = await conn.fetch(CATALOG_FOREIGN_KEYS)
    return tables, uniques, foreign_keys


def distribution_of(tables) -> dict[str, str]:
    """table -> distribution column, for every distributed (not reference, not local) table."""
    columns = {name: column for name, (column, _) in OTHER_DISTRIBUTION.items()}
    for name, row in tables.items():
        if name not in REFERENCE_TABLES and name not in LOCAL_TABLES and name not in columns:
            columns[name] = "mall_id"
    return columns


async def test_every_table_is_classified(catalog):
    tables, _, _ = catalog
    listed = REFERENCE_TABLES.keys() | OTHER_DISTRIBUTION.keys() | LOCAL_TABLES.keys()
    assert sorted(listed - tables.keys()) == [], "classified tables that no longer exist"
    problems = []
    for name, column in distribution_of(tables).items():
        if column not in tables[name]["columns"]:
            problems.append(f"{name} has no {column} column: add mall_id, or classify the table here")
        elif column == "mall_id" and not tables[name]["mall_id_not_null"]:
            problems.append(f"{name}.mall_id may be NULL")
    assert problems == []


async def test_keys_and_unique_indexes_include_the_distribution_column(catalog):
    tables, uniques, _ = catalog
    distribution = distribution_of(tables)
    problems = [f"{row['table_name']}: {row['index_name']} {list(row['columns'])} lacks "
                f"{distribution[row['table_name']]}"
                for row in uniques if row["table_name"] in distribution
                and distribution[row["table_name"]] not in row["columns"]]
    primary = {row["table_name"] for row in uniques if row["is_primary"]}
    problems += [f"{name} has no primary key" for name in distribution if name not in primary]
    assert problems == []


async def test_foreign_keys_stay_inside_one_mall_or_point_at_reference_tables(catalog):
    tables, _, foreign_keys = catalog
    distribution = distribution_of(tables)
    problems = []
    for fk in foreign_keys:
        source, target = fk["table_name"], fk["referenced"]
        if source in REFERENCE_TABLES:
            if target not in REFERENCE_TABLES:
                problems.append(f"{fk['name']}: reference table {source} refers to distributed {target}")
        elif source in distribution and target not in REFERENCE_TABLES:
            column = distribution[source]
            pairs = list(zip(fk["columns"], fk["referenced_columns"]))
            if distribution.get(target) != column or (column, column) not in pairs:
                problems.append(f"{fk['name']}: {source} -> {target} does not pair {column} with {column}")
    assert problems == []


def test_repo_modules_are_found():
    modules = repo_modules(REPO_ROOT)
    assert {"gateway.repo.orders", "gateway.repo.clients", "ledger.repo"} <= set(modules)
    assert all(sql_constants(m) for m in ("gateway.repo.orders", "ledger.repo"))


async def test_every_query_stays_in_one_mall_or_is_global_on_purpose(catalog):
    tables, _, _ = catalog
    distribution = distribution_of(tables)
    queries = {name: sql for module in repo_modules(REPO_ROOT) for name, sql in sql_constants(module).items()}
    problems = []
    for name, sql in sorted(queries.items()):
        analysis = analyse(sql, distribution)
        if analysis.uncolocated():
            problems.append(f"{name}: joins {analysis.uncolocated()} without equal mall_id")
        if analysis.unpinned() and not _global(name):
            problems.append(f"{name}: {analysis.unpinned()} not filtered by their distribution column")
    assert problems == []


def test_global_queries_listed_still_exist():
    queries = {name for module in repo_modules(REPO_ROOT) for name in sql_constants(module)}
    stale = [entry for entry in GLOBAL_QUERIES if not any(_covers(entry, name) for name in queries)]
    assert stale == [], "GLOBAL_QUERIES names queries that are gone"


def _global(name: str) -> bool:
    return any(_covers(entry, name) for entry in GLOBAL_QUERIES)


def _covers(entry: str, name: str) -> bool:
    return name == entry or name.startswith(entry + "[")


# -- the checker itself ------------------------------------------------------------------

DISTRIBUTION = {"orders": "mall_id", "tenants": "mall_id", "entries": "mall_id",
                "accounts": "mall_id", "request_nonces": "client_id"}


@pytest.mark.parametrize("sql", [
    "SELECT * FROM orders WHERE mall_id = $1 AND out_trade_no = $2",
    "SELECT * FROM orders o JOIN tenants t USING (mall_id, sub_mchid) WHERE o.mall_id = $1",
    "SELECT * FROM orders o JOIN tenants t ON t.mall_id = o.mall_id WHERE t.mall_id = $1::text",
    "INSERT INTO orders (mall_id, out_trade_no) VALUES ($1, $2)",
    "INSERT INTO orders (mall_id, fee) SELECT mall_id, fee FROM tenants WHERE mall_id = $1",
    "UPDATE orders o SET x = 1 FROM (SELECT mall_id, n FROM orders WHERE mall_id = $1 LIMIT 3) d"
    " WHERE o.mall_id = d.mall_id AND o.n = d.n",
    "SELECT (SELECT sum(amount_fen) FROM entries e WHERE e.mall_id = a.mall_id) FROM accounts a"
    " WHERE a.mall_id = $1",
    "WITH x AS (SELECT mall_id FROM orders WHERE mall_id = $1) SELECT * FROM x",
    "DELETE FROM request_nonces WHERE client_id = $1",
    "INSERT INTO request_nonces (client_id, nonce) SELECT c, n FROM unnest($1::text[], $2::text[]) AS u(c, n)",
])
def test_checker_accepts_queries_of_one_mall(sql):
    analysis = analyse(sql, DISTRIBUTION)
    assert (analysis.unpinned(), analysis.uncolocated()) == ([], [])


@pytest.mark.parametrize("sql, unpinned", [
    ("SELECT * FROM orders WHERE out_trade_no = $1", ["orders"]),
    ("SELECT * FROM orders WHERE mall_id = $1 OR out_trade_no = $2", ["orders"]),
    ("SELECT * FROM orders o JOIN tenants t ON t.sub_mchid = o.sub_mchid WHERE o.mall_id = $1", ["tenants"]),
    ("INSERT INTO orders (out_trade_no) VALUES ($1)", ["orders"]),
    ("UPDATE orders SET state = 'CLOSED' WHERE state = 'NOTPAY'", ["orders"]),
    ("SELECT * FROM accounts a WHERE a.mall_id = $1 AND EXISTS"
     " (SELECT 1 FROM entries e WHERE e.account = a.account)", ["entries"]),
    ("DELETE FROM request_nonces WHERE seen_at < $1", ["request_nonces"]),
    ("INSERT INTO orders (mall_id, n) SELECT mall_id, n FROM tenants, unnest($1::int[]) AS u(n)", ["orders", "tenants"]),
])
def test_checker_finds_queries_that_span_malls(sql, unpinned):
    assert analyse(sql, DISTRIBUTION).unpinned() == unpinned


def test_checker_finds_joins_across_malls():
    sql = "SELECT * FROM orders o JOIN tenants t ON t.sub_mchid = o.sub_mchid"
    assert analyse(sql, DISTRIBUTION).uncolocated() == ["orders", "tenants"]
