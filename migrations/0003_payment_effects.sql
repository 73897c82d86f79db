-- Payment success grows by data: one function applies the order's state change and then
-- posts whatever the gateway's Python code put into the payment's effects (balanced
-- transfers through the ledger's own posting path, rows through each table's writer).
-- Coupons, points and receipts join payment success by adding transfers and rows; none
-- of them re-declares this function.

DROP FUNCTION mallpay_apply_payment(text, text, text, bigint, text, bigint, text, timestamptz,
                                    timestamptz, text[], bigint[], uuid, jsonb, bigint, timestamptz, integer);

-- A balanced transfer as data: what ledger_post_transfer takes, less the mall and time.
CREATE TYPE ledger_transfer AS (kind text, ref text, currency text, accounts text[], amounts bigint[]);

-- One writer per table for rows that join a transaction as data. A writer is named
-- `<table>_insert_row` and takes one row as jsonb (column name -> value); the payment
-- function finds it by the table's name, so a new table needs its own writer and nothing
-- else. Static SQL in PL/pgSQL, so each session plans it once.

CREATE FUNCTION outbox_insert_row(p_row jsonb) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO outbox (mall_id, notification_id, client_id, notify_url, event_type, ref,
                        summary, original_type, resource, next_attempt_at, created_at)
    VALUES (p_row->>'mall_id', (p_row->>'notification_id')::uuid, p_row->>'client_id', p_row->>'notify_url',
            p_row->>'event_type', p_row->>'ref', p_row->>'summary', p_row->>'original_type', p_row->'resource',
            (p_row->>'next_attempt_at')::timestamptz, (p_row->>'created_at')::timestamptz)
    ON CONFLICT (mall_id, event_type, ref) DO NOTHING;
END $$;

-- An order's funds are splitting.funds.OrderFunds whole: the row names every column, so
-- a column added later is written as soon as splitting/repo.py puts it in the row.
CREATE FUNCTION order_funds_insert_row(p_row jsonb) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO order_funds SELECT * FROM jsonb_populate_record(NULL::order_funds, p_row);
END $$;

CREATE FUNCTION jobs_insert_row(p_row jsonb) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO jobs (mall_id, kind, ref, due_at, created_at)
    VALUES (p_row->>'mall_id', p_row->>'kind', p_row->>'ref', (p_row->>'due_at')::timestamptz,
            (p_row->>'created_at')::timestamptz)
    ON CONFLICT (mall_id, kind, ref) DO NOTHING;
END $$;

-- The payment-success transaction in one round trip: mark the order paid (only from
-- NOTPAY, only for the amount it was created with), then post every transfer of
-- `p_transfers` (each balanced, through ledger_post_transfer) and write every row of
-- `p_rows` through the writer of the table named at the same place in `p_row_tables`.
-- Returns one of 'applied', 'already_applied', 'amount_mismatch', 'order_closed',
-- 'not_found'; nothing is written unless it returns 'applied'.
CREATE FUNCTION mallpay_apply_payment(
    p_mall_id text, p_sub_mchid text, p_out_trade_no text, p_total_fen bigint,
    p_transaction_id text, p_payer_total_fen bigint, p_bank_type text, p_success_at timestamptz,
    p_now timestamptz, p_transfers ledger_transfer[], p_row_tables text[], p_rows jsonb[]
) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    v_order record;
    v_transfer ledger_transfer;
BEGIN
    UPDATE orders
       SET state = 'SUCCESS', transaction_id = p_transaction_id, payer_total_fen = p_payer_total_fen,
           bank_type = p_bank_type, success_at = p_success_at
     WHERE mall_id = p_mall_id AND sub_mchid = p_sub_mchid AND out_trade_no = p_out_trade_no
       AND state = 'NOTPAY' AND total_fen = p_total_fen;
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
    FOREACH v_transfer IN ARRAY p_transfers LOOP
        IF ledger_post_transfer(p_mall_id, v_transfer.kind, v_transfer.ref, v_transfer.currency, p_now,
                                v_transfer.accounts, v_transfer.amounts) IS NULL THEN
            RAISE EXCEPTION '% transfer % posted twice', v_transfer.kind, v_transfer.ref
                USING ERRCODE = 'unique_violation';
        END IF;
    END LOOP;
    FOR i IN 1 .. coalesce(array_length(p_rows, 1), 0) LOOP
        EXECUTE format('SELECT %I($1)', p_row_tables[i] || '_insert_row') USING p_rows[i];
    END LOOP;
    RETURN 'applied';
END $$;

-- WeChat Pay's partner JSAPI allows `|` in out_trade_no: [0-9A-Za-z_\-|*], 6 to 32.
ALTER TABLE orders DROP CONSTRAINT orders_out_trade_no_check;
ALTER TABLE orders ADD CONSTRAINT orders_out_trade_no_check CHECK (out_trade_no ~ '^[0-9A-Za-z_*|-]{6,32}$');
