"""Orders: created by mall apps, paid through the channel, closed when abandoned."""

from __future__ import annotations

from datetime import datetime

from gateway.repo import clients

# The order, at its store's fee rate, in one statement that first records the request's
# nonce (clients.REQUEST_NONCE_CTES): nothing is inserted for a replay, when the store is
# not the mall's or when the order exists already (the caller tells which apart).
INSERT_ORDER = "WITH" + clients.REQUEST_NONCE_CTES + """,
inserted AS (
    INSERT INTO orders (mall_id, sub_mchid, out_trade_no, client_id, request_hash, sp_appid,
                        sub_appid, description, total_fen, currency, payer_sp_openid,
                        payer_sub_openid, notify_url, attach, profit_sharing, fee_rate_bps,
                        time_expire, mall_info, created_at, next_check_at)
    SELECT t.mall_id, t.sub_mchid, $3, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, t.fee_rate_bps,
           $19, $20, $21, $22
      FROM tenants t, fresh WHERE t.mall_id = $1 AND t.sub_mchid = $2 AND fresh.nonce_fresh
    ON CONFLICT (mall_id, sub_mchid, out_trade_no) DO NOTHING
    RETURNING *)
SELECT fresh.nonce_fresh, inserted.* FROM fresh LEFT JOIN inserted ON true
"""

ORDER = "SELECT * FROM orders WHERE mall_id = $1 AND sub_mchid = $2 AND out_trade_no = $3"

ORDER_BY_TRANSACTION_ID = """
SELECT * FROM orders WHERE mall_id = $1 AND transaction_id = $2 AND sub_mchid = $3
"""


def _recording_request_nonce(read: str) -> str:
    """`read` (of one order, its parameters $1-$3) as a request's first statement, which
    records the request's nonce (clients.REQUEST_NONCE_CTES); a replay reads nothing."""
    return ("WITH" + clients.REQUEST_NONCE_CTES
            + "\nSELECT fresh.nonce_fresh, o.* FROM fresh LEFT JOIN (" + read + ") o ON fresh.nonce_fresh")


ORDER_FOR_REQUEST = _recording_request_nonce(ORDER)
ORDER_BY_TRANSACTION_ID_FOR_REQUEST = _recording_request_nonce(ORDER_BY_TRANSACTION_ID)

# Only the first caller's response is kept; later duplicates read it back, so every
# duplicate of one request gets the same bytes.
STORE_CREATE_RESPONSE = """
UPDATE orders SET prepay_id = $4, create_response = $5
 WHERE mall_id = $1 AND sub_mchid = $2 AND out_trade_no = $3 AND create_response IS NULL
RETURNING create_response
"""

CREATE_RESPONSE = """
SELECT create_response FROM orders WHERE mall_id = $1 AND sub_mchid = $2 AND out_trade_no = $3
"""

# A request the channel refused for good leaves nothing behind: a coupon it reserved is
# the shopper's again.
FORGET_UNOPENED_ORDER = """
WITH forgotten AS (
    DELETE FROM orders
     WHERE mall_id = $1 AND sub_mchid = $2 AND out_trade_no = $3 AND request_hash = $4
       AND create_response IS NULL AND state = 'NOTPAY'
    RETURNING mall_id, sub_mchid, out_trade_no)
UPDATE coupons c SET state = 'issued', order_out_trade_no = NULL
  FROM forgotten f
 WHERE c.mall_id = $1 AND c.mall_id = f.mall_id AND c.sub_mchid = f.sub_mchid
   AND c.order_out_trade_no = f.out_trade_no
   AND c.state = 'reserved'
"""

# Closing releases the coupon the order reserved, in the same statement: only the one
# statement that moves the order off NOTPAY releases it, so it is released exactly once
# however a close races a payment or another close.
CLOSE_ORDER = """
WITH closed AS (
    UPDATE orders SET state = 'CLOSED', closed_at = $4
     WHERE mall_id = $1 AND sub_mchid = $2 AND out_trade_no = $3 AND state = 'NOTPAY'
    RETURNING mall_id, sub_mchid, out_trade_no, state),
released AS (
    UPDATE coupons c SET state = 'issued', order_out_trade_no = NULL
      FROM closed o
     WHERE c.mall_id = $1 AND c.mall_id = o.mall_id AND c.sub_mchid = o.sub_mchid
       AND c.order_out_trade_no = o.out_trade_no
       AND c.state = 'reserved')
SELECT state FROM closed
"""

