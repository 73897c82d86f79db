-- Revenue splitting (SPEC 5): high-ratio approvals, guides, receivers, each paid order's
-- funds, split orders, split returns, refunds, and the scheduler's jobs.

-- Approvals are records of a decision: never changed, never deleted.
CREATE TABLE ratio_approvals (
    mall_id        text NOT NULL,
    approval_id    bigint GENERATED ALWAYS AS IDENTITY,
    sub_mchid      text NOT NULL,
    approved_by    text NOT NULL CHECK (length(approved_by) BETWEEN 1 AND 64),
    approved_at    timestamptz NOT NULL,
    reason         text NOT NULL CHECK (length(reason) BETWEEN 1 AND 500),
    max_ratio_bps  integer NOT NULL CHECK (max_ratio_bps BETWEEN 3001 AND 10000),
    recorded_at    timestamptz NOT NULL,
    PRIMARY KEY (mall_id, approval_id),
    FOREIGN KEY (mall_id, sub_mchid) REFERENCES tenants
);
CREATE TRIGGER ratio_approvals_append_only BEFORE UPDATE OR DELETE ON ratio_approvals
    FOR EACH ROW EXECUTE FUNCTION ledger_append_only();

ALTER TABLE tenants ADD COLUMN approval_id bigint;
ALTER TABLE tenants DROP CONSTRAINT tenants_max_ratio_bps_check;
ALTER TABLE tenants ADD CONSTRAINT tenants_max_ratio_bps_check
    CHECK (max_ratio_bps BETWEEN 0 AND 10000 AND (max_ratio_bps <= 3000 OR approval_id IS NOT NULL));
ALTER TABLE tenants ADD FOREIGN KEY (mall_id, approval_id) REFERENCES ratio_approvals;

-- Shopping guides work for one store; their rewards are split to their openid.
CREATE TABLE guides (
    mall_id     text NOT NULL,
    guide_id    text NOT NULL CHECK (guide_id ~ '^[0-9A-Za-z_-]{1,32}$'),
    sub_mchid   text NOT NULL,
    openid      text NOT NULL,
    name        text NOT NULL,
    created_at  timestamptz NOT NULL,
    PRIMARY KEY (mall_id, guide_id),
    UNIQUE (mall_id, sub_mchid, openid),
    FOREIGN KEY (mall_id, sub_mchid) REFERENCES tenants
);

-- Split receivers registered at the channel for a store (besides its guides).
CREATE TABLE receivers (
    mall_id        text NOT NULL,
    sub_mchid      text NOT NULL,
    type           text NOT NULL CHECK (type IN ('MERCHANT_ID', 'PERSONAL_OPENID', 'PERSONAL_SUB_OPENID')),
    account        text NOT NULL,
    relation_type  text NOT NULL,
    ledger_account text NOT NULL,
    created_at     timestamptz NOT NULL,
    deleted_at     timestamptz,
    PRIMARY KEY (mall_id, sub_mchid, type, account),
    FOREIGN KEY (mall_id, sub_mchid) REFERENCES tenants
);

-- One row per paid order that can still be split or refunded: splitting.funds.OrderFunds,
-- locked (FOR UPDATE) while an operation decides, so concurrent requests serialise here.
CREATE TABLE order_funds (
    mall_id           text NOT NULL,
    sub_mchid         text NOT NULL,
    out_trade_no      text NOT NULL,
    transaction_id    text NOT NULL,
    paid_fen          bigint NOT NULL CHECK (paid_fen > 0),
    fee_fen           bigint NOT NULL CHECK (fee_fen >= 0),
    max_ratio_bps     integer NOT NULL,
    approval_id       bigint,
    frozen_fen        bigint NOT NULL CHECK (frozen_fen >= 0),
    reserved_fen      bigint NOT NULL DEFAULT 0 CHECK (reserved_fen >= 0),
    splits_requested  integer NOT NULL DEFAULT 0 CHECK (splits_requested BETWEEN 0 AND 50),
    lines             jsonb NOT NULL DEFAULT '[]',
    unfrozen          boolean NOT NULL,
    refunded_fen      bigint NOT NULL DEFAULT 0,
    fee_refunded_fen  bigint NOT NULL DEFAULT 0,
    paid_at           timestamptz NOT NULL,
    finish_by         timestamptz NOT NULL,      -- before the channel's auto-unfreeze
    PRIMARY KEY (mall_id, sub_mchid, out_trade_no),
    CHECK (refunded_fen BETWEEN 0 AND paid_fen),
    CHECK (fee_refunded_fen BETWEEN 0 AND fee_fen),
    CHECK (reserved_fen <= frozen_fen AND frozen_fen <= paid_fen - fee_fen)
);
CREATE UNIQUE INDEX order_funds_transaction ON order_funds (mall_id, transaction_id);

