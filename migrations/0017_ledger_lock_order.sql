-- A transfer locks the balances it changes in account order. The UPDATE ... FROM below
-- takes its rows in whatever order its join reads the accounts table (the order of the
-- subquery is not kept by a hash join, and an updated row moves), so two payments of one
-- member at two stores could each hold one shared balance and wait for the other's:
-- PostgreSQL then aborts one of them (seen under load as a 503 on the channel's
-- notification). SELECT ... ORDER BY ... FOR UPDATE locks the rows as the sort returns
-- them, so every transaction takes shared balances in the same order.
CREATE OR REPLACE FUNCTION ledger_post_transfer(
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
    PERFORM FROM accounts
      WHERE mall_id = p_mall_id AND account = ANY (p_accounts) AND NOT hot
      ORDER BY account
        FOR UPDATE;
    INSERT INTO entries (mall_id, transfer_id, account, amount_fen, currency)
    SELECT p_mall_id, v_transfer_id, a, amt, p_currency
      FROM unnest(p_accounts, p_amounts) AS u(a, amt);
    UPDATE accounts AS acc
       SET balance_fen = acc.balance_fen + d.amt
      FROM unnest(p_accounts, p_amounts) AS d(a, amt)
     WHERE acc.mall_id = p_mall_id AND acc.account = d.a AND NOT acc.hot;
    RETURN v_transfer_id;
END $$;
