"""Splitting's storage adapter: order funds, split orders, split returns, refunds.

SQL over asyncpg as named constants, nothing else; the rules are in splitting.funds.
`INVARIANT_QUERIES` are splitting's own checks, run with every other module's by
gateway.invariants.check_invariants.
"""

from __future__ import annotations

import json
from datetime import datetime

from splitting.funds import Line, OrderFunds

FUNDS_FOR_UPDATE = """
SELECT * FROM order_funds WHERE mall_id = $1 AND sub_mchid = $2 AND out_trade_no = $3 FOR UPDATE
"""

FUNDS_BY_KEY = "SELECT * FROM order_funds WHERE mall_id = $1 AND sub_mchid = $2 AND out_trade_no = $3"

FUNDS_OF_TRANSACTION = "SELECT * FROM order_funds WHERE mall_id = $1 AND transaction_id = $2"

FUNDS_BY_TRANSACTION = """
SELECT * FROM order_funds WHERE mall_id = $1 AND sub_mchid = $2 AND transaction_id = $3
"""

SAVE_FUNDS = """
UPDATE order_funds
   SET frozen_fen = $4, reserved_fen = $5, splits_requested = $6, lines = $7, unfrozen = $8,
       refunded_fen = $9, fee_refunded_fen = $10, reward_set_aside_fen = $11, commission_set_aside_fen = $12
 WHERE mall_id = $1 AND sub_mchid = $2 AND out_trade_no = $3
"""

SET_ASIDE = """
UPDATE order_funds SET reward_set_aside_fen = $4, commission_set_aside_fen = $5
 WHERE mall_id = $1 AND sub_mchid = $2 AND out_trade_no = $3
"""

CHANNEL_CAP = "SELECT max_ratio_bps, checked_at FROM channel_caps WHERE mall_id = $1 AND sub_mchid = $2"

SAVE_CHANNEL_CAP = """
INSERT INTO channel_caps (mall_id, sub_mchid, max_ratio_bps, checked_at) VALUES ($1, $2, $3, $4)
ON CONFLICT (mall_id, sub_mchid) DO UPDATE SET max_ratio_bps = excluded.max_ratio_bps, checked_at = excluded.checked_at
"""

INSERT_SPLIT_ORDER = """
INSERT INTO split_orders (mall_id, sub_mchid, out_order_no, out_trade_no, transaction_id, kind,
                          purpose, request_hash, parts, state, approval_id, client_id, created_at,
                          unfreeze_unsplit, order_id)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'PREPARED', $10, $11, $12, $13, $14)
ON CONFLICT DO NOTHING
RETURNING *
"""

# The gateway gave up one of its own splits: the record says what was due and why not.
INSERT_GIVEN_UP_SPLIT = """
INSERT INTO split_orders (mall_id, sub_mchid, out_order_no, out_trade_no, transaction_id, kind,
                          purpose, request_hash, parts, state, result, client_id, created_at, finished_at,
                          order_id)
VALUES ($1, $2, $3, $4, $5, 'split', $6, $7, $8, 'FAILED', $9, $10, $11, $11, $12)
ON CONFLICT DO NOTHING
RETURNING *
"""

SPLIT_ORDER = "SELECT * FROM split_orders WHERE mall_id = $1 AND sub_mchid = $2 AND out_order_no = $3"

SPLIT_ORDERS_OF_TRADE = """
SELECT * FROM split_orders WHERE mall_id = $1 AND sub_mchid = $2 AND out_trade_no = $3
 ORDER BY created_at, out_order_no
"""

MARK_SPLIT_ORDER = """
UPDATE split_orders SET state = $4, order_id = coalesce(order_id, $5), result = coalesce($6, result),
                        finished_at = $7
 WHERE mall_id = $1 AND sub_mchid = $2 AND out_order_no = $3 AND state IN ('PREPARED', 'PROCESSING')
RETURNING *
"""

