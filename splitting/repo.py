"""Splitting's storage adapter: the rows of `order_funds` and the SQL over them."""

from __future__ import annotations

from datetime import datetime

from splitting.funds import OrderFunds

# The order_funds writer for rows that join another transaction as data (payment
# success): migrations/0003 `order_funds_insert_row`; `opened_funds_row` is the row.
FUNDS_TABLE = "order_funds"


def opened_funds_row(*, mall_id: str, sub_mchid: str, out_trade_no: str, transaction_id: str,
                     funds: OrderFunds, approval_id: int | None, paid_at: datetime, finish_by: datetime) -> dict:
    """A paid order's funds as they open, every column of `order_funds` (its writer takes
    the whole row); splits, returns and refunds change them later."""
    return {"mall_id": mall_id, "sub_mchid": sub_mchid, "out_trade_no": out_trade_no,
            "transaction_id": transaction_id, "paid_fen": funds.paid_fen, "fee_fen": funds.fee_fen,
            "max_ratio_bps": funds.max_ratio_bps, "approval_id": approval_id, "frozen_fen": funds.frozen_fen,
            "reserved_fen": funds.reserved_fen, "splits_requested": funds.splits_requested,
            "lines": lines_json(funds), "unfrozen": funds.unfrozen, "refunded_fen": funds.refunded_fen,
            "fee_refunded_fen": funds.fee_refunded_fen, "paid_at": paid_at.isoformat(),
            "finish_by": finish_by.isoformat(), "reward_set_aside_fen": funds.reward_set_aside_fen,
            "commission_set_aside_fen": funds.commission_set_aside_fen}


def lines_json(funds: OrderFunds) -> list[dict]:
    return [{"account": line.account, "returnable": line.returnable, "split_fen": line.split_fen,
             "back_fen": line.back_fen, "reserved_fen": line.reserved_fen} for line in funds.lines]
