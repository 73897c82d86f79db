"""Coupons' storage adapter: campaigns, their counters, coupons, decisions, reports."""

from __future__ import annotations

from datetime import date, datetime

from coupons.campaigns import Campaign, CampaignSpec, CampaignState, DiscountKind, Funder, Trigger, min_spend_fen

INSERT_CAMPAIGN = """
INSERT INTO coupon_campaigns (mall_id, name, sub_mchid, funder, discount_kind, discount_fen, threshold_fen,
                              min_spend_fen, budget_fen, budget_count, daily_count_max, per_shopper_max,
                              starts_at, ends_at, coupon_valid_s, trigger_stores, trigger_floors,
                              trigger_categories, trigger_min_spend_fen, created_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $20)
RETURNING *
"""

CAMPAIGN = "SELECT * FROM coupon_campaigns WHERE mall_id = $1 AND campaign_id = $2"

CAMPAIGNS = """
SELECT *, count(*) OVER () AS total_count FROM coupon_campaigns
 WHERE mall_id = $1 AND ($2::text IS NULL OR sub_mchid = $2)
 ORDER BY campaign_id LIMIT $3 OFFSET $4
"""

# The change repeats the budget checks against the counters as they are now, so a
# budget can never be cut below what concurrent issuance committed meanwhile.
CHANGE_CAMPAIGN = """
UPDATE coupon_campaigns
   SET budget_fen = $3, budget_count = $4, daily_count_max = $5, per_shopper_max = $6, ends_at = $7,
       state = $8, updated_at = $9
 WHERE mall_id = $1 AND campaign_id = $2 AND state <> 'ended'
   AND committed_fen <= $3 AND committed_count <= $4
RETURNING *
"""

# A campaign's budget still has room for one more coupon.
BUDGET_HAS_ROOM = "committed_count < budget_count AND committed_fen + discount_fen <= budget_fen"

ISSUING_CAMPAIGNS = f"""
SELECT * FROM coupon_campaigns
 WHERE mall_id = $1 AND state = 'active' AND starts_at <= $2 AND $2 < ends_at
   AND {BUDGET_HAS_ROOM}
"""

# What a process keeps to tell, without a query, that a payment cannot be rewarded.
CAMPAIGNS_THAT_MAY_ISSUE = f"""
SELECT * FROM coupon_campaigns
 WHERE mall_id = $1 AND state = 'active' AND $2 < ends_at
   AND {BUDGET_HAS_ROOM}
"""

# Budget: one conditional UPDATE; succeeds only while the coupon still fits.
COMMIT_BUDGET = """
UPDATE coupon_campaigns
   SET committed_fen = committed_fen + discount_fen, committed_count = committed_count + 1
 WHERE mall_id = $1 AND campaign_id = $2 AND state = 'active' AND starts_at <= $3 AND $3 < ends_at
   AND committed_fen + discount_fen <= budget_fen AND committed_count + 1 <= budget_count
RETURNING *
"""

COUNT_DAY = """
INSERT INTO coupon_campaign_days AS d (mall_id, campaign_id, day_on, issued_count)
VALUES ($1, $2, $3, 1)
ON CONFLICT (mall_id, campaign_id, day_on) DO UPDATE SET issued_count = d.issued_count + 1
 WHERE d.issued_count < $4
RETURNING issued_count
"""

COUNT_SHOPPER = """
INSERT INTO coupon_campaign_shoppers AS s (mall_id, campaign_id, openid, issued_count)
VALUES ($1, $2, $3, 1)
ON CONFLICT (mall_id, campaign_id, openid) DO UPDATE SET issued_count = s.issued_count + 1
 WHERE s.issued_count < $4
RETURNING issued_count
"""

INSERT_COUPON = """
INSERT INTO coupons (mall_id, coupon_id, campaign_id, openid, sub_mchid, funder, discount_fen, min_spend_fen,
                     trigger_sub_mchid, trigger_out_trade_no, issued_at, valid_until)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
RETURNING *
"""

# Written first in the issuing transaction: a second attempt for the same payment
# (another process, a retried notification) finds the row and issues nothing.
INSERT_DECISION = """
INSERT INTO coupon_decisions (mall_id, sub_mchid, out_trade_no, openid, paid_at, decided_at, holdout_bps,
                              held_out, campaign_ids)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
ON CONFLICT DO NOTHING
RETURNING held_out
"""