INSERT_RETURN = """
INSERT INTO split_returns (mall_id, sub_mchid, out_return_no, out_order_no, out_trade_no, return_mchid,
                           ledger_account, amount_fen, request_hash, out_refund_no, state, client_id,
                           created_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'PREPARED', $11, $12)
ON CONFLICT DO NOTHING
RETURNING *
"""

SPLIT_RETURN = "SELECT * FROM split_returns WHERE mall_id = $1 AND sub_mchid = $2 AND out_return_no = $3"

RETURNS_OF_REFUND = """
SELECT * FROM split_returns WHERE mall_id = $1 AND sub_mchid = $2 AND out_refund_no = $3
 ORDER BY out_return_no
"""

RETURNED_BY_SPLIT = """
SELECT out_order_no, ledger_account, coalesce(sum(amount_fen), 0)::bigint AS returned_fen
  FROM split_returns
 WHERE mall_id = $1 AND sub_mchid = $2 AND out_trade_no = $3 AND state <> 'FAILED'
 GROUP BY out_order_no, ledger_account
"""

MARK_RETURN = """
UPDATE split_returns SET state = $4, return_id = coalesce($5, return_id), result = coalesce($6, result),
                         finished_at = $7
 WHERE mall_id = $1 AND sub_mchid = $2 AND out_return_no = $3 AND state IN ('PREPARED', 'PROCESSING')
RETURNING *
"""

# The fail_reason of a refund's return that its refund's close took for never sent.
CLOSED_UNSENT = "refund_closed"

# Such a return the channel accepted all the same (its request was in flight): a success.
REVIVE_RETURN = f"""
UPDATE split_returns SET state = 'SUCCESS', return_id = coalesce($4, return_id), result = $5, finished_at = $6
 WHERE mall_id = $1 AND sub_mchid = $2 AND out_return_no = $3
   AND state = 'FAILED' AND result->>'fail_reason' = '{CLOSED_UNSENT}'
RETURNING *
"""

INSERT_REFUND = """
INSERT INTO refunds (mall_id, sub_mchid, out_refund_no, out_trade_no, transaction_id, amount_fen,
                     total_fen, reason, notify_url, request_hash, plan, state, refund_id, client_id,
                     created_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'PREPARED', $12, $13, $14)
ON CONFLICT DO NOTHING
RETURNING *
"""

# What refunds already in flight will still draw from a store's available balance (net of
# the returns they bring).
IN_FLIGHT_REFUND_DRAW = """
SELECT coalesce(sum((r.plan->>'from_available_fen')::bigint
                    - coalesce((SELECT sum(x.amount_fen) FROM split_returns x
                                 WHERE x.mall_id = r.mall_id AND x.sub_mchid = r.sub_mchid
                                   AND x.out_refund_no = r.out_refund_no AND x.state <> 'SUCCESS'), 0)), 0)::bigint
  FROM refunds r WHERE r.mall_id = $1 AND r.sub_mchid = $2 AND r.state IN ('PREPARED', 'PROCESSING')
"""

REFUND = "SELECT * FROM refunds WHERE mall_id = $1 AND sub_mchid = $2 AND out_refund_no = $3"

MARK_REFUND = """
UPDATE refunds SET state = $4, result = coalesce($5, result), success_at = $6
 WHERE mall_id = $1 AND sub_mchid = $2 AND out_refund_no = $3 AND state IN ('PREPARED', 'PROCESSING')
RETURNING *
"""


# Splitting's invariants: caps, refunds, their transfers and notifications, one funds row
# per paid order (run by gateway.invariants).
INVARIANT_QUERIES = {
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
}

# The order_funds writer for rows that join another transaction as data (payment
# success): the SQL function `order_funds_insert_row`; `opened_funds_row` is the row.
FUNDS_TABLE = "order_funds"


