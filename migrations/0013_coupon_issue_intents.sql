-- Issuing coupons survives the process that took the payment (SPEC 7).

-- One row per paid order whose coupons are still to be decided, written by the payment's
-- own transaction (one of its rows, through the writer below). The issuing transaction
-- deletes it; if the process dies first, or issuing fails or runs out of time, a worker of
-- any process claims it once `due_at` has passed (FOR UPDATE SKIP LOCKED, the claim
-- pushing `due_at` forward as a lease) and issues then. Issuing stays exactly once per
-- payment however many try: its decision row (coupon_decisions' primary key) is written
-- first in the same transaction as the coupons and budget.
CREATE TABLE coupon_issue_intents (
    mall_id       text NOT NULL,
    sub_mchid     text NOT NULL,
    out_trade_no  text NOT NULL,
    hold_until    timestamptz NOT NULL,  -- the payment's TRANSACTION.SUCCESS waits until then at most
    due_at        timestamptz NOT NULL,  -- when a worker may take it over (then: its lease)
    attempts      integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    state         text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'dead')),
    last_error    text,
    created_at    timestamptz NOT NULL,
    PRIMARY KEY (mall_id, sub_mchid, out_trade_no)
);
CREATE INDEX coupon_issue_intents_due ON coupon_issue_intents (mall_id, due_at) WHERE state = 'pending';

CREATE FUNCTION coupon_issue_intents_insert_row(p_row jsonb) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO coupon_issue_intents (mall_id, sub_mchid, out_trade_no, hold_until, due_at, created_at)
    SELECT r.mall_id, r.sub_mchid, r.out_trade_no, r.hold_until, r.due_at, r.created_at
      FROM jsonb_to_record(p_row) AS r(mall_id text, sub_mchid text, out_trade_no text, hold_until timestamptz,
                                       due_at timestamptz, created_at timestamptz)
    ON CONFLICT (mall_id, sub_mchid, out_trade_no) DO NOTHING;
END $$;

-- A coupon that expired unused gives its amount back to its campaign's budget: it is
-- marked `expired` and the campaign's committed amount and count go down by it, in one
-- statement (coupons/repo.py EXPIRE_COUPONS).
ALTER TABLE coupons DROP CONSTRAINT coupons_state_check;
ALTER TABLE coupons ADD CONSTRAINT coupons_state_check CHECK (state IN ('issued', 'reserved', 'used', 'expired'));
ALTER TABLE coupons DROP CONSTRAINT coupons_check;
ALTER TABLE coupons ADD CONSTRAINT coupons_check
    CHECK ((state IN ('issued', 'expired')) = (order_out_trade_no IS NULL));
CREATE INDEX coupons_to_expire ON coupons (mall_id, valid_until) WHERE state = 'issued';