COUPONS_OF_SHOPPER = """
SELECT c.*, k.name AS campaign_name, count(*) OVER () AS total_count
  FROM coupons c JOIN coupon_campaigns k USING (mall_id, campaign_id)
 WHERE c.mall_id = $1 AND c.openid = $2
 ORDER BY c.issued_at DESC, c.coupon_id LIMIT $3 OFFSET $4
"""

COUPON = "SELECT * FROM coupons WHERE mall_id = $1 AND coupon_id = $2"

# Redemption: every rule in one conditional UPDATE, so 100 concurrent orders with the
# same coupon reserve it exactly once.
RESERVE_COUPON = """
UPDATE coupons c SET state = 'reserved', order_out_trade_no = $5
  FROM coupon_campaigns k
 WHERE c.mall_id = $1 AND c.coupon_id = $2 AND c.openid = $3 AND c.sub_mchid = $4
   AND c.state = 'issued' AND c.valid_until > $6 AND c.min_spend_fen <= $7
   AND k.mall_id = c.mall_id AND k.campaign_id = c.campaign_id AND k.state <> 'ended'
RETURNING c.*
"""

CAMPAIGN_STATE = "SELECT state FROM coupon_campaigns WHERE mall_id = $1 AND campaign_id = $2"

COUPON_OF_ORDER = "SELECT * FROM coupons WHERE mall_id = $1 AND sub_mchid = $2 AND order_out_trade_no = $3"

# The written refund policy's one effect: a fully refunded order's coupon, still valid,
# is the shopper's again.
RETURN_COUPON = """
UPDATE coupons SET state = 'issued', order_out_trade_no = NULL
 WHERE mall_id = $1 AND sub_mchid = $2 AND order_out_trade_no = $3 AND state = 'used' AND valid_until > $4
RETURNING coupon_id
"""

# Coupons expired unused (a bounded batch, oldest first) become `expired` and give their
# amount and count back to their campaigns' budgets, in one statement. A coupon an order
# holds is `reserved`, never taken here; should that order close after the coupon's end,
# the coupon is `issued` again and a later pass takes it.
EXPIRE_COUPONS = """
WITH expired AS (
    UPDATE coupons c SET state = 'expired'
     WHERE c.mall_id = $1 AND c.coupon_id IN (
           SELECT coupon_id FROM coupons
            WHERE mall_id = $1 AND state = 'issued' AND valid_until <= $2
            ORDER BY valid_until LIMIT $3
            FOR UPDATE SKIP LOCKED)
       AND c.state = 'issued'
    RETURNING c.campaign_id, c.discount_fen
), by_campaign AS (
    SELECT campaign_id, count(*)::integer AS coupons, sum(discount_fen)::bigint AS discount_fen
      FROM expired GROUP BY campaign_id
)
UPDATE coupon_campaigns k
   SET committed_fen = k.committed_fen - b.discount_fen, committed_count = k.committed_count - b.coupons
  FROM by_campaign b
 WHERE k.mall_id = $1 AND k.campaign_id = b.campaign_id
RETURNING k.campaign_id, b.coupons, b.discount_fen
"""

ISSUED_FOR_PAYMENT = """
SELECT c.coupon_id, c.sub_mchid, c.discount_fen, c.min_spend_fen, c.valid_until, k.name AS campaign_name,
       c.campaign_id
  FROM coupons c JOIN coupon_campaigns k USING (mall_id, campaign_id)
 WHERE c.mall_id = $1 AND c.trigger_sub_mchid = $2 AND c.trigger_out_trade_no = $3
 ORDER BY c.coupon_id
"""


STORES = "SELECT sub_mchid, name, floor, category FROM tenants WHERE mall_id = $1 ORDER BY sub_mchid"

# Newest first, bounded; the shopper is whichever openid the order was paid with.
PAYMENTS_SINCE = """
SELECT coalesce(payer_sp_openid, payer_sub_openid) AS openid, sub_mchid, success_at, total_fen
  FROM orders
 WHERE mall_id = $1 AND state = 'SUCCESS' AND success_at >= $2
 ORDER BY success_at DESC LIMIT $3
"""

