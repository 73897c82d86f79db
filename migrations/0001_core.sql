-- Mall Pay core schema: malls, API clients, stores, orders, the ledger and the outbox.
-- Every table carries mall_id in its primary key so the schema can be distributed by
-- mall (Citus); `clients`/`client_keys` are looked up by the caller's mchid before the
-- mall is known and would be reference tables there.

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

CREATE TABLE tenants (
    mall_id           text NOT NULL REFERENCES malls,
    sub_mchid         text NOT NULL CHECK (sub_mchid ~ '^[0-9]{1,32}$'),
    name              text NOT NULL,
    floor             text NOT NULL DEFAULT '',
    category          text NOT NULL DEFAULT '',
    sub_appid         text,
    commission_bps    integer NOT NULL DEFAULT 0 CHECK (commission_bps BETWEEN 0 AND 10000),
    max_ratio_bps     integer NOT NULL DEFAULT 3000 CHECK (max_ratio_bps BETWEEN 0 AND 10000),
    fee_rate_bps      integer NOT NULL DEFAULT 60 CHECK (fee_rate_bps BETWEEN 0 AND 1000),
    freeze_days       integer NOT NULL DEFAULT 30 CHECK (freeze_days BETWEEN 1 AND 180),
    guide_reward_bps  integer NOT NULL DEFAULT 0 CHECK (guide_reward_bps BETWEEN 0 AND 10000),
    auto_split        boolean NOT NULL DEFAULT true,
    created_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (mall_id, sub_mchid)
);

CREATE TABLE orders (
    mall_id          text NOT NULL,
    sub_mchid        text NOT NULL,
    out_trade_no     text NOT NULL CHECK (out_trade_no ~ '^[0-9A-Za-z_*-]{6,32}$'),
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
CREATE INDEX orders_unpaid_due ON orders (next_check_at) WHERE state = 'NOTPAY';

-- The ledger. Accounts are named (`tenant:1900000109:frozen`); entries refer to them by
-- name without a foreign key, because a foreign key would lock the hot account rows
-- (payer, channel:fees, mall:commission) on every payment. The trigger below checks
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
-- corrected by new transfers.
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
-- (kind, ref) was already posted. A balance leaving its bound fails the CHECK above and
-- aborts the whole transaction.
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
CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE state = 'pending';

-- The payment-success transaction in one round trip: mark the order paid (only from
-- NOTPAY, only for the amount it was created with), post the payment transfer and
-- queue the client's TRANSACTION.SUCCESS notification. Returns one of
-- 'applied', 'already_applied', 'amount_mismatch', 'order_closed', 'not_found'.
CREATE FUNCTION mallpay_apply_payment(
    p_mall_id text, p_sub_mchid text, p_out_trade_no text, p_total_fen bigint,
    p_transaction_id text, p_payer_total_fen bigint, p_bank_type text, p_success_at timestamptz,
    p_now timestamptz, p_accounts text[], p_amounts bigint[],
    p_notification_id uuid, p_resource jsonb
) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    v_order record;
BEGIN
    UPDATE orders
       SET state = 'SUCCESS', transaction_id = p_transaction_id, payer_total_fen = p_payer_total_fen,
           bank_type = p_bank_type, success_at = p_success_at
     WHERE mall_id = p_mall_id AND sub_mchid = p_sub_mchid AND out_trade_no = p_out_trade_no
       AND state = 'NOTPAY' AND total_fen = p_total_fen
    RETURNING client_id, notify_url INTO v_order;
    IF NOT FOUND THEN
        SELECT state, total_fen, transaction_id INTO v_order FROM orders
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
    IF ledger_post_transfer(p_mall_id, 'payment', p_sub_mchid || '/' || p_out_trade_no, 'CNY',
                            p_now, p_accounts, p_amounts) IS NULL THEN
        RAISE EXCEPTION 'payment of %/% posted twice', p_sub_mchid, p_out_trade_no
            USING ERRCODE = 'unique_violation';
    END IF;
    INSERT INTO outbox (mall_id, notification_id, client_id, notify_url, event_type, ref,
                        summary, original_type, resource, next_attempt_at, created_at)
    VALUES (p_mall_id, p_notification_id, v_order.client_id, v_order.notify_url,
            'TRANSACTION.SUCCESS', p_sub_mchid || '/' || p_out_trade_no,
            '支付成功', 'transaction', p_resource, p_now, p_now);
    RETURN 'applied';
END $$;
