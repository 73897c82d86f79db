-- Cross-store coupons and mall points (SPEC 7).

-- A campaign of one store's coupons. Issuing commits budget with one conditional UPDATE
-- (`committed_* + n <= budget_*`), so concurrent processes can never overspend it; the
-- CHECKs hold the same line should any other statement try.
CREATE TABLE coupon_campaigns (
    mall_id                text NOT NULL REFERENCES malls,
    campaign_id            bigint GENERATED ALWAYS AS IDENTITY,
    name                   text NOT NULL,
    sub_mchid              text NOT NULL,
    funder                 text NOT NULL CHECK (funder IN ('store', 'mall')),
    discount_kind          text NOT NULL CHECK (discount_kind IN ('amount_off', 'threshold')),
    discount_fen           bigint NOT NULL CHECK (discount_fen > 0),
    threshold_fen          bigint NOT NULL CHECK (threshold_fen >= 0),
    min_spend_fen          bigint NOT NULL CHECK (min_spend_fen > discount_fen),
    budget_fen             bigint NOT NULL,
    budget_count           integer NOT NULL,
    committed_fen          bigint NOT NULL DEFAULT 0,
    committed_count        integer NOT NULL DEFAULT 0,
    daily_count_max        integer CHECK (daily_count_max > 0),
    per_shopper_max        integer NOT NULL CHECK (per_shopper_max > 0),
    starts_at              timestamptz NOT NULL,
    ends_at                timestamptz NOT NULL,
    coupon_valid_s         integer NOT NULL CHECK (coupon_valid_s > 0),
    trigger_stores         text[] NOT NULL DEFAULT '{}',
    trigger_floors         text[] NOT NULL DEFAULT '{}',
    trigger_categories     text[] NOT NULL DEFAULT '{}',
    trigger_min_spend_fen  bigint NOT NULL DEFAULT 0 CHECK (trigger_min_spend_fen >= 0),
    state                  text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'paused', 'ended')),
    created_at             timestamptz NOT NULL,
    updated_at             timestamptz NOT NULL,
    PRIMARY KEY (mall_id, campaign_id),
    FOREIGN KEY (mall_id, sub_mchid) REFERENCES tenants,
    CHECK (0 <= committed_fen AND committed_fen <= budget_fen),
    CHECK (0 <= committed_count AND committed_count <= budget_count),
    CHECK (starts_at < ends_at)
);
CREATE INDEX coupon_campaigns_issuing ON coupon_campaigns (mall_id) WHERE state = 'active';

-- Daily and per-shopper issuance counters, each raised by one conditional upsert.
CREATE TABLE coupon_campaign_days (
    mall_id       text NOT NULL,
    campaign_id   bigint NOT NULL,
    day_on        date NOT NULL,  -- China day (contracts)
    issued_count  integer NOT NULL,
    PRIMARY KEY (mall_id, campaign_id, day_on)
);

CREATE TABLE coupon_campaign_shoppers (
    mall_id       text NOT NULL,
    campaign_id   bigint NOT NULL,
    openid        text NOT NULL,
    issued_count  integer NOT NULL,
    PRIMARY KEY (mall_id, campaign_id, openid)
);

-- One coupon of one shopper. `issued` → `reserved` by an order (its out_trade_no kept)
-- → `used` when that order is paid; a closed order sends it back to `issued`.
CREATE TABLE coupons (
    mall_id               text NOT NULL,
    coupon_id             text NOT NULL,
    campaign_id           bigint NOT NULL,
    openid                text NOT NULL,
    sub_mchid             text NOT NULL,
    funder                text NOT NULL,
    discount_fen          bigint NOT NULL CHECK (discount_fen > 0),
    min_spend_fen         bigint NOT NULL,
    trigger_sub_mchid     text NOT NULL,
    trigger_out_trade_no  text NOT NULL,
    issued_at             timestamptz NOT NULL,
    valid_until           timestamptz NOT NULL,
    state                 text NOT NULL DEFAULT 'issued' CHECK (state IN ('issued', 'reserved', 'used')),
    order_out_trade_no    text,
    PRIMARY KEY (mall_id, coupon_id),
    FOREIGN KEY (mall_id, campaign_id) REFERENCES coupon_campaigns,
    CHECK ((state = 'issued') = (order_out_trade_no IS NULL))
);
CREATE INDEX coupons_of_shopper ON coupons (mall_id, openid, issued_at);
CREATE INDEX coupons_of_trigger ON coupons (mall_id, trigger_sub_mchid, trigger_out_trade_no);
CREATE UNIQUE INDEX coupons_of_order ON coupons (mall_id, sub_mchid, order_out_trade_no)
    WHERE order_out_trade_no IS NOT NULL;