# The paid order issuing is for, with its store's floor and category; the order's issuing
# intent is deleted by the same statement (its hold_until comes back: NULL when there was
# none, e.g. already done), so the rest of the issuing transaction holds its row lock.
PAYMENT_TO_ISSUE_FOR = """
WITH intent AS (
    DELETE FROM coupon_issue_intents
     WHERE mall_id = $1 AND sub_mchid = $2 AND out_trade_no = $3
    RETURNING hold_until
)
SELECT coalesce(o.payer_sp_openid, o.payer_sub_openid) AS openid, o.total_fen, o.success_at, o.state,
       t.floor, t.category, (SELECT hold_until FROM intent) AS hold_until
  FROM orders o JOIN tenants t USING (mall_id, sub_mchid)
 WHERE o.mall_id = $1 AND o.sub_mchid = $2 AND o.out_trade_no = $3
"""

# Intents whose issuing did not finish where the payment was taken, for one worker: the
# claim pushes due_at forward (a lease), so other workers and processes leave them alone
# while this one issues; a worker that dies lets them come due again.
CLAIM_DUE_INTENTS = """
UPDATE coupon_issue_intents i SET due_at = $3, attempts = i.attempts + 1
  FROM (SELECT mall_id, sub_mchid, out_trade_no FROM coupon_issue_intents
         WHERE mall_id = $1 AND state = 'pending' AND due_at <= $2
         ORDER BY due_at LIMIT $4
         FOR UPDATE SKIP LOCKED) due
 WHERE i.mall_id = due.mall_id AND i.sub_mchid = due.sub_mchid AND i.out_trade_no = due.out_trade_no
RETURNING i.sub_mchid, i.out_trade_no, i.attempts
"""

INTENT_FAILED = """
UPDATE coupon_issue_intents SET last_error = $4, due_at = $5, state = CASE WHEN $6 THEN 'dead' ELSE 'pending' END
 WHERE mall_id = $1 AND sub_mchid = $2 AND out_trade_no = $3 AND state = 'pending'
"""

INTENT_COUNTS = "SELECT state, count(*) AS n FROM coupon_issue_intents WHERE mall_id = $1 GROUP BY state"

SHOPPER_PAYMENTS = """
SELECT coalesce(payer_sp_openid, payer_sub_openid) AS openid, sub_mchid, success_at, total_fen
  FROM orders
 WHERE mall_id = $1 AND coalesce(payer_sp_openid, payer_sub_openid) = $2 AND state = 'SUCCESS'
   AND success_at <= $3
 ORDER BY success_at DESC LIMIT $4
"""


# The payment's TRANSACTION.SUCCESS waits (next_attempt_at = the hold's deadline) for
# issuing; issuing puts its coupons into the notification and releases it (due at $6:
# now, or a lease when this process delivers it itself), but only while no worker has
# claimed it (a claim moves next_attempt_at off the deadline). Returns the row as the
# outbox's claim does (gateway/repo/outbox.py CLAIM_DUE).
ATTACH_TO_NOTIFICATION = """
UPDATE outbox
   SET resource = CASE WHEN jsonb_array_length($4::jsonb) = 0 THEN resource
                       ELSE jsonb_set(resource, '{mall_info,coupons}', $4::jsonb) END,
       next_attempt_at = $6
 WHERE mall_id = $1 AND event_type = 'TRANSACTION.SUCCESS' AND ref = $2 || '/' || $3
   AND state = 'pending' AND attempts = 0 AND next_attempt_at = $5
RETURNING mall_id, event_id, notification_id, client_id, notify_url, event_type, summary, original_type, resource,
          attempts, created_at
"""


ATTRIBUTION = """
SELECT (SELECT count(*) FROM coupons WHERE mall_id = $1 AND campaign_id = $2) AS issued,
       count(r.coupon_id) AS redeemed,
       coalesce(sum(r.discount_fen), 0)::bigint AS discount_fen,
       coalesce(sum(r.paid_fen), 0)::bigint AS sales_fen
  FROM coupon_redemptions r WHERE r.mall_id = $1 AND r.campaign_id = $2
"""

FLOWS = """
SELECT trigger_sub_mchid, sub_mchid, count(*) AS redeemed, sum(paid_fen)::bigint AS sales_fen
  FROM coupon_redemptions WHERE mall_id = $1 AND ($2::bigint IS NULL OR campaign_id = $2)
 GROUP BY trigger_sub_mchid, sub_mchid ORDER BY trigger_sub_mchid, sub_mchid
"""

ALL_CAMPAIGN_IDS = "SELECT campaign_id FROM coupon_campaigns WHERE mall_id = $1 ORDER BY campaign_id"

