-- The gateway's own splits keep their room inside the cap (SPEC 5, splitting.funds): what is
-- set aside at payment for the guide's reward and the automatic commission, until the split
-- is asked for or given up with a recorded reason.
ALTER TABLE order_funds
    ADD COLUMN reward_set_aside_fen bigint NOT NULL DEFAULT 0 CHECK (reward_set_aside_fen >= 0),
    ADD COLUMN commission_set_aside_fen bigint NOT NULL DEFAULT 0 CHECK (commission_set_aside_fen >= 0);

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
