"""Points' storage adapter: store rules, points per order, the sync rows to WeChat."""

from __future__ import annotations

from datetime import datetime

RULE = "SELECT points_per_yuan FROM points_rules WHERE mall_id = $1 AND sub_mchid = $2"
RULE_ROW = "SELECT points_per_yuan, updated_at FROM points_rules WHERE mall_id = $1 AND sub_mchid = $2"

SET_RULE = """
INSERT INTO points_rules (mall_id, sub_mchid, points_per_yuan, updated_at) VALUES ($1, $2, $3, $4)
ON CONFLICT (mall_id, sub_mchid) DO UPDATE SET points_per_yuan = $3, updated_at = $4
"""

# Locked while a refund decides what to take back, so two refunds of one order never
# reverse the same points twice.
ORDER_POINTS_FOR_UPDATE = """
SELECT * FROM points_orders WHERE mall_id = $1 AND sub_mchid = $2 AND out_trade_no = $3 FOR UPDATE
"""

ADD_REVERSED = """
UPDATE points_orders SET reversed_points = reversed_points + $4
 WHERE mall_id = $1 AND sub_mchid = $2 AND out_trade_no = $3
"""

# Due syncs of one mall for one worker, leased (next_attempt_at pushed forward) like the outbox.
CLAIM_DUE_SYNCS = """
UPDATE points_syncs s SET next_attempt_at = $2
  FROM (SELECT mall_id, sync_id FROM points_syncs
         WHERE mall_id = $4 AND state = 'pending' AND next_attempt_at <= $1
         ORDER BY next_attempt_at LIMIT $3
         FOR UPDATE SKIP LOCKED) due
 WHERE s.mall_id = due.mall_id AND s.sync_id = due.sync_id
RETURNING s.*
"""

# A pass's accepted syncs, recorded in one statement.
MARK_SYNCED = """
UPDATE points_syncs s SET state = 'synced', synced_at = m.synced_at, attempts = s.attempts + 1, last_error = NULL
  FROM unnest($2::bigint[], $3::timestamptz[]) AS m(sync_id, synced_at)
 WHERE s.mall_id = $1 AND s.sync_id = m.sync_id AND s.state = 'pending'
"""

MARK_SYNC_FAILED = """
UPDATE points_syncs SET attempts = attempts + 1, last_error = $3, next_attempt_at = $4,
                        state = CASE WHEN $5 THEN 'dead' ELSE 'pending' END
 WHERE mall_id = $1 AND sync_id = $2 AND state = 'pending'
"""

INSERT_SYNC = "SELECT points_syncs_insert_row($1::jsonb)"

SYNC_COUNTS = "SELECT state, count(*) AS n FROM points_syncs WHERE mall_id = $1 GROUP BY state"

# What an operator sees of a sync.
SYNC_COLUMNS = """sync_id, kind, ref, sub_mchid, transaction_id, openid, increased_points, total_points,
       points_update_time, state, attempts, next_attempt_at, last_error, synced_at"""

SYNCS = f"""
SELECT {SYNC_COLUMNS}, count(*) OVER () AS total_count
  FROM points_syncs WHERE mall_id = $1 AND state = $2
 ORDER BY sync_id LIMIT $3 OFFSET $4
"""

# An operator starts a dead sync over: due at once, with a fresh count of attempts.
RETRY_DEAD_SYNC = f"""
UPDATE points_syncs SET state = 'pending', attempts = 0, next_attempt_at = $3
 WHERE mall_id = $1 AND sync_id = $2 AND state = 'dead'
RETURNING {SYNC_COLUMNS}
"""

SYNC_STATE = "SELECT state FROM points_syncs WHERE mall_id = $1 AND sync_id = $2"


async def rule(conn, mall_id: str, sub_mchid: str) -> int | None:
    return await conn.fetchval(RULE, mall_id, sub_mchid)


async def rule_row(conn, mall_id: str, sub_mchid: str):
    return await conn.fetchrow(RULE_ROW, mall_id, sub_mchid)


async def set_rule(conn, mall_id: str, sub_mchid: str, points_per_yuan: int, now: datetime) -> None:
    await conn.execute(SET_RULE, mall_id, sub_mchid, points_per_yuan, now)


async def order_points_for_update(conn, mall_id: str, sub_mchid: str, out_trade_no: str):
    return await conn.fetchrow(ORDER_POINTS_FOR_UPDATE, mall_id, sub_mchid, out_trade_no)


async def add_reversed(conn, mall_id: str, sub_mchid: str, out_trade_no: str, points: int) -> None:
    await conn.execute(ADD_REVERSED, mall_id, sub_mchid, out_trade_no, points)


async def insert_sync(conn, row: dict) -> None:
    await conn.execute(INSERT_SYNC, row)


async def claim_due_syncs(conn, mall_id: str, now: datetime, lease_until: datetime, limit: int):
    return await conn.fetch(CLAIM_DUE_SYNCS, now, lease_until, limit, mall_id)


async def mark_synced(conn, mall_id: str, synced: list[tuple[int, datetime]]) -> None:
    """Record accepted syncs ((sync_id, synced_at) of `mall_id`'s rows)."""
    await conn.execute(MARK_SYNCED, mall_id, [i for i, _ in synced], [at for _, at in synced])


async def mark_sync_failed(conn, mall_id: str, sync_id: int, error: str, next_at: datetime, dead: bool) -> None:
    await conn.execute(MARK_SYNC_FAILED, mall_id, sync_id, error, next_at, dead)


async def sync_counts(conn, mall_id: str) -> dict[str, int]:
    return {r["state"]: r["n"] for r in await conn.fetch(SYNC_COUNTS, mall_id)}


# What has left the shopper's order in refunds that moved money (this one included).
REFUNDED_OF_ORDER = """
SELECT coalesce(sum(amount_fen), 0)::bigint FROM refunds
 WHERE mall_id = $1 AND sub_mchid = $2 AND out_trade_no = $3 AND state IN ('SUCCESS', 'ABNORMAL')
"""


async def refunded_of_order(conn, mall_id: str, sub_mchid: str, out_trade_no: str) -> int:
    return await conn.fetchval(REFUNDED_OF_ORDER, mall_id, sub_mchid, out_trade_no)


async def syncs(conn, mall_id: str, state: str, limit: int, offset: int):
    rows = await conn.fetch(SYNCS, mall_id, state, limit, offset)
    return rows, (rows[0]["total_count"] if rows else 0)


async def retry_dead_sync(conn, mall_id: str, sync_id: int, now: datetime):
    return await conn.fetchrow(RETRY_DEAD_SYNC, mall_id, sync_id, now)


async def sync_state(conn, mall_id: str, sync_id: int) -> str | None:
    return await conn.fetchval(SYNC_STATE, mall_id, sync_id)