# An order about to be paid, with what its store's contract says the payment opens,
# whether the guide its mall_info names works for this store, and the store's own points
# rule (NULL: the mall's default), all in the one read before the payment.
ORDER_TO_PAY = """
SELECT o.*, t.max_ratio_bps, t.approval_id, t.freeze_days, t.guide_reward_bps, t.commission_bps, t.auto_split,
       g.guide_id IS NOT NULL AS guide_of_store, pr.points_per_yuan AS store_points_per_yuan
  FROM orders o
  JOIN tenants t USING (mall_id, sub_mchid)
  LEFT JOIN guides g ON g.mall_id = o.mall_id AND g.guide_id = o.mall_info->>'guide_id' AND g.sub_mchid = o.sub_mchid
  LEFT JOIN points_rules pr ON pr.mall_id = o.mall_id AND pr.sub_mchid = o.sub_mchid
 WHERE o.mall_id = $1 AND o.sub_mchid = $2 AND o.out_trade_no = $3
"""

# Payment success in one round trip (`mallpay_apply_payment`): the order's state change, then
# the payment's effects as data: transfers ($10) and rows ($12) for the tables in $11.
APPLY_PAYMENT = "SELECT mallpay_apply_payment($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"

# Unpaid orders of one mall due for a look at the channel, claimed so several gateway
# processes never check the same order at once: claiming pushes next_check_at forward.
CLAIM_DUE_UNPAID = """
UPDATE orders o SET next_check_at = $2
  FROM (SELECT mall_id, sub_mchid, out_trade_no FROM orders
         WHERE mall_id = $4 AND state = 'NOTPAY' AND next_check_at <= $1
         ORDER BY next_check_at
         LIMIT $3
         FOR UPDATE SKIP LOCKED) due
 WHERE o.mall_id = due.mall_id AND o.sub_mchid = due.sub_mchid AND o.out_trade_no = due.out_trade_no
RETURNING o.*
"""


async def insert_order(conn, values: dict, nonce=None):
    """The new order's row; None when it exists already or its store is not the mall's.
    `nonce`: the creating request's (`gateway.nonces.RequestNonce`), recorded by the same
    statement; a replay is refused here, having inserted nothing."""
    row = await conn.fetchrow(
        INSERT_ORDER, values["mall_id"], values["sub_mchid"], values["out_trade_no"],
        *clients.request_nonce_args(nonce),
        values["client_id"], values["request_hash"], values["sp_appid"], values["sub_appid"],
        values["description"], values["total_fen"], values["currency"],
        values["payer_sp_openid"], values["payer_sub_openid"], values["notify_url"],
        values["attach"], values["profit_sharing"], values["time_expire"], values["mall_info"], values["created_at"], values["next_check_at"],
    )
    return _order_for(nonce, row)


async def order(conn, mall_id: str, sub_mchid: str, out_trade_no: str, nonce=None):
    """With `nonce` (a request's, `gateway.nonces.RequestNonce`) the read records it too,
    and a replay is refused here."""
    if nonce is None:
        return await conn.fetchrow(ORDER, mall_id, sub_mchid, out_trade_no)
    return _order_for(nonce, await conn.fetchrow(
        ORDER_FOR_REQUEST, mall_id, sub_mchid, out_trade_no, *clients.request_nonce_args(nonce)))


async def order_by_transaction_id(conn, mall_id: str, sub_mchid: str, transaction_id: str, nonce=None):
    """`nonce`: as for `order`."""
    if nonce is None:
        return await conn.fetchrow(ORDER_BY_TRANSACTION_ID, mall_id, transaction_id, sub_mchid)
    return _order_for(nonce, await conn.fetchrow(
        ORDER_BY_TRANSACTION_ID_FOR_REQUEST, mall_id, transaction_id, sub_mchid, *clients.request_nonce_args(nonce)))


