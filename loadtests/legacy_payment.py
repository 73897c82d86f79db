"""The payment transaction as it was before payment success grew by data, kept to
compare against in the same benchmark run (`--variants gateway legacy`).

Before payment effects, `mallpay_apply_payment` took 16 typed arguments and opened the
order's funds and jobs with its own SQL. This module installs that function, as the
migration of its time declared it (0002_splitting.sql, now in git history only), under
another name, and runs what `gateway.services.payments._apply` ran then, with the json
codec of then (`use_stdlib_json`). Measurement only; nothing in the gateway uses it.
"""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import gateway.db
from gateway.shapes.transactions import transaction_resource
from ledger.payments import channel_fee_fen, payment_transfer

FUNCTION = "bench_legacy_apply_payment"
APPLY = f"SELECT {FUNCTION}($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)"
# The 16-argument function, renamed; its text as migrations/0002_splitting.sql had it.
FUNCTION_SQL = f"""\
CREATE FUNCTION {FUNCTION}(
    p_mall_id text, p_sub_mchid text, p_out_trade_no text, p_total_fen bigint,
    p_transaction_id text, p_payer_total_fen bigint, p_bank_type text, p_success_at timestamptz,
    p_now timestamptz, p_accounts text[], p_amounts bigint[],
    p_notification_id uuid, p_resource jsonb,
    p_fee_fen bigint, p_reward_due_at timestamptz, p_finish_margin_s integer
) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    v_order record;
    v_tenant record;
    v_ref text := p_sub_mchid || '/' || p_out_trade_no;
    v_finish_by timestamptz;
BEGIN
    UPDATE orders
       SET state = 'SUCCESS', transaction_id = p_transaction_id, payer_total_fen = p_payer_total_fen,
           bank_type = p_bank_type, success_at = p_success_at
     WHERE mall_id = p_mall_id AND sub_mchid = p_sub_mchid AND out_trade_no = p_out_trade_no
       AND state = 'NOTPAY' AND total_fen = p_total_fen
    RETURNING client_id, notify_url, profit_sharing, mall_info INTO v_order;
    IF NOT FOUND THEN
        SELECT state, total_fen INTO v_order FROM orders
         WHERE mall_id = p_mall_id AND sub_mchid = p_sub_mchid AND out_trade_no = p_out_trade_no;
        IF NOT FOUND THEN
            RETURN 'not_found';
        ELSIF v_order.total_fen <> p_total_fen THEN
            RETURN 'amount_mismatch';
        ELSIF v_order.state = 'SUCCESS' THEN
            RETURN 'already_applied';
        ELSE
            RETURN 'order_closed';
        END IF;
    END IF;
    IF ledger_post_transfer(p_mall_id, 'payment', v_ref, 'CNY', p_now, p_accounts, p_amounts) IS NULL THEN
        RAISE EXCEPTION 'payment of % posted twice', v_ref USING ERRCODE = 'unique_violation';
    END IF;
    INSERT INTO outbox (mall_id, notification_id, client_id, notify_url, event_type, ref,
                        summary, original_type, resource, next_attempt_at, created_at)
    VALUES (p_mall_id, p_notification_id, v_order.client_id, v_order.notify_url,
            'TRANSACTION.SUCCESS', v_ref, '支付成功', 'transaction', p_resource, p_now, p_now);
    SELECT max_ratio_bps, approval_id, freeze_days INTO v_tenant FROM tenants
     WHERE mall_id = p_mall_id AND sub_mchid = p_sub_mchid;
    v_finish_by := p_success_at + make_interval(days => v_tenant.freeze_days, secs => -p_finish_margin_s);
    INSERT INTO order_funds (mall_id, sub_mchid, out_trade_no, transaction_id, paid_fen, fee_fen,
                             max_ratio_bps, approval_id, frozen_fen, unfrozen, paid_at, finish_by)
    VALUES (p_mall_id, p_sub_mchid, p_out_trade_no, p_transaction_id, p_total_fen, p_fee_fen,
            v_tenant.max_ratio_bps, v_tenant.approval_id,
            CASE WHEN v_order.profit_sharing THEN p_total_fen - p_fee_fen ELSE 0 END,
            NOT v_order.profit_sharing, p_success_at, v_finish_by);
    IF v_order.profit_sharing THEN
        INSERT INTO jobs (mall_id, kind, ref, due_at, created_at)
        VALUES (p_mall_id, 'finish_order', v_ref, v_finish_by, p_now);
        IF p_reward_due_at IS NOT NULL AND v_order.mall_info ? 'guide_id' THEN
            INSERT INTO jobs (mall_id, kind, ref, due_at, created_at)
            VALUES (p_mall_id, 'guide_reward', v_ref, p_reward_due_at, p_now);
        END IF;
    END IF;
    RETURN 'applied';
END $$;
"""


def use_stdlib_json() -> None:
    """The connection codec as it was before: the standard library's json (now orjson)."""
    async def init(conn) -> None:
        for type_name in ("jsonb", "json"):
            await conn.set_type_codec(type_name, schema="pg_catalog", decoder=json.loads,
                                      encoder=lambda v: json.dumps(v, ensure_ascii=False, separators=(",", ":")))
    gateway.db._init_connection = init


async def install(conn) -> None:
    await conn.execute(FUNCTION_SQL)


async def apply(svc, conn, row, trade) -> str:
    """The arguments the 16-parameter function took, built as the gateway built them."""
    fee_fen = channel_fee_fen(trade.total_fen, row["fee_rate_bps"])
    transfer = payment_transfer(
        sub_mchid=row["sub_mchid"], out_trade_no=row["out_trade_no"], total_fen=trade.total_fen,
        fee_fen=fee_fen, profit_sharing=row["profit_sharing"],
    )
    paid = {"transaction_id": trade.transaction_id, "bank_type": trade.bank_type or "OTHERS",
            "success_at": trade.success_at or svc.clock(),
            "payer_total_fen": trade.payer_total_fen if trade.payer_total_fen is not None else trade.total_fen}
    settings = svc.settings
    # One statement, as before. The trigger that then filled the order's set-asides is gone
    # (the rule is computed in Python now), so they stay 0 here.
    return await conn.fetchval(
        APPLY, row["mall_id"], row["sub_mchid"], row["out_trade_no"], trade.total_fen, paid["transaction_id"],
        paid["payer_total_fen"], paid["bank_type"], paid["success_at"], svc.clock(), transfer.accounts,
        transfer.amounts_fen, uuid.uuid4(), transaction_resource(row, paid),
        fee_fen,
        paid["success_at"] + timedelta(seconds=settings.split_first_try_after_s),
        settings.finish_before_unfreeze_s,
    )
