-- replaces: 0001_core.sql sha256:96d8e68a73a02a53feb89f231d48cce074a2ce88da9bd71252088f078207293d
-- replaces: 0002_splitting.sql sha256:a6df0ac4ab81d94fe5c8555fa068187c82f0c81665a689468966761a80a7c3de
-- replaces: 0003_payment_effects.sql sha256:0cc92239eba85ed79706e409a1573f6823fd0c8ebe3a92edb634192e5e08d1dd
-- replaces: 0005_split_set_asides_and_job_actions.sql sha256:3b7320bb4838ebb1089e3413735cffeb33f3c4dbb6434f6402f0e3ca8343496d
-- replaces: 0006_reconciliation.sql sha256:34baff47365118044b8e054e2e6a0eb285f7e6e320fe731b3e604438ac28307d
-- replaces: 0007_ledger_instants.sql sha256:594a656bb09d12f63323f1772f5de0b31043ceac6e218a386887b3658f33ba61
-- replaces: 0008_coupons_points.sql sha256:3f144fbe0df6fccfbec83a0c27d952c339ca6e1ca883f4bf35eae7942362e591
-- replaces: 0012_coupon_subsidy_payouts.sql sha256:b82979a70ac0b32217bc0bd8d711f06c306416370a766ac68a8cd6005033c626
-- replaces: 0013_coupon_issue_intents.sql sha256:c5a489133214e505bfd08aa3663d00fd616fd09bdc06a3971cbddab5fd7a8945
-- replaces: 0014_payment_writers_static.sql sha256:aa7ff8dd7131e533293920d18b9b7e8eddd3c1eb60bd77edbb9767fdb3a7a4de
--
-- The Mall Pay schema, whole: every table, function and index declared once, in its final
-- form. It replaces the ten files listed above (in git history, with their checksums as
-- they were applied): an empty database runs this file; a database that applied all ten
-- only records it (gateway/db/migrate.py). Changes go into new files numbered after it.
--
-- Every table carries mall_id in its primary key so the schema can be distributed by
-- mall (Citus); `clients`/`client_keys` are looked up by the caller's mchid before the
-- mall is known and would be reference tables there.
--
-- Rows that join a money transaction as data (payment success, at the end) are written by
-- their table's one writer, `<table>_insert_row(jsonb)`, declared next to the table.
--
-- Contents: malls, clients and stores · orders · the ledger · notifications and jobs ·
-- splitting (SPEC 5) · reconciliation (SPEC 6) · coupons and points (SPEC 7) · payment
-- success.


-- == Malls, clients and stores ==========================================================

CREATE TABLE malls (
    mall_id     text PRIMARY KEY,              -- the mall's sp_mchid at WeChat Pay
    sp_appid    text NOT NULL,
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE clients (
    client_id   text PRIMARY KEY,              -- the `mchid` the client signs with
    mall_id     text NOT NULL REFERENCES malls,
    role        text NOT NULL CHECK (role IN ('mall_app', 'tenant', 'finance', 'admin')),
    sub_mchid   text,
    name        text NOT NULL,
    apiv3_key   bytea NOT NULL CHECK (octet_length(apiv3_key) = 32),
    created_at  timestamptz NOT NULL DEFAULT now(),
    CHECK ((role = 'tenant') = (sub_mchid IS NOT NULL))
);

CREATE TABLE client_keys (
    client_id       text NOT NULL REFERENCES clients,
    serial_no       text NOT NULL,
    public_key_pem  text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    revoked_at      timestamptz,
    PRIMARY KEY (client_id, serial_no)
);

-- Replay protection for signed requests: one row per (client, nonce) inside the
-- signature window. UNLOGGED: a crash forgets at most one window of nonces, while every
-- request saves a WAL write; money-moving requests are idempotent by their own keys.
CREATE UNLOGGED TABLE request_nonces (
    client_id   text NOT NULL,
    nonce       text NOT NULL,
    seen_at     timestamptz NOT NULL,
    PRIMARY KEY (client_id, nonce)
);
CREATE INDEX request_nonces_seen_at ON request_nonces (seen_at);

-- A store's contract. A ratio cap above 30% needs a recorded approval (ratio_approvals,
-- under splitting below, which also holds the foreign key of `approval_id`).
CREATE TABLE tenants (
    mall_id           text NOT NULL REFERENCES malls,
    sub_mchid         text NOT NULL CHECK (sub_mchid ~ '^[0-9]{1,32}$'),
    name              text NOT NULL,
    floor             text NOT NULL DEFAULT '',
    category          text NOT NULL DEFAULT '',
    sub_appid         text,
    commission_bps    integer NOT NULL DEFAULT 0 CHECK (commission_bps BETWEEN 0 AND 10000),
    max_ratio_bps     integer NOT NULL DEFAULT 3000,
    fee_rate_bps      integer NOT NULL DEFAULT 60 CHECK (fee_rate_bps BETWEEN 0 AND 1000),
    freeze_days       integer NOT NULL DEFAULT 30 CHECK (freeze_days BETWEEN 1 AND 180),
    guide_reward_bps  integer NOT NULL DEFAULT 0 CHECK (guide_reward_bps BETWEEN 0 AND 10000),
    auto_split        boolean NOT NULL DEFAULT true,
    created_at        timestamptz NOT NULL DEFAULT now(),
    approval_id       bigint,
    PRIMARY KEY (mall_id, sub_mchid),
    CONSTRAINT tenants_max_ratio_bps_check
        CHECK (max_ratio_bps BETWEEN 0 AND 10000 AND (max_ratio_bps <= 3000 OR approval_id IS NOT NULL))
);


