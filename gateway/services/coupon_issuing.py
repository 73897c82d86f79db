"""Issuing coupons after a payment at store A: up to K coupons of other stores, chosen by
the next-store model, within every budget and limit.

The payment's own transaction writes an issuing intent (`coupon_issue_intents`) and its
TRANSACTION.SUCCESS held until a deadline (`coupon_issue_budget_ms`). Right after the
commit, issuing runs in the same process as a task of its own with that deadline: one
database transaction reads what it needs, records the hold-out decision, issues, puts the
coupons into the held notification and releases it, and deletes the intent. When issuing
is slow, broken or skipped (too many in flight), the notification goes out at the
deadline without coupons; when it did not finish at all (the process died after the
commit, an error, a timeout), a worker of any process takes the intent over
`coupon_issue_retry_after_ms` after the deadline (`retry_due`) and issues then.

Exactly once per payment, however many try: the decision row is written first in the
issuing transaction, with the coupons and the budget they commit, so a second attempt
finds it and issues nothing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
from datetime import datetime, timedelta, timezone

import structlog

from coupons import repo as coupons_repo
from coupons.issuing import PaidAt, eligible, held_out, offer
from gateway.outbox import lease_s
from gateway.services.context import Services
from gateway.services.next_store import CouponRuntime, Payment, payment_of

log = structlog.get_logger(__name__)
OUTBOX_TABLE = "outbox"
CHINA = timezone(timedelta(hours=8))
COUPON_ID_BYTES = 12
BPS = 10_000
ERROR_CHARS_MAX = 200


def hold_until(svc: Services, now: datetime) -> datetime:
    """When the payment's notification goes out at the latest, coupons or not."""
    return now + timedelta(milliseconds=svc.settings.coupon_issue_budget_ms)


def may_issue(svc: Services, order, paid_at: datetime) -> bool:
    """False when no campaign this process knows of (`CouponRuntime.campaigns`) could
    reward the payment: it is then neither held nor issued for. Unsure means True."""
    if svc.settings.coupons_per_payment_max == 0:
        return False
    runtime: CouponRuntime | None = svc.coupons
    if runtime is None or runtime.campaigns is None:
        return True
    place = runtime.stores.get(order["sub_mchid"])
    if place is None:  # a store newer than the list: its floor and category could match any
        return any(c.spec.sub_mchid != order["sub_mchid"] and c.issues_at(paid_at) for c in runtime.campaigns)
    paid = PaidAt(order["payer_sp_openid"] or order["payer_sub_openid"], order["sub_mchid"], *place,
                  order["total_fen"], paid_at)
    return bool(eligible(runtime.campaigns, paid))


def join_payment(svc: Services, order, effects, now: datetime):
    """The payment's effects with issuing made durable: the intent a worker takes over
    should issuing not finish and, in a process that issues right after the commit
    (`svc.coupons`), its TRANSACTION.SUCCESS held until the deadline. Elsewhere (a
    command-line action) nothing is held and the intent is due at once."""
    deadline = hold_until(svc, now) if svc.coupons is not None else now
    intent = coupons_repo.intent_row(
        mall_id=order["mall_id"], sub_mchid=order["sub_mchid"], out_trade_no=order["out_trade_no"],
        hold_until=deadline, due_at=deadline + timedelta(milliseconds=svc.settings.coupon_issue_retry_after_ms
                                                         if svc.coupons is not None else 0),
        now=now)
    effects = effects.with_row(coupons_repo.INTENT_TABLE, intent)
    return hold_notification(effects, deadline) if svc.coupons is not None else effects


def hold_notification(effects, deadline: datetime):
    """The payment's effects with its TRANSACTION.SUCCESS due at `deadline` instead of at
    once: issuing attaches its coupons and releases it earlier (see `attach_to_notification`)."""
    rows = tuple((table, {**row, "next_attempt_at": deadline.isoformat()})
                 if table == OUTBOX_TABLE and row.get("event_type") == "TRANSACTION.SUCCESS" else (table, row)
                 for table, row in effects.rows)
    return dataclasses.replace(effects, rows=rows)


def start(svc: Services, key: tuple[str, str, str]) -> None:
    """Issue for the paid order `key` in the background; never raises. Whatever does not
    finish here is left to `retry_due` through the payment's intent."""
    runtime: CouponRuntime | None = svc.coupons
    if runtime is None or len(runtime.tasks) >= svc.settings.coupon_issue_inflight_max:
        log.warning("coupon_issue_deferred", reason="no_runtime" if runtime is None else "inflight_max")
        return
    task = asyncio.create_task(_issue_within_budget(svc, key))
    runtime.tasks.add(task)
    task.add_done_callback(runtime.tasks.discard)


