"""SQL of payouts and reconciliation: a day's records as the bills list them, reports."""

from __future__ import annotations

from datetime import date, datetime

DAY_PAYMENTS = """
SELECT o.sub_mchid, o.out_trade_no, o.total_fen, o.fee_rate_bps, f.fee_fen
  FROM orders o
  LEFT JOIN order_funds f ON f.mall_id = o.mall_id AND f.sub_mchid = o.sub_mchid AND f.out_trade_no = o.out_trade_no
 WHERE o.mall_id = $1 AND o.state = 'SUCCESS' AND o.success_at >= $2 AND o.success_at < $3
"""

ORDER_STATES = """
SELECT o.sub_mchid, o.out_trade_no, o.state, o.total_fen, o.fee_rate_bps
  FROM orders o JOIN unnest($2::text[], $3::text[]) AS k(sub_mchid, out_trade_no)
    ON o.sub_mchid = k.sub_mchid AND o.out_trade_no = k.out_trade_no
 WHERE o.mall_id = $1
"""

DAY_REFUNDS = """
SELECT sub_mchid, out_refund_no, amount_fen, state, (plan->>'fee_back_fen')::bigint AS fee_back_fen
  FROM refunds
 WHERE mall_id = $1 AND state = 'SUCCESS' AND success_at >= $2 AND success_at < $3
"""

REFUND_STATES = """
SELECT r.sub_mchid, r.out_refund_no, r.amount_fen, r.state, (r.plan->>'fee_back_fen')::bigint AS fee_back_fen
  FROM refunds r JOIN unnest($2::text[], $3::text[]) AS k(sub_mchid, out_refund_no)
    ON r.sub_mchid = k.sub_mchid AND r.out_refund_no = k.out_refund_no
 WHERE r.mall_id = $1
"""

DAY_SPLITS = """
SELECT sub_mchid, out_order_no, kind, result
  FROM split_orders
 WHERE mall_id = $1 AND state = 'FINISHED' AND finished_at >= $2 AND finished_at < $3
"""

DAY_RETURNS = """
SELECT sub_mchid, out_return_no, amount_fen
  FROM split_returns
 WHERE mall_id = $1 AND state = 'SUCCESS' AND finished_at >= $2 AND finished_at < $3
"""

DAY_PAYOUTS = """
SELECT t.ref, e.amount_fen
  FROM transfers t
  JOIN entries e ON e.mall_id = t.mall_id AND e.transfer_id = t.transfer_id AND e.amount_fen > 0
 WHERE t.mall_id = $1 AND t.kind = 'payout' AND t.created_at >= $2 AND t.created_at < $3
"""

STORE_PAYOUTS = """
SELECT t.ref, t.created_at, e.amount_fen, e.account
  FROM transfers t
  JOIN entries e ON e.mall_id = t.mall_id AND e.transfer_id = t.transfer_id AND e.amount_fen > 0
 WHERE t.mall_id = $1 AND t.kind = 'payout' AND ($2::text IS NULL OR split_part(t.ref, '/', 1) = $2)
   AND t.created_at >= $3 AND t.created_at < $4
 ORDER BY t.created_at, t.ref
 LIMIT $5 OFFSET $6
"""

START_REPORT = """
INSERT INTO reconciliations (mall_id, bill_on, state, started_at) VALUES ($1, $2, 'running', $3)
ON CONFLICT (mall_id, bill_on) DO UPDATE
   SET state = 'running', runs = reconciliations.runs + 1, started_at = $3, finished_at = NULL
"""

FORGET_UNHEALED_ITEMS = "DELETE FROM reconciliation_items WHERE mall_id = $1 AND bill_on = $2 AND healed_at IS NULL"

INSERT_ITEMS = """
INSERT INTO reconciliation_items (mall_id, bill_on, bill, class, ref, sub_mchid, ours, channel, what, action,
                                  healed_at, found_at)
SELECT $1, $2, i.bill, i.class, i.ref, i.sub_mchid, i.ours::jsonb, i.channel::jsonb, i.what, i.action,
       CASE WHEN i.healed THEN $3::timestamptz END, $3
  FROM unnest($4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[],
              $12::boolean[]) AS i(bill, class, ref, sub_mchid, ours, channel, what, action, healed)
ON CONFLICT (mall_id, bill_on, bill, class, ref) DO NOTHING
"""

FINISH_REPORT = """
UPDATE reconciliations SET state = 'done', bills = $3, counts = $4, finished_at = $5
 WHERE mall_id = $1 AND bill_on = $2
"""

REPORTS = """
SELECT * FROM reconciliations
 WHERE mall_id = $1 AND ($2::date IS NULL OR bill_on = $2)
 ORDER BY bill_on DESC LIMIT $3 OFFSET $4
"""