-- == Orders =============================================================================

-- WeChat Pay's partner JSAPI allows `|` in out_trade_no: [0-9A-Za-z_\-|*], 6 to 32.
CREATE TABLE orders (
    mall_id          text NOT NULL,
    sub_mchid        text NOT NULL,
    out_trade_no     text NOT NULL CHECK (out_trade_no ~ '^[0-9A-Za-z_*|-]{6,32}$'),
    client_id        text NOT NULL,
    request_hash     text NOT NULL,
    sp_appid         text NOT NULL,
    sub_appid        text,
    description      text NOT NULL,
    total_fen        bigint NOT NULL CHECK (total_fen > 0),
    currency         text NOT NULL CHECK (currency = 'CNY'),
    payer_sp_openid  text,
    payer_sub_openid text,
    notify_url       text NOT NULL,
    attach           text,
    profit_sharing   boolean NOT NULL,
    fee_rate_bps     integer NOT NULL,
    time_expire      timestamptz NOT NULL,
    mall_info        jsonb NOT NULL DEFAULT '{}',
    state            text NOT NULL DEFAULT 'NOTPAY' CHECK (state IN ('NOTPAY', 'SUCCESS', 'CLOSED')),
    prepay_id        text,
    create_response  jsonb,
    transaction_id   text,
    payer_total_fen  bigint,
    bank_type        text,
    created_at       timestamptz NOT NULL,
    success_at       timestamptz,
    closed_at        timestamptz,
    next_check_at    timestamptz NOT NULL,
    PRIMARY KEY (mall_id, sub_mchid, out_trade_no),
    FOREIGN KEY (mall_id, sub_mchid) REFERENCES tenants,
    CHECK ((state = 'SUCCESS') = (transaction_id IS NOT NULL AND success_at IS NOT NULL)),
    CHECK ((state = 'CLOSED') = (closed_at IS NOT NULL))
);
CREATE UNIQUE INDEX orders_transaction_id ON orders (mall_id, transaction_id) WHERE transaction_id IS NOT NULL;
-- Unpaid orders the background check asks the channel about; each process claims only its
-- own mall's.
CREATE INDEX orders_unpaid_due_by_mall ON orders (mall_id, next_check_at) WHERE state = 'NOTPAY';
-- A day's payments, for the trade bill's reconciliation.
CREATE INDEX orders_paid_at ON orders (mall_id, success_at) WHERE state = 'SUCCESS';
-- A shopper's paid orders, for the next-store model's history and the uplift report.
CREATE INDEX orders_paid_by_shopper ON orders (mall_id, (coalesce(payer_sp_openid, payer_sub_openid)), success_at)
    WHERE state = 'SUCCESS';


-- == The ledger =========================================================================

