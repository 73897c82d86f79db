-- The gateway's own splits keep their room inside the cap (SPEC 5, splitting.funds): what is
-- set aside at payment for the guide's reward and the automatic commission, until the split
-- is asked for or given up with a recorded reason.
ALTER TABLE order_funds
    ADD COLUMN reward_set_aside_fen bigint NOT NULL DEFAULT 0 CHECK (reward_set_aside_fen >= 0),
    ADD COLUMN commission_set_aside_fen bigint NOT NULL DEFAULT 0 CHECK (commission_set_aside_fen >= 0);

-- Filled as the payment opens the order's funds, in the payment's own statement (the
-- payment stays one round trip). The rule is splitting.funds.set_asides_fen: each ratio of
-- the paid total floored, the reward first, together never above the cap; the reward only
-- for a guide of this store, the commission only when the contract splits it automatically.
CREATE FUNCTION order_funds_set_asides() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_tenant record;
    v_cap bigint;
    v_reward bigint := 0;
BEGIN
    IF NEW.unfrozen THEN
        RETURN NEW;
    END IF;
    SELECT commission_bps, guide_reward_bps, auto_split INTO v_tenant FROM tenants
     WHERE mall_id = NEW.mall_id AND sub_mchid = NEW.sub_mchid;
    v_cap := NEW.paid_fen * NEW.max_ratio_bps / 10000;
    IF EXISTS (SELECT 1 FROM orders o JOIN guides g ON g.mall_id = o.mall_id AND g.guide_id = o.mall_info->>'guide_id'
                WHERE o.mall_id = NEW.mall_id AND o.sub_mchid = NEW.sub_mchid AND o.out_trade_no = NEW.out_trade_no
                  AND g.sub_mchid = NEW.sub_mchid) THEN
        v_reward := least(NEW.paid_fen * v_tenant.guide_reward_bps / 10000, v_cap);
    END IF;
    NEW.reward_set_aside_fen := v_reward;
    NEW.commission_set_aside_fen := CASE WHEN v_tenant.auto_split
                                         THEN least(NEW.paid_fen * v_tenant.commission_bps / 10000, v_cap - v_reward)
                                         ELSE 0 END;
    RETURN NEW;
END $$;
CREATE TRIGGER order_funds_set_asides BEFORE INSERT ON order_funds
    FOR EACH ROW EXECUTE FUNCTION order_funds_set_asides();

-- Operators act on jobs that gave up: a dead job is retried (back to pending) or resolved
-- (settled by hand, never run again). Every action is a record: who, when, why.
ALTER TABLE jobs DROP CONSTRAINT jobs_state_check;
ALTER TABLE jobs ADD CONSTRAINT jobs_state_check CHECK (state IN ('pending', 'done', 'dead', 'resolved'));
CREATE INDEX jobs_dead ON jobs (mall_id, job_id) WHERE state = 'dead';

CREATE TABLE job_actions (
    mall_id     text NOT NULL,
    action_id   bigint GENERATED ALWAYS AS IDENTITY,
    job_id      bigint NOT NULL,
    action      text NOT NULL CHECK (action IN ('retry', 'resolve')),
    acted_by    text NOT NULL CHECK (length(acted_by) BETWEEN 1 AND 64),
    reason      text NOT NULL CHECK (length(reason) BETWEEN 1 AND 500),
    last_error  text,                    -- what the job said when it gave up
    acted_at    timestamptz NOT NULL,
    PRIMARY KEY (mall_id, action_id),
    FOREIGN KEY (mall_id, job_id) REFERENCES jobs
);
CREATE TRIGGER job_actions_append_only BEFORE UPDATE OR DELETE ON job_actions
    FOR EACH ROW EXECUTE FUNCTION ledger_append_only();

-- The channel's own cap per store (GET /v3/profitsharing/merchant-configs), as last asked:
-- the cap the gateway enforces is the lower of it and the contract's.
CREATE TABLE channel_caps (
    mall_id        text NOT NULL,
    sub_mchid      text NOT NULL,
    max_ratio_bps  integer NOT NULL CHECK (max_ratio_bps BETWEEN 0 AND 10000),
    checked_at     timestamptz NOT NULL,
    PRIMARY KEY (mall_id, sub_mchid),
    FOREIGN KEY (mall_id, sub_mchid) REFERENCES tenants
);
