"""Order funds, split orders, split returns, refunds: the SQL of revenue splitting."""

from __future__ import annotations

import json

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

INSERT_REFUND = """
INSERT INTO refunds (mall_id, sub_mchid, out_refund_no, out_trade_no, transaction_id, amount_fen,
                     total_fen, reason, notify_url, request_hash, plan, state, refund_id, client_id,
                     created_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'PREPARED', $12, $13, $14)
ON CONFLICT DO NOTHING
RETURNING *
"""

# The store's available balance, locked so refunds of one store are planned one at a time,
# and what refunds already in flight will still draw from it (net of returns they bring).
STORE_AVAILABLE_FOR_UPDATE = """
SELECT balance_fen FROM accounts WHERE mall_id = $1 AND account = $2 FOR UPDATE
"""

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


async def store_available_for_update(conn, mall_id: str, account: str) -> int:
    return await conn.fetchval(STORE_AVAILABLE_FOR_UPDATE, mall_id, account)


async def in_flight_refund_draw(conn, mall_id: str, sub_mchid: str) -> int:
    return await conn.fetchval(IN_FLIGHT_REFUND_DRAW, mall_id, sub_mchid)


async def refund(conn, mall_id: str, sub_mchid: str, out_refund_no: str):
    return await conn.fetchrow(REFUND, mall_id, sub_mchid, out_refund_no)


async def mark_refund(conn, key, state: str, *, result=None, success_at=None):
    return await conn.fetchrow(MARK_REFUND, *key, state, result, success_at)


def dumps(value) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