-- Accounts are named (`tenant:1900000109:frozen`); entries refer to them by name without
-- a foreign key, because a foreign key would lock the hot account rows (payer,
-- channel:fees, mall:commission) on every payment. The trigger `entries_balanced` checks
-- that the accounts exist instead, without locking them.
CREATE TABLE accounts (
    mall_id      text NOT NULL REFERENCES malls,
    account      text NOT NULL,
    currency     text NOT NULL CHECK (currency IN ('CNY', 'PTS')),
    bound        text NOT NULL CHECK (bound IN ('non_negative', 'non_positive', 'any')),
    -- Hot accounts keep no running balance: their balance is the sum of their entries.
    hot          boolean NOT NULL,
    balance_fen  bigint NOT NULL DEFAULT 0,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (mall_id, account),
    CHECK (NOT hot OR balance_fen = 0),
    CHECK (bound <> 'non_negative' OR balance_fen >= 0),
    CHECK (bound <> 'non_positive' OR balance_fen <= 0)
);

-- A ledger account made on first use (nothing when it exists already): a points member's
-- accounts are written by the payment that first earns points, before its transfers.
CREATE FUNCTION accounts_insert_row(p_row jsonb) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO accounts (mall_id, account, currency, bound, hot)
    VALUES (p_row->>'mall_id', p_row->>'account', p_row->>'currency', p_row->>'bound', (p_row->>'hot')::boolean)
    ON CONFLICT (mall_id, account) DO NOTHING;
END $$;

CREATE TABLE transfers (
    mall_id      text NOT NULL REFERENCES malls,
    transfer_id  bigint GENERATED ALWAYS AS IDENTITY,
    kind         text NOT NULL,
    ref          text NOT NULL,
    currency     text NOT NULL CHECK (currency IN ('CNY', 'PTS')),
    created_at   timestamptz NOT NULL,
    PRIMARY KEY (mall_id, transfer_id),
    UNIQUE (mall_id, kind, ref)
);
-- Statements, balances at an instant and ledger exports read transfers by time: a
-- transfer's created_at is its instant (SPEC 6).
CREATE INDEX transfers_by_time ON transfers (mall_id, created_at, transfer_id);
-- Payouts need no table of their own: they are transfers of kind `payout`, whose ref
-- starts with the store; this finds a store's by time.
CREATE INDEX transfers_payouts ON transfers (mall_id, ref, created_at) WHERE kind = 'payout';

CREATE TABLE entries (
    mall_id      text NOT NULL,
    transfer_id  bigint NOT NULL,
    account      text NOT NULL,
    amount_fen   bigint NOT NULL CHECK (amount_fen <> 0),
    currency     text NOT NULL,
    PRIMARY KEY (mall_id, transfer_id, account),
    FOREIGN KEY (mall_id, transfer_id) REFERENCES transfers
);
CREATE INDEX entries_account ON entries (mall_id, account, transfer_id);

-- Append-only: nothing in the ledger is ever updated or deleted; mistakes are
-- corrected by new transfers. (Records of decisions elsewhere use the same trigger.)
CREATE FUNCTION ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger table % is append-only', TG_TABLE_NAME
        USING ERRCODE = 'integrity_constraint_violation';
END $$;
CREATE TRIGGER transfers_append_only BEFORE UPDATE OR DELETE ON transfers
    FOR EACH ROW EXECUTE FUNCTION ledger_append_only();
CREATE TRIGGER entries_append_only BEFORE UPDATE OR DELETE ON entries
    FOR EACH ROW EXECUTE FUNCTION ledger_append_only();
CREATE TRIGGER transfers_no_truncate BEFORE TRUNCATE ON transfers
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_append_only();
CREATE TRIGGER entries_no_truncate BEFORE TRUNCATE ON entries
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_append_only();

-- Every statement that adds entries leaves each touched transfer balanced in its own
-- currency, on existing accounts of that currency.
CREATE FUNCTION ledger_check_entries() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    bad record;
BEGIN
    SELECT n.mall_id, n.transfer_id INTO bad
      FROM new_entries n
      LEFT JOIN accounts a ON a.mall_id = n.mall_id AND a.account = n.account
      JOIN transfers t ON t.mall_id = n.mall_id AND t.transfer_id = n.transfer_id
     WHERE a.account IS NULL OR a.currency <> n.currency OR t.currency <> n.currency
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'transfer % of mall % posts to an unknown account or mixes currencies',
            bad.transfer_id, bad.mall_id USING ERRCODE = 'check_violation';
    END IF;
    SELECT e.mall_id, e.transfer_id INTO bad
      FROM entries e
     WHERE (e.mall_id, e.transfer_id) IN (SELECT DISTINCT mall_id, transfer_id FROM new_entries)
     GROUP BY e.mall_id, e.transfer_id
    HAVING sum(e.amount_fen) <> 0 OR count(*) < 2
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'transfer % of mall % does not balance', bad.transfer_id, bad.mall_id
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER entries_balanced AFTER INSERT ON entries
    REFERENCING NEW TABLE AS new_entries
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_check_entries();