-- Every eligible payment's decision: held out or treated, with the probability it was
-- held out at, and the campaigns offered (or, when held out, that would have been).
CREATE TABLE coupon_decisions (
    mall_id        text NOT NULL,
    sub_mchid      text NOT NULL,
    out_trade_no   text NOT NULL,
    openid         text NOT NULL,
    paid_at        timestamptz NOT NULL,  -- the triggering payment's success time
    decided_at     timestamptz NOT NULL,
    holdout_bps    integer NOT NULL CHECK (holdout_bps BETWEEN 0 AND 10000),
    held_out       boolean NOT NULL,
    campaign_ids   bigint[] NOT NULL,
    PRIMARY KEY (mall_id, sub_mchid, out_trade_no)
);
CREATE INDEX coupon_decisions_at ON coupon_decisions (mall_id, decided_at);

-- A coupon used by a paid order: written with the payment (one of the payment's rows,
-- through the writer below, which also marks the coupon used).
CREATE TABLE coupon_redemptions (
    mall_id             text NOT NULL,
    coupon_id           text NOT NULL,
    campaign_id         bigint NOT NULL,
    sub_mchid           text NOT NULL,
    out_trade_no        text NOT NULL,
    openid              text NOT NULL,
    funder              text NOT NULL,
    discount_fen        bigint NOT NULL,
    original_total_fen  bigint NOT NULL,
    paid_fen            bigint NOT NULL,
    trigger_sub_mchid   text NOT NULL,
    redeemed_at         timestamptz NOT NULL,
    PRIMARY KEY (mall_id, coupon_id, out_trade_no)
);
CREATE INDEX coupon_redemptions_campaign ON coupon_redemptions (mall_id, campaign_id);

CREATE FUNCTION coupon_redemptions_insert_row(p_row jsonb) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    v_coupon record;
BEGIN
    UPDATE coupons SET state = 'used'
     WHERE mall_id = p_row->>'mall_id' AND coupon_id = p_row->>'coupon_id'
       AND order_out_trade_no = p_row->>'out_trade_no' AND state = 'reserved'
    RETURNING * INTO v_coupon;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'coupon % was not reserved by order %', p_row->>'coupon_id', p_row->>'out_trade_no'
            USING ERRCODE = 'check_violation';
    END IF;
    INSERT INTO coupon_redemptions (mall_id, coupon_id, campaign_id, sub_mchid, out_trade_no, openid, funder,
                                    discount_fen, original_total_fen, paid_fen, trigger_sub_mchid, redeemed_at)
    VALUES (v_coupon.mall_id, v_coupon.coupon_id, v_coupon.campaign_id, v_coupon.sub_mchid,
            p_row->>'out_trade_no', v_coupon.openid, v_coupon.funder, v_coupon.discount_fen,
            (p_row->>'original_total_fen')::bigint, (p_row->>'paid_fen')::bigint, v_coupon.trigger_sub_mchid,
            (p_row->>'redeemed_at')::timestamptz);
END $$;