async def _issue_within_budget(svc: Services, key) -> None:
    budget_s = svc.settings.coupon_issue_budget_ms / 1000
    # Past the budget issuing is no longer waited for, but not cancelled either: a cancel
    # landing between its commit and the hand-over would leave the released notification
    # leased to nobody until the lease ends (seen: 10 s). The notification does not wait:
    # it is due at the hold's end, and a late release finds it no longer held.
    issuing = asyncio.ensure_future(issue_after_payment(svc, key))
    _RUNNING.add(issuing)  # a reference until it ends (asyncio keeps none of its own)
    issuing.add_done_callback(_RUNNING.discard)
    try:
        issued = await asyncio.wait_for(asyncio.shield(issuing), budget_s)
    except asyncio.TimeoutError:
        issuing.add_done_callback(_log_late_failure)
        log.warning("coupon_issue_too_slow", budget_ms=svc.settings.coupon_issue_budget_ms)
        return
    except Exception:
        log.exception("coupon_issue_failed")
        return
    if issued:
        log.info("coupons_issued", count=len(issued))


_RUNNING: set = set()


def _log_late_failure(issuing: asyncio.Future) -> None:
    if not issuing.cancelled() and issuing.exception() is not None:
        log.error("coupon_issue_failed_late", error=repr(issuing.exception()))


async def issue_after_payment(svc: Services, key) -> list[dict]:
    """Decide and issue for one paid order, once, in one database transaction: a second
    call for the same payment finds its decision and issues nothing. Releases the
    payment's held notification (with the coupons) while it is still held. Returns the
    coupons it issued."""
    mall_id, sub_mchid, out_trade_no = key
    now = svc.clock()
    hand_over = svc.coupons.hand_over if svc.coupons is not None else None
    async with svc.pool.acquire() as conn, conn.transaction():
        order = await coupons_repo.payment_to_issue_for(conn, *key)
        if order is None or order["state"] != "SUCCESS":
            return []
        paid = PaidAt(order["openid"], sub_mchid, order["floor"], order["category"], order["total_fen"],
                      order["success_at"])
        candidates = eligible([coupons_repo.campaign_of(r) for r in await coupons_repo.issuing_campaigns(
            conn, mall_id, paid.paid_at)], paid)
        issued = []
        if candidates and svc.settings.coupons_per_payment_max:
            history = await coupons_repo.shopper_payments(conn, mall_id, paid.openid, paid.paid_at,
                                                          svc.settings.coupon_shopper_history_max)
            chosen = offer(_ranked(svc, paid, history, candidates), candidates, svc.settings.coupons_per_payment_max)
            issued = await _decide_and_issue(svc, conn, paid, key, chosen, now)
        released = None
        if order["hold_until"] is not None:
            released = await coupons_repo.attach_to_notification(
                conn, mall_id, (sub_mchid, out_trade_no), [coupon_json(c) for c in issued], order["hold_until"],
                now if hand_over is None else now + timedelta(seconds=lease_s(svc.settings)))
    if released is not None and hand_over is not None:
        hand_over(released)  # this process delivers it, leased: no claim
    elif released is not None and svc.coupons.wakeup is not None:
        svc.coupons.wakeup.set()  # the outbox sends it now
    return issued


async def retry_due(svc: Services) -> int:
    """One pass of the issuing worker: take over the intents whose issuing did not finish
    where the payment was taken (bounded), and issue for each."""
    settings = svc.settings
    now = svc.clock()
    async with svc.pool.acquire() as conn:
        claimed = await coupons_repo.claim_due_intents(
            conn, settings.sp_mchid, now, now + timedelta(seconds=settings.coupon_issue_lease_s),
            settings.coupon_issue_batch_max)
    for intent in claimed:
        key = (settings.sp_mchid, intent["sub_mchid"], intent["out_trade_no"])
        try:
            issued = await issue_after_payment(svc, key)
        except Exception as exc:  # noqa: BLE001 — one payment's failure must not stop the others
            dead = intent["attempts"] >= settings.coupon_issue_attempts_max
            retry_at = svc.clock() + timedelta(
                seconds=settings.coupon_issue_retry_base_s * 2 ** min(intent["attempts"] - 1, 10))
            log.warning("coupon_issue_retry_failed", error=type(exc).__name__, attempts=intent["attempts"],
                        dead=dead, exc_info=True)
            async with svc.pool.acquire() as conn:
                await coupons_repo.intent_failed(conn, *key, f"{type(exc).__name__}: {exc}"[:ERROR_CHARS_MAX],
                                                 retry_at, dead)
            continue
        log.info("coupon_issue_taken_over", count=len(issued), attempts=intent["attempts"])
    return len(claimed)


async def dead_intent_count(svc: Services, mall_id: str) -> int:
    async with svc.pool.acquire() as conn:
        return (await coupons_repo.intent_counts(conn, mall_id)).get("dead", 0)


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
        holdout_bps=holdout_bps, held_out=held, campaign_ids=[c.campaign_id for c in chosen])
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