def opened_funds_row(*, mall_id: str, sub_mchid: str, out_trade_no: str, transaction_id: str,
                     funds: OrderFunds, approval_id: int | None, paid_at: datetime, finish_by: datetime) -> dict:
    """A paid order's funds as they open, every column of `order_funds` (its writer takes
    the whole row); splits, returns and refunds change them later."""
    return {"mall_id": mall_id, "sub_mchid": sub_mchid, "out_trade_no": out_trade_no,
            "transaction_id": transaction_id, "paid_fen": funds.paid_fen, "fee_fen": funds.fee_fen,
            "max_ratio_bps": funds.max_ratio_bps, "approval_id": approval_id, "frozen_fen": funds.frozen_fen,
            "reserved_fen": funds.reserved_fen, "splits_requested": funds.splits_requested,
            "lines": _lines_json(funds), "unfrozen": funds.unfrozen, "refunded_fen": funds.refunded_fen,
            "fee_refunded_fen": funds.fee_refunded_fen, "paid_at": paid_at.isoformat(),
            "finish_by": finish_by.isoformat(), "reward_set_aside_fen": funds.reward_set_aside_fen,
            "commission_set_aside_fen": funds.commission_set_aside_fen}


def funds_from_row(row) -> OrderFunds:
    lines = tuple(Line(account=line["account"], returnable=line["returnable"], split_fen=line["split_fen"],
                       back_fen=line["back_fen"], reserved_fen=line.get("reserved_fen", 0))
                  for line in row["lines"])
    return OrderFunds(
        paid_fen=row["paid_fen"], fee_fen=row["fee_fen"], max_ratio_bps=row["max_ratio_bps"],
        frozen_fen=row["frozen_fen"], reserved_fen=row["reserved_fen"],
        splits_requested=row["splits_requested"], lines=lines, unfrozen=row["unfrozen"],
        refunded_fen=row["refunded_fen"], fee_refunded_fen=row["fee_refunded_fen"],
        reward_set_aside_fen=row["reward_set_aside_fen"], commission_set_aside_fen=row["commission_set_aside_fen"],
    )


def _lines_json(funds: OrderFunds) -> list[dict]:
    return [{"account": l.account, "returnable": l.returnable, "split_fen": l.split_fen,
             "back_fen": l.back_fen, "reserved_fen": l.reserved_fen} for l in funds.lines]


async def funds_for_update(conn, key):
    """(row, OrderFunds) locked for this transaction, or (None, None)."""
    row = await conn.fetchrow(FUNDS_FOR_UPDATE, *key)
    return (row, funds_from_row(row)) if row is not None else (None, None)


async def funds_by_transaction(conn, mall_id: str, sub_mchid: str, transaction_id: str):
    return await conn.fetchrow(FUNDS_BY_TRANSACTION, mall_id, sub_mchid, transaction_id)


async def funds_of_transaction(conn, mall_id: str, transaction_id: str):
    return await conn.fetchrow(FUNDS_OF_TRANSACTION, mall_id, transaction_id)


async def save_funds(conn, key, funds: OrderFunds) -> None:
    await conn.execute(SAVE_FUNDS, *key, funds.frozen_fen, funds.reserved_fen, funds.splits_requested,
                       _lines_json(funds), funds.unfrozen, funds.refunded_fen, funds.fee_refunded_fen,
                       funds.reward_set_aside_fen, funds.commission_set_aside_fen)


async def channel_cap(conn, mall_id: str, sub_mchid: str):
    return await conn.fetchrow(CHANNEL_CAP, mall_id, sub_mchid)


async def save_channel_cap(conn, mall_id: str, sub_mchid: str, max_ratio_bps: int, now) -> None:
    await conn.execute(SAVE_CHANNEL_CAP, mall_id, sub_mchid, max_ratio_bps, now)


async def set_aside(conn, key, reward_fen: int, commission_fen: int) -> None:
    await conn.execute(SET_ASIDE, *key, reward_fen, commission_fen)


async def insert_split_order(conn, *, mall_id, sub_mchid, out_order_no, out_trade_no, transaction_id,
                             kind, purpose, request_hash, parts, approval_id, client_id, created_at,
                             unfreeze_unsplit, order_id):
    return await conn.fetchrow(INSERT_SPLIT_ORDER, mall_id, sub_mchid, out_order_no, out_trade_no,
                               transaction_id, kind, purpose, request_hash, parts, approval_id,
                               client_id, created_at, unfreeze_unsplit, order_id)