CREATE TABLE split_orders (
    mall_id          text NOT NULL,
    sub_mchid        text NOT NULL,
    out_order_no     text NOT NULL CHECK (out_order_no ~ '^[0-9A-Za-z_*@|-]{1,64}$'),
    out_trade_no     text NOT NULL,
    transaction_id   text NOT NULL,
    kind             text NOT NULL CHECK (kind IN ('split', 'unfreeze')),
    purpose          text NOT NULL CHECK (purpose IN ('api', 'guide_reward', 'commission', 'finish')),
    unfreeze_unsplit boolean NOT NULL DEFAULT false,
    request_hash     text NOT NULL,
    parts            jsonb NOT NULL,            -- [{type, account, amount, description, ledger_account}]
    state            text NOT NULL CHECK (state IN ('PREPARED', 'PROCESSING', 'FINISHED', 'FAILED')),
    order_id         text,
    result           jsonb,                     -- the channel's last answer, in WeChat's shape
    approval_id      bigint,
    client_id        text,
    created_at       timestamptz NOT NULL,
    finished_at      timestamptz,
    PRIMARY KEY (mall_id, sub_mchid, out_order_no)
);
CREATE INDEX split_orders_by_trade ON split_orders (mall_id, sub_mchid, out_trade_no);

CREATE TABLE split_returns (
    mall_id        text NOT NULL,
    sub_mchid      text NOT NULL,
    out_return_no  text NOT NULL CHECK (out_return_no ~ '^[0-9A-Za-z_*@|-]{1,64}$'),
    out_order_no   text NOT NULL,
    out_trade_no   text NOT NULL,
    return_mchid   text NOT NULL,
    ledger_account text NOT NULL,
    amount_fen     bigint NOT NULL CHECK (amount_fen > 0),
    request_hash   text NOT NULL,
    out_refund_no  text,                         -- set when returned to fund a refund
    state          text NOT NULL CHECK (state IN ('PREPARED', 'PROCESSING', 'SUCCESS', 'FAILED')),
    return_id      text,
    result         jsonb,
    client_id      text,
    created_at     timestamptz NOT NULL,
    finished_at    timestamptz,
    PRIMARY KEY (mall_id, sub_mchid, out_return_no)
);

CREATE TABLE refunds (
    mall_id        text NOT NULL,
    sub_mchid      text NOT NULL,
    out_refund_no  text NOT NULL CHECK (out_refund_no ~ '^[0-9A-Za-z_*@|-]{1,64}$'),
    out_trade_no   text NOT NULL,
    transaction_id text NOT NULL,
    amount_fen     bigint NOT NULL CHECK (amount_fen > 0),
    total_fen      bigint NOT NULL,
    reason         text,
    notify_url     text,
    request_hash   text NOT NULL,
    plan           jsonb NOT NULL,               -- splitting.funds.RefundPlan
    -- CLOSED: the channel refused it and no money moved; ABNORMAL: the channel took the
    -- money but could not pay the shopper, it waits at the channel for handling by hand.
    state          text NOT NULL CHECK (state IN ('PREPARED', 'PROCESSING', 'SUCCESS', 'ABNORMAL', 'CLOSED')),
    refund_id      text,
    result         jsonb,
    client_id      text NOT NULL,
    created_at     timestamptz NOT NULL,
    success_at     timestamptz,
    PRIMARY KEY (mall_id, sub_mchid, out_refund_no)
);
CREATE INDEX refunds_by_trade ON refunds (mall_id, sub_mchid, out_trade_no);

-- The gateway's own scheduler: retries and deadlines that must survive restarts and run
-- once across several gateway processes (claimed with FOR UPDATE SKIP LOCKED + a lease).
CREATE TABLE jobs (
    mall_id     text NOT NULL,
    job_id      bigint GENERATED ALWAYS AS IDENTITY,
    kind        text NOT NULL,
    ref         text NOT NULL,
    due_at      timestamptz NOT NULL,
    attempts    integer NOT NULL DEFAULT 0,
    state       text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'done', 'dead')),
    last_error  text,
    created_at  timestamptz NOT NULL,
    done_at     timestamptz,
    PRIMARY KEY (mall_id, job_id),
    UNIQUE (mall_id, kind, ref)
);
CREATE INDEX jobs_due ON jobs (due_at) WHERE state = 'pending';

-- The payment-success transaction now also opens the order's funds for splitting and
-- schedules what must follow: the guide's instant reward and the finish before the
-- channel's auto-unfreeze deadline.
DROP FUNCTION mallpay_apply_payment(text, text, text, bigint, text, bigint, text, timestamptz,
                                    timestamptz, text[], bigint[], uuid, jsonb);
CREATE FUNCTION mallpay_apply_payment(
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
