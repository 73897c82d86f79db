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

import structlog

from coupons import repo as coupons_repo
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
    wakeup: asyncio.Event | None = None


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


def payment_of(row) -> Payment:
    return Payment(openid=row["openid"], sub_mchid=row["sub_mchid"], paid_at=row["success_at"],
                   amount_fen=row["total_fen"])