# Uplift: per decision, what the shopper paid at the target stores within the window
# after its triggering payment (never at the triggering store, so that payment itself
# is never counted) (target stores: the campaign's store, or with $2 NULL every store the decision
# offered or would have offered); then per arm the counts and sums the estimate needs.
UPLIFT_ARMS = """
SELECT d.held_out, count(*) AS decisions, count(*) FILTER (WHERE v.sales_fen > 0) AS visits,
       coalesce(sum(v.sales_fen), 0)::bigint AS sales_fen,
       coalesce(sum(v.sales_fen::numeric * v.sales_fen), 0) AS sales_sq_fen2
  FROM coupon_decisions d
  CROSS JOIN LATERAL (
      SELECT coalesce(sum(o.total_fen), 0)::bigint AS sales_fen FROM orders o
       WHERE o.mall_id = d.mall_id AND o.state = 'SUCCESS'
         AND coalesce(o.payer_sp_openid, o.payer_sub_openid) = d.openid
         AND o.success_at >= d.paid_at AND o.success_at <= d.paid_at + make_interval(days => $3)
         AND o.sub_mchid IN (SELECT k.sub_mchid FROM coupon_campaigns k
                              WHERE k.mall_id = d.mall_id AND k.campaign_id = ANY(d.campaign_ids)
                                AND ($2::bigint IS NULL OR k.campaign_id = $2))) v
 WHERE d.mall_id = $1 AND ($2::bigint IS NULL OR $2 = ANY(d.campaign_ids))
 GROUP BY d.held_out
"""

DISCOUNT_OF_TREATED = """
SELECT coalesce(sum(discount_fen), 0)::bigint FROM coupon_redemptions
 WHERE mall_id = $1 AND ($2::bigint IS NULL OR campaign_id = $2)
"""


def campaign_of(row) -> Campaign:
    kind = DiscountKind(row["discount_kind"])
    spec = CampaignSpec(
        name=row["name"], sub_mchid=row["sub_mchid"], funder=Funder(row["funder"]), discount_kind=kind,
        discount_fen=row["discount_fen"], threshold_fen=row["threshold_fen"], budget_fen=row["budget_fen"],
        budget_count=row["budget_count"], daily_count_max=row["daily_count_max"],
        per_shopper_max=row["per_shopper_max"], starts_at=row["starts_at"], ends_at=row["ends_at"],
        coupon_valid_s=row["coupon_valid_s"],
        trigger=Trigger(stores=tuple(row["trigger_stores"]), floors=tuple(row["trigger_floors"]),
                        categories=tuple(row["trigger_categories"]), min_spend_fen=row["trigger_min_spend_fen"]),
    )
    return Campaign(row["campaign_id"], spec, CampaignState(row["state"]))


async def _page(conn, listing: str, *args) -> tuple[list, int]:
    """One page of a listing whose rows carry the count of every match (`total_count`)."""
    rows = await conn.fetch(listing, *args)
    return rows, (rows[0]["total_count"] if rows else 0)


async def insert_campaign(conn, mall_id: str, spec: CampaignSpec, now: datetime):
    t = spec.trigger
    return await conn.fetchrow(
        INSERT_CAMPAIGN, mall_id, spec.name, spec.sub_mchid, spec.funder.value, spec.discount_kind.value,
        spec.discount_fen, spec.threshold_fen, min_spend_fen(spec.discount_kind, spec.discount_fen, spec.threshold_fen),
        spec.budget_fen, spec.budget_count, spec.daily_count_max, spec.per_shopper_max, spec.starts_at,
        spec.ends_at, spec.coupon_valid_s, list(t.stores), list(t.floors), list(t.categories), t.min_spend_fen, now)


async def campaign(conn, mall_id: str, campaign_id: int):
    return await conn.fetchrow(CAMPAIGN, mall_id, campaign_id)


async def campaigns(conn, mall_id: str, sub_mchid: str | None, limit: int, offset: int):
    return await _page(conn, CAMPAIGNS, mall_id, sub_mchid, limit, offset)


async def change_campaign(conn, mall_id: str, campaign_id: int, spec: CampaignSpec, state: CampaignState,
                          now: datetime):
    return await conn.fetchrow(CHANGE_CAMPAIGN, mall_id, campaign_id, spec.budget_fen, spec.budget_count,
                               spec.daily_count_max, spec.per_shopper_max, spec.ends_at, state.value, now)


async def issuing_campaigns(conn, mall_id: str, at: datetime):
    return await conn.fetch(ISSUING_CAMPAIGNS, mall_id, at)