def _order_for(nonce, row):
    """The order of a statement begun by clients.REQUEST_NONCE_CTES (None: no order), once the
    request's nonce has been told what the statement found."""
    clients.spend_request_nonce(nonce, row)
    return None if row["out_trade_no"] is None else row


async def store_create_response(conn, key: tuple[str, str, str], prepay_id: str, response: dict) -> dict:
    stored = await conn.fetchval(STORE_CREATE_RESPONSE, *key, prepay_id, response)
    if stored is None:
        stored = await conn.fetchval(CREATE_RESPONSE, *key)
    return stored


async def forget_unopened_order(conn, key: tuple[str, str, str], request_hash: str) -> None:
    await conn.execute(FORGET_UNOPENED_ORDER, *key, request_hash)


async def close_order(conn, key: tuple[str, str, str], closed_at: datetime) -> bool:
    return await conn.fetchval(CLOSE_ORDER, *key, closed_at) is not None


async def order_to_pay(conn, mall_id: str, sub_mchid: str, out_trade_no: str):
    return await conn.fetchrow(ORDER_TO_PAY, mall_id, sub_mchid, out_trade_no)


async def apply_payment(conn, *, key, total_fen: int, paid: dict, now: datetime, transfers: list[tuple],
                        rows: list[tuple[str, dict]]) -> str:
    """`transfers`: (kind, ref, currency, accounts, amounts); `rows`: (table, row)."""
    return await conn.fetchval(
        APPLY_PAYMENT, *key, total_fen, paid["transaction_id"], paid["payer_total_fen"], paid["bank_type"],
        paid["success_at"], now, transfers, [table for table, _ in rows], [row for _, row in rows],
    )


async def claim_due_unpaid(conn, mall_id: str, now: datetime, recheck_at: datetime, limit: int):
    """Unpaid orders of `mall_id` due for a look at the channel, claimed until `recheck_at`."""
    return await conn.fetch(CLAIM_DUE_UNPAID, now, recheck_at, limit, mall_id)


def _one_when_paid(what: str, table: str, key: str, match: str) -> str:
    """Orders that do not have exactly one `what` row of `table` (aliased x; `key` counted,
    `match` joins it to order o) when paid, and none when not."""
    return f"""
        SELECT o.mall_id || ' order ' || o.sub_mchid || '/' || o.out_trade_no || ' is ' || o.state
               || ' with ' || count(x.{key}) || ' {what}' AS problem
          FROM orders o
          LEFT JOIN {table} x ON x.mall_id = o.mall_id AND {match}
                            AND x.ref = o.sub_mchid || '/' || o.out_trade_no
         GROUP BY o.mall_id, o.sub_mchid, o.out_trade_no, o.state
        HAVING count(x.{key}) <> (CASE WHEN o.state = 'SUCCESS' THEN 1 ELSE 0 END)
    """


# Payments' invariants: a paid order has exactly one payment transfer of its amount and one
# TRANSACTION.SUCCESS notification, an unpaid one none (run by gateway.invariants).
INVARIANT_QUERIES = {
    "paid_order_without_one_payment": _one_when_paid("payment transfers", "transfers", "transfer_id",
                                                     "x.kind = 'payment'"),
    "payment_amount_differs": """
        SELECT o.mall_id || ' order ' || o.sub_mchid || '/' || o.out_trade_no || ' paid '
               || o.total_fen || ' but the ledger took ' || -e.amount_fen || ' from payer' AS problem
          FROM orders o
          JOIN transfers t ON t.mall_id = o.mall_id AND t.kind = 'payment'
                          AND t.ref = o.sub_mchid || '/' || o.out_trade_no
          JOIN entries e ON e.mall_id = t.mall_id AND e.transfer_id = t.transfer_id AND e.account = 'payer'
         WHERE -e.amount_fen <> o.total_fen
    """,
    "paid_order_without_one_notification": _one_when_paid("TRANSACTION.SUCCESS outbox rows", "outbox", "event_id",
                                                          "x.event_type = 'TRANSACTION.SUCCESS'"),
}
