-- The mall paying a store what its coupons' subsidies owe (tenant:S:coupon_receivable →
-- tenant:S:available), one row per payout, idempotent by out_payout_no within the mall.
CREATE TABLE coupon_subsidy_payouts (
    mall_id        text NOT NULL,
    out_payout_no  text NOT NULL,
    sub_mchid      text NOT NULL,
    amount_fen     bigint NOT NULL CHECK (amount_fen > 0),
    paid_at        timestamptz NOT NULL,
    PRIMARY KEY (mall_id, out_payout_no),
    FOREIGN KEY (mall_id, sub_mchid) REFERENCES tenants
);

-- The part of a mall-funded discount that refunds took back from the store's receivable.
ALTER TABLE coupon_redemptions ADD COLUMN subsidy_reversed_fen bigint NOT NULL DEFAULT 0
    CHECK (subsidy_reversed_fen >= 0);
