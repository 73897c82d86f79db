"""The next-store model in a gateway process: fitted from the mall's own payments at
start and refitted on a schedule, swapped in whole so a ranking never sees half a model.

The model is `coupons.targeting.NextStoreModel`. Until the mall's history is loaded (or
when it is empty) there is no model and offers follow the campaigns' own order (larger
discount first). Fitting runs in a worker thread, off the event loop.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Callable

import structlog

from coupons import repo as coupons_repo
from coupons.campaigns import Campaign
from coupons.targeting import NextStoreModel, Payment, Store
from gateway.services.context import Services

log = structlog.get_logger(__name__)


MODEL_CLASS = NextStoreModel


@dataclass
class CouponRuntime:
    """What coupon issuing keeps per process."""

    model: object = None
    fitted_at: datetime | None = None
    tasks: set = field(default_factory=set)
    # The outbox's wake-up: set by a payment whose notification is not held (so it goes
    # out now) and by a release without a hand-over.
    wakeup: asyncio.Event | None = None
    # The outbox's hand-over of a released notification (delivery without a claim); None:
    # a release makes the row due now and sets `wakeup`.
    hand_over: Callable | None = None
    # The campaigns that may still issue and the stores' floor and category, as last read
    # (`refresh_campaigns`): a payment no campaign could reward is not held and costs
    # issuing nothing. None until first read: every payment may then issue.
    campaigns: list[Campaign] | None = None
    stores: dict[str, tuple[str, str]] = field(default_factory=dict)


async def refit(svc: Services) -> None:
    """Fit a new model on the mall's recent payments (bounded) off the event loop."""
    runtime: CouponRuntime = svc.coupons
    settings = svc.settings
    since = svc.clock() - timedelta(days=settings.coupon_model_history_days)
    async with svc.pool.acquire() as conn:
        store_rows = await coupons_repo.stores(conn, settings.sp_mchid)
        payment_rows = await coupons_repo.payments_since(conn, settings.sp_mchid, since,
                                                         settings.coupon_model_payments_max)
    stores = [Store(r["sub_mchid"], r["name"], r["floor"], r["category"]) for r in store_rows]
    payments = [payment_of(r) for r in reversed(payment_rows)]  # oldest first
    if not payments:
        return
    runtime.model = await asyncio.to_thread(MODEL_CLASS.fit, stores, payments)
    runtime.fitted_at = svc.clock()
    log.info("next_store_model_fitted", payments=len(payments), stores=len(stores))


async def refresh_campaigns(svc: Services) -> None:
    """Read the campaigns that may still issue, and the stores, into the runtime: on a
    schedule (`coupon_campaigns_refresh_s`, so other processes' changes arrive within it)
    and after this process changes a campaign."""
    runtime: CouponRuntime | None = svc.coupons
    if runtime is None:
        return
    async with svc.pool.acquire() as conn:
        campaign_rows = await coupons_repo.campaigns_that_may_issue(conn, svc.settings.sp_mchid, svc.clock())
        store_rows = await coupons_repo.stores(conn, svc.settings.sp_mchid)
    runtime.stores = {r["sub_mchid"]: (r["floor"], r["category"]) for r in store_rows}
    runtime.campaigns = [coupons_repo.campaign_of(r) for r in campaign_rows]


def payment_of(row) -> Payment:
    return Payment(openid=row["openid"], sub_mchid=row["sub_mchid"], paid_at=row["success_at"],
                   amount_fen=row["total_fen"])
