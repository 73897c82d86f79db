"""Issuing coupons after a payment at store A: up to K coupons of other stores, chosen by
the next-store model, within every budget and limit.

It runs after the payment commits, as a task of its own with a deadline
(`coupon_issue_budget_ms`). The payment's notification is written held until that
deadline; issuing attaches its coupons and releases it. When issuing is slow, broken or
skipped (too many in flight), the notification goes out at the deadline without them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
from datetime import datetime, timedelta, timezone

import structlog

from coupons import repo as coupons_repo
from coupons.issuing import PaidAt, eligible, held_out, offer
from gateway.repo import orders as orders_repo
from gateway.repo import tenants as tenants_repo
from gateway.services.context import Services
from gateway.services.next_store import CouponRuntime, Payment, payment_of

log = structlog.get_logger(__name__)
OUTBOX_TABLE = "outbox"
CHINA = timezone(timedelta(hours=8))
COUPON_ID_BYTES = 12
BPS = 10_000


def hold_until(svc: Services, now: datetime) -> datetime:
    """When the payment's notification goes out at the latest, coupons or not."""
    return now + timedelta(milliseconds=svc.settings.coupon_issue_budget_ms)


def hold_notification(effects, deadline: datetime):
    """The payment's effects with its TRANSACTION.SUCCESS due at `deadline` instead of at
    once: issuing attaches its coupons and releases it earlier (see `attach_to_notification`)."""
    rows = tuple((table, {**row, "next_attempt_at": deadline.isoformat()})
                 if table == OUTBOX_TABLE and row.get("event_type") == "TRANSACTION.SUCCESS" else (table, row)
                 for table, row in effects.rows)
    return dataclasses.replace(effects, rows=rows)


def start(svc: Services, key: tuple[str, str, str], deadline: datetime) -> None:
    """Issue for the paid order `key` in the background; never raises."""
    runtime: CouponRuntime | None = svc.coupons
    if runtime is None or len(runtime.tasks) >= svc.settings.coupon_issue_inflight_max:
        log.warning("coupon_issue_skipped", reason="no_runtime" if runtime is None else "inflight_max")
        return
    task = asyncio.create_task(_issue_within_budget(svc, key, deadline))
    runtime.tasks.add(task)
    task.add_done_callback(runtime.tasks.discard)


async def _issue_within_budget(svc: Services, key, deadline: datetime) -> None:
    budget_s = svc.settings.coupon_issue_budget_ms / 1000
    try:
        issued = await asyncio.wait_for(issue_after_payment(svc, key, deadline), budget_s)
    except asyncio.TimeoutError:
        log.warning("coupon_issue_too_slow", budget_ms=svc.settings.coupon_issue_budget_ms)
        return
    except Exception:
        log.exception("coupon_issue_failed")
        return
    if svc.coupons.wakeup is not None:
        svc.coupons.wakeup.set()
    if issued:
        log.info("coupons_issued", count=len(issued))


async def issue_after_payment(svc: Services, key, deadline: datetime | None = None) -> list[dict]:
    """Decide and issue for one paid order, once: a second call for the same payment
    finds its decision and issues nothing. Returns the coupons it issued."""
    mall_id, sub_mchid, out_trade_no = key
    now = svc.clock()
    async with svc.pool.acquire() as conn:
        order = await orders_repo.order(conn, *key)
        tenant = await tenants_repo.tenant(conn, mall_id, sub_mchid)
        openid = order["payer_sp_openid"] or order["payer_sub_openid"]
        paid = PaidAt(openid, sub_mchid, tenant.floor, tenant.category, order["total_fen"], order["success_at"])
        candidates = eligible([coupons_repo.campaign_of(r) for r in await coupons_repo.issuing_campaigns(
            conn, mall_id, order["success_at"])], paid)
        chosen = []
        if candidates:
            history = await coupons_repo.shopper_payments(conn, mall_id, openid, order["success_at"],
                                                          svc.settings.coupon_shopper_history_max)
            chosen = offer(_ranked(svc, paid, history, candidates), candidates, svc.settings.coupons_per_payment_max)
        async with conn.transaction():
            issued = await _decide_and_issue(svc, conn, paid, key, chosen, now) if chosen else []
            if deadline is not None:
                await coupons_repo.attach_to_notification(conn, mall_id, (sub_mchid, out_trade_no),
                                                          [coupon_json(c) for c in issued], deadline, now)
    return issued


def _ranked(svc: Services, paid: PaidAt, history, candidates) -> list[str]:
    model = svc.coupons.model if svc.coupons is not None else None
    if model is None:
        return []
    current = Payment(paid.openid, paid.sub_mchid, paid.paid_at, paid.amount_fen)
    past = [payment_of(r) for r in reversed(history)]  # oldest first, up to and including this one
    stores = sorted({c.spec.sub_mchid for c in candidates})
    return model.rank(current=current, history=past, candidates=stores, k=svc.settings.coupons_per_payment_max)


async def _decide_and_issue(svc: Services, conn, paid: PaidAt, key, chosen, now: datetime) -> list:
    mall_id = key[0]
    holdout_bps = svc.settings.coupon_holdout_bps
    held = held_out(secrets.randbelow(BPS), holdout_bps)
    first = await coupons_repo.insert_decision(
        conn, mall_id=mall_id, trigger_key=key[1:], openid=paid.openid, paid_at=paid.paid_at, decided_at=now,
        holdout_bps=holdout_bps,
        held_out=held, campaign_ids=[c.campaign_id for c in chosen])
    if not first or held:
        return []
    issued = []
    for campaign in chosen:
        coupon = await _issue_one(conn, mall_id, campaign, paid, key, now)
        if coupon is not None:
            issued.append(coupon)
    return issued


async def _issue_one(conn, mall_id: str, campaign, paid: PaidAt, key, now: datetime):
    """One coupon if the shopper's limit, the day's cap and the budget all still allow it;
    each is one conditional statement, undone together when a later one refuses."""
    spec = campaign.spec
    try:
        async with conn.transaction():  # a savepoint
            if not await coupons_repo.count_shopper(conn, mall_id, campaign.campaign_id, paid.openid,
                                                    spec.per_shopper_max):
                raise _Refused("per_shopper_max")
            if spec.daily_count_max is not None and not await coupons_repo.count_day(
                    conn, mall_id, campaign.campaign_id, now.astimezone(CHINA).date(), spec.daily_count_max):
                raise _Refused("daily_count_max")
            row = await coupons_repo.commit_budget(conn, mall_id, campaign.campaign_id, now)
            if row is None:
                raise _Refused("budget")
            return await coupons_repo.insert_coupon(
                conn, mall_id=mall_id, coupon_id="CPN" + secrets.token_hex(COUPON_ID_BYTES), campaign_row=row,
                openid=paid.openid, trigger_key=key[1:], issued_at=now, valid_until=spec.coupon_valid_until(now))
    except _Refused as refused:
        log.info("coupon_not_issued", campaign_id=campaign.campaign_id, limit=str(refused))
        return None


class _Refused(Exception):
    """A limit refused the coupon; the savepoint rolls back what the others counted."""


def coupon_json(row) -> dict:
    return {"coupon_id": row["coupon_id"], "campaign_id": str(row["campaign_id"]), "sub_mchid": row["sub_mchid"],
            "amount": row["discount_fen"], "min_spend": row["min_spend_fen"],
            "valid_until": row["valid_until"].isoformat()}
