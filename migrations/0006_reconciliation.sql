-- Reconciliation against the channel's bills (SPEC 6): one report per mall and China-time
-- day, and its discrepancies. Lines that match are counted, not stored, so a busy day's
-- report stays small. Payouts need no table: they are ledger transfers of kind `payout`.

CREATE TABLE reconciliations (
    mall_id       text NOT NULL REFERENCES malls,
    bill_on       date NOT NULL,                 -- the China-time day the bills cover
    state         text NOT NULL CHECK (state IN ('running', 'done')),
    runs          integer NOT NULL DEFAULT 1 CHECK (runs > 0),
    -- per bill: lines read, or "none" for a day the channel has no bill (NO_STATEMENT_EXIST)
    bills         jsonb NOT NULL DEFAULT '{}',
    counts        jsonb NOT NULL DEFAULT '{}',   -- {class: n} over all bills, matched included
    started_at    timestamptz NOT NULL,
    finished_at   timestamptz,
    PRIMARY KEY (mall_id, bill_on)
);

CREATE TABLE reconciliation_items (
    mall_id       text NOT NULL,
    bill_on       date NOT NULL,
    bill          text NOT NULL CHECK (bill IN ('trade', 'profitsharing', 'fundflow')),
    class         text NOT NULL CHECK (class IN ('missing_ours', 'missing_channel', 'amount_mismatch',
                                                 'status_mismatch', 'fee_mismatch')),
    ref           text NOT NULL,                 -- sub_mchid/out_trade_no, .../out_refund_no, ...
    sub_mchid     text NOT NULL,
    ours          jsonb,                         -- what our books say ({amount, fee, state}), null if nothing
    channel       jsonb,                         -- what the bill line says, null if no line
    what          text NOT NULL,                 -- what happened, for finance
    action        text NOT NULL,                 -- what to do about it
    healed_at     timestamptz,                   -- set when the gateway fixed its own side
    found_at      timestamptz NOT NULL,
    PRIMARY KEY (mall_id, bill_on, bill, class, ref),
    FOREIGN KEY (mall_id, bill_on) REFERENCES reconciliations
);
CREATE INDEX reconciliation_items_store ON reconciliation_items (mall_id, sub_mchid, bill_on);

-- Payouts of a store by time: transfers of kind `payout` whose ref starts with the store.
CREATE INDEX transfers_payouts ON transfers (mall_id, ref, created_at) WHERE kind = 'payout';

-- A day's payments, for the trade bill's reconciliation.
CREATE INDEX orders_paid_at ON orders (mall_id, success_at) WHERE state = 'SUCCESS';