-- Post one balanced transfer in one call: the transfer row, its entries, and the running
-- balances of non-hot accounts (updated in account-name order so that two transfers
-- touching the same accounts can never deadlock). Returns the transfer id, or NULL when
-- (kind, ref) was already posted. A balance leaving its bound fails the accounts' CHECK
-- and aborts the whole transaction.
CREATE FUNCTION ledger_post_transfer(
    p_mall_id text, p_kind text, p_ref text, p_currency text, p_created_at timestamptz,
    p_accounts text[], p_amounts bigint[]
) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v_transfer_id bigint;
BEGIN
    INSERT INTO transfers (mall_id, kind, ref, currency, created_at)
    VALUES (p_mall_id, p_kind, p_ref, p_currency, p_created_at)
    ON CONFLICT (mall_id, kind, ref) DO NOTHING
    RETURNING transfer_id INTO v_transfer_id;
    IF v_transfer_id IS NULL THEN
        RETURN NULL;
    END IF;
    INSERT INTO entries (mall_id, transfer_id, account, amount_fen, currency)
    SELECT p_mall_id, v_transfer_id, a, amt, p_currency
      FROM unnest(p_accounts, p_amounts) AS u(a, amt);
    UPDATE accounts AS acc
       SET balance_fen = acc.balance_fen + d.amt
      FROM (SELECT a, amt FROM unnest(p_accounts, p_amounts) AS u(a, amt) ORDER BY a) AS d
     WHERE acc.mall_id = p_mall_id AND acc.account = d.a AND NOT acc.hot;
    RETURN v_transfer_id;
END $$;

-- A balanced transfer as data: what ledger_post_transfer takes, less the mall and time.
CREATE TYPE ledger_transfer AS (kind text, ref text, currency text, accounts text[], amounts bigint[]);


-- == Notifications and jobs =============================================================

-- Notifications to clients (SPEC 2.2), written in the same transaction as the state
-- change they announce and delivered at least once by the outbox workers.
CREATE TABLE outbox (
    mall_id          text NOT NULL,
    event_id         bigint GENERATED ALWAYS AS IDENTITY,
    notification_id  uuid NOT NULL,
    client_id        text NOT NULL,
    notify_url       text NOT NULL,
    event_type       text NOT NULL,
    ref              text NOT NULL,
    summary          text NOT NULL,
    original_type    text NOT NULL,
    resource         jsonb NOT NULL,
    state            text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'dead')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL,
    last_error       text,
    created_at       timestamptz NOT NULL,
    delivered_at     timestamptz,
    PRIMARY KEY (mall_id, event_id),
    UNIQUE (mall_id, event_type, ref)
);
-- Background claims read only their own mall's due rows (each process serves one mall),
-- here as for unpaid orders, jobs and points syncs.
CREATE INDEX outbox_due_by_mall ON outbox (mall_id, next_attempt_at) WHERE state = 'pending';

CREATE FUNCTION outbox_insert_row(p_row jsonb) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO outbox (mall_id, notification_id, client_id, notify_url, event_type, ref,
                        summary, original_type, resource, next_attempt_at, created_at)
    VALUES (p_row->>'mall_id', (p_row->>'notification_id')::uuid, p_row->>'client_id', p_row->>'notify_url',
            p_row->>'event_type', p_row->>'ref', p_row->>'summary', p_row->>'original_type', p_row->'resource',
            (p_row->>'next_attempt_at')::timestamptz, (p_row->>'created_at')::timestamptz)
    ON CONFLICT (mall_id, event_type, ref) DO NOTHING;
END $$;