async def insert_given_up_split(conn, *, mall_id, sub_mchid, out_order_no, out_trade_no, transaction_id,
                                purpose, parts, result, client_id, now, order_id):
    return await conn.fetchrow(INSERT_GIVEN_UP_SPLIT, mall_id, sub_mchid, out_order_no, out_trade_no,
                               transaction_id, purpose, "given_up", parts, result, client_id, now, order_id)


async def split_order(conn, mall_id: str, sub_mchid: str, out_order_no: str):
    return await conn.fetchrow(SPLIT_ORDER, mall_id, sub_mchid, out_order_no)


async def split_orders_of_trade(conn, mall_id: str, sub_mchid: str, out_trade_no: str):
    return await conn.fetch(SPLIT_ORDERS_OF_TRADE, mall_id, sub_mchid, out_trade_no)


async def mark_split_order(conn, key, state: str, *, order_id=None, result=None, finished_at=None):
    return await conn.fetchrow(MARK_SPLIT_ORDER, *key, state, order_id, result, finished_at)


async def insert_return(conn, *, mall_id, sub_mchid, out_return_no, out_order_no, out_trade_no,
                        return_mchid, ledger_account, amount_fen, request_hash, out_refund_no,
                        client_id, created_at):
    return await conn.fetchrow(INSERT_RETURN, mall_id, sub_mchid, out_return_no, out_order_no,
                               out_trade_no, return_mchid, ledger_account, amount_fen, request_hash,
                               out_refund_no, client_id, created_at)


async def revive_return(conn, key, *, return_id, result, finished_at):
    """A return its refund's close took for never sent, now a success; None otherwise."""
    return await conn.fetchrow(REVIVE_RETURN, *key, return_id, result, finished_at)


def closed_unsent(item) -> bool:
    return item["state"] == "FAILED" and (item["result"] or {}).get("fail_reason") == CLOSED_UNSENT


async def split_return(conn, mall_id: str, sub_mchid: str, out_return_no: str):
    return await conn.fetchrow(SPLIT_RETURN, mall_id, sub_mchid, out_return_no)


async def returns_of_refund(conn, mall_id: str, sub_mchid: str, out_refund_no: str):
    return await conn.fetch(RETURNS_OF_REFUND, mall_id, sub_mchid, out_refund_no)


async def returned_by_split(conn, mall_id: str, sub_mchid: str, out_trade_no: str) -> dict:
    rows = await conn.fetch(RETURNED_BY_SPLIT, mall_id, sub_mchid, out_trade_no)
    return {(r["out_order_no"], r["ledger_account"]): r["returned_fen"] for r in rows}


async def mark_return(conn, key, state: str, *, return_id=None, result=None, finished_at=None):
    return await conn.fetchrow(MARK_RETURN, *key, state, return_id, result, finished_at)


async def insert_refund(conn, *, mall_id, sub_mchid, out_refund_no, out_trade_no, transaction_id,
                        amount_fen, total_fen, reason, notify_url, request_hash, plan, refund_id,
                        client_id, created_at):
    return await conn.fetchrow(INSERT_REFUND, mall_id, sub_mchid, out_refund_no, out_trade_no,
                               transaction_id, amount_fen, total_fen, reason, notify_url, request_hash,
                               plan, refund_id, client_id, created_at)


async def in_flight_refund_draw(conn, mall_id: str, sub_mchid: str) -> int:
    return await conn.fetchval(IN_FLIGHT_REFUND_DRAW, mall_id, sub_mchid)


async def refund(conn, mall_id: str, sub_mchid: str, out_refund_no: str):
    return await conn.fetchrow(REFUND, mall_id, sub_mchid, out_refund_no)


async def mark_refund(conn, key, state: str, *, result=None, success_at=None):
    return await conn.fetchrow(MARK_REFUND, *key, state, result, success_at)


def dumps(value) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