-- Points per paid yuan of a store; stores without a rule earn the mall's default.
CREATE TABLE points_rules (
    mall_id          text NOT NULL,
    sub_mchid        text NOT NULL,
    points_per_yuan  integer NOT NULL CHECK (points_per_yuan BETWEEN 0 AND 1000),
    updated_at       timestamptz NOT NULL,
    PRIMARY KEY (mall_id, sub_mchid),
    FOREIGN KEY (mall_id, sub_mchid) REFERENCES tenants
);

-- Points earned by one order (its rate kept, so refunds reverse by the rule it earned by).
CREATE TABLE points_orders (
    mall_id          text NOT NULL,
    sub_mchid        text NOT NULL,
    out_trade_no     text NOT NULL,
    openid           text NOT NULL,
    points_per_yuan  integer NOT NULL,
    paid_fen         bigint NOT NULL,
    earned_points    bigint NOT NULL,
    reversed_points  bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (mall_id, sub_mchid, out_trade_no),
    CHECK (0 <= reversed_points AND reversed_points <= earned_points)
);

CREATE FUNCTION points_orders_insert_row(p_row jsonb) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO points_orders (mall_id, sub_mchid, out_trade_no, openid, points_per_yuan, paid_fen, earned_points)
    SELECT r.mall_id, r.sub_mchid, r.out_trade_no, r.openid, r.points_per_yuan, r.paid_fen, r.earned_points
      FROM jsonb_to_record(p_row) AS r(mall_id text, sub_mchid text, out_trade_no text, openid text,
                                       points_per_yuan integer, paid_fen bigint, earned_points bigint);
END $$;

-- Each points change, to be told to WeChat's business-circle points API exactly once:
-- claimed by a worker with a lease, retried with backoff, `dead` after the last attempt.
-- `total_points` is the member's balance right after the change, read from the ledger
-- in the same transaction.
CREATE TABLE points_syncs (
    mall_id             text NOT NULL,
    sync_id             bigint GENERATED ALWAYS AS IDENTITY,
    kind                text NOT NULL CHECK (kind IN ('points_earn', 'points_reverse')),
    ref                 text NOT NULL,
    sub_mchid           text NOT NULL,
    transaction_id      text NOT NULL,
    appid               text NOT NULL,
    openid              text NOT NULL,
    earn_points         boolean NOT NULL,
    increased_points    bigint NOT NULL,
    points_update_time  timestamptz NOT NULL,
    no_points_remarks   text,
    total_points        bigint NOT NULL,
    state               text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'synced', 'dead')),
    attempts            integer NOT NULL DEFAULT 0,
    next_attempt_at     timestamptz NOT NULL,
    last_error          text,
    synced_at           timestamptz,
    PRIMARY KEY (mall_id, sync_id),
    UNIQUE (mall_id, kind, ref)
);
CREATE INDEX points_syncs_due ON points_syncs (next_attempt_at) WHERE state = 'pending';

CREATE FUNCTION points_syncs_insert_row(p_row jsonb) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO points_syncs (mall_id, kind, ref, sub_mchid, transaction_id, appid, openid, earn_points,
                              increased_points, points_update_time, no_points_remarks, total_points,
                              next_attempt_at)
    SELECT r.mall_id, r.kind, r.ref, r.sub_mchid, r.transaction_id, r.appid, r.openid, r.earn_points,
           r.increased_points, r.points_update_time, r.no_points_remarks,
           coalesce((SELECT a.balance_fen FROM accounts a WHERE a.mall_id = r.mall_id AND a.account = r.account), 0),
           r.points_update_time
      FROM jsonb_to_record(p_row) AS r(mall_id text, kind text, ref text, sub_mchid text, transaction_id text,
                                       appid text, openid text, earn_points boolean, increased_points bigint,
                                       points_update_time timestamptz, no_points_remarks text, account text)
    ON CONFLICT (mall_id, kind, ref) DO NOTHING;
END $$;

-- A shopper's paid orders, for the next-store model's history and the uplift report.
CREATE INDEX orders_paid_by_shopper ON orders (mall_id, (coalesce(payer_sp_openid, payer_sub_openid)), success_at)
    WHERE state = 'SUCCESS';