-- The gateway's own scheduler: retries and deadlines that must survive restarts and run
-- once across several gateway processes (claimed with FOR UPDATE SKIP LOCKED + a lease).
-- A job that gave up is `dead` until an operator retries it (back to pending) or resolves
-- it (settled by hand, never run again).
CREATE TABLE jobs (
    mall_id     text NOT NULL,
    job_id      bigint GENERATED ALWAYS AS IDENTITY,
    kind        text NOT NULL,
    ref         text NOT NULL,
    due_at      timestamptz NOT NULL,
    attempts    integer NOT NULL DEFAULT 0,
    state       text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'done', 'dead', 'resolved')),
    last_error  text,
    created_at  timestamptz NOT NULL,
    done_at     timestamptz,
    PRIMARY KEY (mall_id, job_id),
    UNIQUE (mall_id, kind, ref)
);
CREATE INDEX jobs_due_by_mall ON jobs (mall_id, due_at) WHERE state = 'pending';
CREATE INDEX jobs_dead ON jobs (mall_id, job_id) WHERE state = 'dead';

CREATE FUNCTION jobs_insert_row(p_row jsonb) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO jobs (mall_id, kind, ref, due_at, created_at)
    VALUES (p_row->>'mall_id', p_row->>'kind', p_row->>'ref', (p_row->>'due_at')::timestamptz,
            (p_row->>'created_at')::timestamptz)
    ON CONFLICT (mall_id, kind, ref) DO NOTHING;
END $$;

-- Operators' actions on dead jobs. Every action is a record: who, when, why.
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


-- == Splitting (SPEC 5) =================================================================
-- High-ratio approvals, guides, receivers, each paid order's funds, split orders, split
-- returns and refunds.

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
-- The approval a store's high cap rests on (the two tables refer to each other).
ALTER TABLE tenants ADD FOREIGN KEY (mall_id, approval_id) REFERENCES ratio_approvals;

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
-- Opened by the payment's own transaction, through the writer below.
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
    -- The gateway's own splits keep their room inside the cap (SPEC 5, splitting.funds):
    -- what is set aside at payment for the guide's reward and the automatic commission,
    -- until the split is asked for or given up with a recorded reason. The rule lives once,
    -- in Python (`OrderFunds.paid`); the payment's row carries both amounts.
    reward_set_aside_fen      bigint NOT NULL DEFAULT 0 CHECK (reward_set_aside_fen >= 0),
    commission_set_aside_fen  bigint NOT NULL DEFAULT 0 CHECK (commission_set_aside_fen >= 0),
    PRIMARY KEY (mall_id, sub_mchid, out_trade_no),
    CHECK (refunded_fen BETWEEN 0 AND paid_fen),
    CHECK (fee_refunded_fen BETWEEN 0 AND fee_fen),
    CHECK (reserved_fen <= frozen_fen AND frozen_fen <= paid_fen - fee_fen)
);
CREATE UNIQUE INDEX order_funds_transaction ON order_funds (mall_id, transaction_id);

-- An order's funds are splitting.funds.OrderFunds whole: the row names every column, so
-- a column added later is written as soon as splitting/repo.py puts it in the row.
CREATE FUNCTION order_funds_insert_row(p_row jsonb) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO order_funds SELECT * FROM jsonb_populate_record(NULL::order_funds, p_row);
END $$;

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


-- == Reconciliation (SPEC 6) ============================================================
-- One report per mall and China-time day against the channel's bills, and its
-- discrepancies. Lines that match are counted, not stored, so a busy day's report stays
-- small.

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


-- == Coupons and points (SPEC 7) ========================================================

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
-- A coupon that expired unused is marked `expired` and gives its amount back to its
-- campaign's budget: the campaign's committed amount and count go down by it, in one
-- statement (coupons/repo.py EXPIRE_COUPONS).
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
    state                 text NOT NULL DEFAULT 'issued' CHECK (state IN ('issued', 'reserved', 'used', 'expired')),
    order_out_trade_no    text,
    PRIMARY KEY (mall_id, coupon_id),
    FOREIGN KEY (mall_id, campaign_id) REFERENCES coupon_campaigns,
    CHECK ((state IN ('issued', 'expired')) = (order_out_trade_no IS NULL))
);
CREATE INDEX coupons_of_shopper ON coupons (mall_id, openid, issued_at);
CREATE INDEX coupons_of_trigger ON coupons (mall_id, trigger_sub_mchid, trigger_out_trade_no);
CREATE UNIQUE INDEX coupons_of_order ON coupons (mall_id, sub_mchid, order_out_trade_no)
    WHERE order_out_trade_no IS NOT NULL;
CREATE INDEX coupons_to_expire ON coupons (mall_id, valid_until) WHERE state = 'issued';

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