async def campaigns_that_may_issue(conn, mall_id: str, at: datetime):
    return await conn.fetch(CAMPAIGNS_THAT_MAY_ISSUE, mall_id, at)


async def commit_budget(conn, mall_id: str, campaign_id: int, at: datetime):
    return await conn.fetchrow(COMMIT_BUDGET, mall_id, campaign_id, at)


async def count_day(conn, mall_id: str, campaign_id: int, day_on: date, cap: int) -> bool:
    return await conn.fetchval(COUNT_DAY, mall_id, campaign_id, day_on, cap) is not None


async def count_shopper(conn, mall_id: str, campaign_id: int, openid: str, cap: int) -> bool:
    return await conn.fetchval(COUNT_SHOPPER, mall_id, campaign_id, openid, cap) is not None


async def insert_coupon(conn, *, mall_id, coupon_id, campaign_row, openid, trigger_key, issued_at, valid_until):
    return await conn.fetchrow(
        INSERT_COUPON, mall_id, coupon_id, campaign_row["campaign_id"], openid, campaign_row["sub_mchid"],
        campaign_row["funder"], campaign_row["discount_fen"], campaign_row["min_spend_fen"], *trigger_key,
        issued_at, valid_until)


async def insert_decision(conn, *, mall_id, trigger_key, openid, paid_at, decided_at, holdout_bps, held_out,
                          campaign_ids) -> bool:
    return await conn.fetchval(INSERT_DECISION, mall_id, *trigger_key, openid, paid_at, decided_at, holdout_bps,
                               held_out, campaign_ids) is not None


async def coupons_of_shopper(conn, mall_id: str, openid: str, limit: int, offset: int):
    return await _page(conn, COUPONS_OF_SHOPPER, mall_id, openid, limit, offset)


async def coupon(conn, mall_id: str, coupon_id: str):
    return await conn.fetchrow(COUPON, mall_id, coupon_id)


async def reserve_coupon(conn, *, mall_id, coupon_id, openid, sub_mchid, out_trade_no, at, original_total_fen):
    return await conn.fetchrow(RESERVE_COUPON, mall_id, coupon_id, openid, sub_mchid, out_trade_no, at,
                               original_total_fen)


async def campaign_state(conn, mall_id: str, campaign_id: int) -> str:
    return await conn.fetchval(CAMPAIGN_STATE, mall_id, campaign_id)


async def coupon_of_order(conn, mall_id: str, sub_mchid: str, out_trade_no: str):
    return await conn.fetchrow(COUPON_OF_ORDER, mall_id, sub_mchid, out_trade_no)


async def return_coupon(conn, mall_id: str, sub_mchid: str, out_trade_no: str, at: datetime) -> str | None:
    return await conn.fetchval(RETURN_COUPON, mall_id, sub_mchid, out_trade_no, at)


async def expire_coupons(conn, mall_id: str, at: datetime, limit: int):
    return await conn.fetch(EXPIRE_COUPONS, mall_id, at, limit)


async def issued_for_payment(conn, mall_id: str, sub_mchid: str, out_trade_no: str):
    return await conn.fetch(ISSUED_FOR_PAYMENT, mall_id, sub_mchid, out_trade_no)


async def stores(conn, mall_id: str):
    return await conn.fetch(STORES, mall_id)


async def payments_since(conn, mall_id: str, since: datetime, limit: int):
    return await conn.fetch(PAYMENTS_SINCE, mall_id, since, limit)


async def shopper_payments(conn, mall_id: str, openid: str, until: datetime, limit: int):
    return await conn.fetch(SHOPPER_PAYMENTS, mall_id, openid, until, limit)



INTENT_TABLE = "coupon_issue_intents"  # its writer: the SQL function coupon_issue_intents_insert_row


def intent_row(*, mall_id: str, sub_mchid: str, out_trade_no: str, hold_until: datetime, due_at: datetime,
               now: datetime) -> dict:
    """A paid order's issuing intent as `coupon_issue_intents_insert_row` takes it."""
    return {"mall_id": mall_id, "sub_mchid": sub_mchid, "out_trade_no": out_trade_no,
            "hold_until": hold_until.isoformat(), "due_at": due_at.isoformat(), "created_at": now.isoformat()}


async def payment_to_issue_for(conn, mall_id: str, sub_mchid: str, out_trade_no: str):
    return await conn.fetchrow(PAYMENT_TO_ISSUE_FOR, mall_id, sub_mchid, out_trade_no)