REPORT = "SELECT * FROM reconciliations WHERE mall_id = $1 AND bill_on = $2"

ITEMS = """
SELECT * FROM reconciliation_items WHERE mall_id = $1 AND bill_on = $2
 ORDER BY bill, class, ref LIMIT $3 OFFSET $4
"""

# The daily run: one job per mall and day, created once whoever gets there first.
PLAN_DAY = """
INSERT INTO jobs (mall_id, kind, ref, due_at, created_at) VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (mall_id, kind, ref) DO NOTHING
"""


async def rows(conn, query: str, *args):
    return await conn.fetch(query, *args)


async def start_report(conn, mall_id: str, bill_on: date, now: datetime) -> None:
    await conn.execute(START_REPORT, mall_id, bill_on, now)


async def finish_report(conn, mall_id: str, bill_on: date, items: list[dict], bills: dict, counts: dict,
                        now: datetime) -> None:
    """Replace the day's open items (healed ones stay) and close the report, in the caller's
    transaction."""
    await conn.execute(FORGET_UNHEALED_ITEMS, mall_id, bill_on)
    columns = ("bill", "class", "ref", "sub_mchid", "ours", "channel", "what", "action", "healed")
    await conn.execute(INSERT_ITEMS, mall_id, bill_on, now, *([item[c] for item in items] for c in columns))
    await conn.execute(FINISH_REPORT, mall_id, bill_on, bills, counts, now)


async def reports(conn, mall_id: str, bill_on: date | None, limit: int, offset: int):
    return await conn.fetch(REPORTS, mall_id, bill_on, limit, offset)


async def report(conn, mall_id: str, bill_on: date):
    return await conn.fetchrow(REPORT, mall_id, bill_on)


async def items(conn, mall_id: str, bill_on: date, limit: int, offset: int):
    return await conn.fetch(ITEMS, mall_id, bill_on, limit, offset)


async def store_payouts(conn, mall_id: str, sub_mchid: str | None, from_at: datetime, to_at: datetime,
                        limit: int, offset: int):
    return await conn.fetch(STORE_PAYOUTS, mall_id, sub_mchid, from_at, to_at, limit, offset)


async def plan_day(conn, mall_id: str, kind: str, ref: str, due_at: datetime, now: datetime) -> None:
    await conn.execute(PLAN_DAY, mall_id, kind, ref, due_at, now)


# -- the gateway's own bills, served to the mall backend in WeChat's format ---------------

OWN_PAYMENTS = """
SELECT o.*, f.fee_fen
  FROM orders o
  LEFT JOIN order_funds f ON f.mall_id = o.mall_id AND f.sub_mchid = o.sub_mchid AND f.out_trade_no = o.out_trade_no
 WHERE o.mall_id = $1 AND o.state = 'SUCCESS' AND o.success_at >= $2 AND o.success_at < $3
   AND ($4::text IS NULL OR o.sub_mchid = $4)
 ORDER BY o.success_at, o.sub_mchid, o.out_trade_no
"""

OWN_REFUNDS = """
SELECT r.out_refund_no, r.refund_id, r.amount_fen AS refund_fen, r.success_at AS refunded_at,
       (r.plan->>'fee_back_fen')::bigint AS fee_back_fen, o.*
  FROM refunds r
  JOIN orders o ON o.mall_id = r.mall_id AND o.sub_mchid = r.sub_mchid AND o.out_trade_no = r.out_trade_no
 WHERE r.mall_id = $1 AND r.state = 'SUCCESS' AND r.success_at >= $2 AND r.success_at < $3
   AND ($4::text IS NULL OR r.sub_mchid = $4)
 ORDER BY r.success_at, r.sub_mchid, r.out_refund_no
"""

OWN_SPLITS = """
SELECT sub_mchid, out_order_no, transaction_id, kind, order_id, result, finished_at
  FROM split_orders
 WHERE mall_id = $1 AND state = 'FINISHED' AND kind = 'split' AND finished_at >= $2 AND finished_at < $3
   AND ($4::text IS NULL OR sub_mchid = $4)
 ORDER BY finished_at, sub_mchid, out_order_no
"""

OWN_RETURNS = """
SELECT r.sub_mchid, r.out_return_no, r.return_id, r.return_mchid, r.amount_fen, r.finished_at, s.transaction_id
  FROM split_returns r
  JOIN split_orders s ON s.mall_id = r.mall_id AND s.sub_mchid = r.sub_mchid AND s.out_order_no = r.out_order_no
 WHERE r.mall_id = $1 AND r.state = 'SUCCESS' AND r.finished_at >= $2 AND r.finished_at < $3
   AND ($4::text IS NULL OR r.sub_mchid = $4)
 ORDER BY r.finished_at, r.sub_mchid, r.out_return_no
"""