-- Issuing coupons survives the process that took the payment. One row per paid order
-- whose coupons are still to be decided, written by the payment's own transaction (one of
-- its rows, through the writer below). The issuing transaction deletes it; if the process
-- dies first, or issuing fails or runs out of time, a worker of any process claims it once
-- `due_at` has passed (FOR UPDATE SKIP LOCKED, the claim pushing `due_at` forward as a
-- lease) and issues then. Issuing stays exactly once per payment however many try: its
-- decision row (coupon_decisions' primary key) is written first in the same transaction
-- as the coupons and budget.
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
    -- The part of a mall-funded discount that refunds took back from the store's receivable.
    subsidy_reversed_fen  bigint NOT NULL DEFAULT 0 CHECK (subsidy_reversed_fen >= 0),
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
CREATE INDEX points_syncs_due_by_mall ON points_syncs (mall_id, next_attempt_at) WHERE state = 'pending';

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


-- == Payment success ====================================================================
-- Payment success grows by data: one function applies the order's state change and then
-- posts whatever the gateway's Python code put into the payment's effects
-- (gateway/services/payment_effects.py): balanced transfers through the ledger's own
-- posting path, rows through each table's writer. Coupons, points and receipts join
-- payment success by adding transfers and rows; none of them re-declares this function.
--
-- The payment-success transaction in one round trip: mark the order paid (only from
-- NOTPAY, only for the amount it was created with); write the rows for `accounts` first
-- (a points member's accounts, made on first use), since the transfers post to them; then
-- post every transfer of `p_transfers` (each balanced, through ledger_post_transfer) and
-- write every other row of `p_rows` through the writer of the table named at the same
-- place in `p_row_tables`. Returns one of 'applied', 'already_applied', 'amount_mismatch',
-- 'order_closed', 'not_found'; nothing is written unless it returns 'applied'.
--
-- The writers of the tables known here are called statically (PL/pgSQL plans each once
-- per session); a table added later is written through the dynamic call, which PostgreSQL
-- parses and plans every time, until a migration lists it here.
CREATE FUNCTION mallpay_apply_payment(
    p_mall_id text, p_sub_mchid text, p_out_trade_no text, p_total_fen bigint,
    p_transaction_id text, p_payer_total_fen bigint, p_bank_type text, p_success_at timestamptz,
    p_now timestamptz, p_transfers ledger_transfer[], p_row_tables text[], p_rows jsonb[]
) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    v_order record;
    v_transfer ledger_transfer;
    v_rows integer := coalesce(array_length(p_rows, 1), 0);
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
    FOR i IN 1 .. v_rows LOOP  -- accounts first: the transfers post to them
        IF p_row_tables[i] = 'accounts' THEN
            PERFORM accounts_insert_row(p_rows[i]);
        END IF;
    END LOOP;
    FOREACH v_transfer IN ARRAY p_transfers LOOP
        IF ledger_post_transfer(p_mall_id, v_transfer.kind, v_transfer.ref, v_transfer.currency, p_now,
                                v_transfer.accounts, v_transfer.amounts) IS NULL THEN
            RAISE EXCEPTION '% transfer % posted twice', v_transfer.kind, v_transfer.ref
                USING ERRCODE = 'unique_violation';
        END IF;
    END LOOP;
    FOR i IN 1 .. v_rows LOOP
        CASE p_row_tables[i]
            WHEN 'accounts' THEN NULL;
            WHEN 'outbox' THEN PERFORM outbox_insert_row(p_rows[i]);
            WHEN 'order_funds' THEN PERFORM order_funds_insert_row(p_rows[i]);
            WHEN 'jobs' THEN PERFORM jobs_insert_row(p_rows[i]);
            WHEN 'points_orders' THEN PERFORM points_orders_insert_row(p_rows[i]);
            WHEN 'points_syncs' THEN PERFORM points_syncs_insert_row(p_rows[i]);
            WHEN 'coupon_redemptions' THEN PERFORM coupon_redemptions_insert_row(p_rows[i]);
            -- 0013 (coupon issuing's intents); PL/pgSQL resolves a call when it first runs it
            WHEN 'coupon_issue_intents' THEN PERFORM coupon_issue_intents_insert_row(p_rows[i]);
            ELSE EXECUTE format('SELECT %I($1)', p_row_tables[i] || '_insert_row') USING p_rows[i];
        END CASE;
    END LOOP;
    RETURN 'applied';
END $$;