async def claim_due_intents(conn, mall_id: str, now: datetime, lease_until: datetime, limit: int):
    return await conn.fetch(CLAIM_DUE_INTENTS, mall_id, now, lease_until, limit)


async def intent_failed(conn, mall_id: str, sub_mchid: str, out_trade_no: str, error: str, retry_at: datetime,
                        dead: bool) -> None:
    await conn.execute(INTENT_FAILED, mall_id, sub_mchid, out_trade_no, error, retry_at, dead)


async def intent_counts(conn, mall_id: str) -> dict[str, int]:
    return {r["state"]: r["n"] for r in await conn.fetch(INTENT_COUNTS, mall_id)}


async def attach_to_notification(conn, mall_id: str, trigger_key, coupons: list[dict], hold_until: datetime,
                                 due_at: datetime):
    return await conn.fetchrow(ATTACH_TO_NOTIFICATION, mall_id, *trigger_key, coupons, hold_until, due_at)



async def attribution(conn, mall_id: str, campaign_id: int):
    return await conn.fetchrow(ATTRIBUTION, mall_id, campaign_id)


async def flows(conn, mall_id: str, campaign_id: int | None):
    return await conn.fetch(FLOWS, mall_id, campaign_id)


async def all_campaign_ids(conn, mall_id: str) -> list[int]:
    return [r["campaign_id"] for r in await conn.fetch(ALL_CAMPAIGN_IDS, mall_id)]


async def uplift_arms(conn, mall_id: str, campaign_id: int | None, window_days: int):
    return await conn.fetch(UPLIFT_ARMS, mall_id, campaign_id, window_days)


async def discount_spent(conn, mall_id: str, campaign_id: int | None) -> int:
    return await conn.fetchval(DISCOUNT_OF_TREATED, mall_id, campaign_id)


SUBSIDY_PAYOUT = "SELECT * FROM coupon_subsidy_payouts WHERE mall_id = $1 AND out_payout_no = $2"

SUBSIDY_PAYOUTS = """
SELECT *, count(*) OVER () AS total_count FROM coupon_subsidy_payouts
 WHERE mall_id = $1 AND ($2::text IS NULL OR sub_mchid = $2)
 ORDER BY paid_at DESC, out_payout_no LIMIT $3 OFFSET $4
"""

# Nothing when a concurrent payout took the number first (its caller then compares).
INSERT_SUBSIDY_PAYOUT = """
INSERT INTO coupon_subsidy_payouts (mall_id, out_payout_no, sub_mchid, amount_fen, paid_at)
VALUES ($1, $2, $3, $4, $5) ON CONFLICT (mall_id, out_payout_no) DO NOTHING RETURNING *
"""

# Locked while a refund decides what to take back of the mall's subsidy.
MALL_REDEMPTION_FOR_UPDATE = """
SELECT * FROM coupon_redemptions
 WHERE mall_id = $1 AND sub_mchid = $2 AND out_trade_no = $3 AND funder = 'mall' FOR UPDATE
"""

ADD_SUBSIDY_REVERSED = """
UPDATE coupon_redemptions SET subsidy_reversed_fen = subsidy_reversed_fen + $4
 WHERE mall_id = $1 AND sub_mchid = $2 AND out_trade_no = $3 AND funder = 'mall'
"""


async def subsidy_payout(conn, mall_id: str, out_payout_no: str):
    return await conn.fetchrow(SUBSIDY_PAYOUT, mall_id, out_payout_no)


async def subsidy_payouts(conn, mall_id: str, sub_mchid: str | None, limit: int, offset: int):
    return await _page(conn, SUBSIDY_PAYOUTS, mall_id, sub_mchid, limit, offset)


async def insert_subsidy_payout(conn, mall_id: str, out_payout_no: str, sub_mchid: str, amount_fen: int,
                                paid_at: datetime):
    return await conn.fetchrow(INSERT_SUBSIDY_PAYOUT, mall_id, out_payout_no, sub_mchid, amount_fen, paid_at)


async def mall_redemption_for_update(conn, mall_id: str, sub_mchid: str, out_trade_no: str):
    return await conn.fetchrow(MALL_REDEMPTION_FOR_UPDATE, mall_id, sub_mchid, out_trade_no)


async def add_subsidy_reversed(conn, mall_id: str, sub_mchid: str, out_trade_no: str, amount_fen: int) -> None:
    await conn.execute(ADD_SUBSIDY_REVERSED, mall_id, sub_mchid, out_trade_no, amount_fen)
