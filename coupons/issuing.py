"""Which campaigns a payment may hand out, and which of them a shopper is offered.

The store ranking comes from the targeting model; this module keeps to the rules: never
the store just paid at, only campaigns issuing now whose trigger matches the payment,
one coupon per store, at most K.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from coupons.campaigns import Campaign

BPS_DENOMINATOR = 10_000


@dataclass(frozen=True)
class PaidAt:
    """The payment that may trigger coupons, with its store's floor and category."""

    openid: str
    sub_mchid: str
    floor: str
    category: str
    amount_fen: int
    paid_at: datetime


def eligible(campaigns: list[Campaign], payment: PaidAt) -> list[Campaign]:
    """Campaigns of other stores, issuing at the payment's time, triggered by it."""
    return [c for c in campaigns
            if c.spec.sub_mchid != payment.sub_mchid and c.issues_at(payment.paid_at)
            and c.spec.trigger.matches(sub_mchid=payment.sub_mchid, floor=payment.floor,
                                       category=payment.category, amount_fen=payment.amount_fen)]


def offer(ranked_stores: list[str], candidates: list[Campaign], k: int) -> list[Campaign]:
    """Up to `k` campaigns, one per store, in the model's order (stores it did not rank
    come last); within a store the larger discount, then the older campaign."""
    assert k >= 0
    best: dict[str, Campaign] = {}
    for c in sorted(candidates, key=lambda c: (-c.spec.discount_fen, c.campaign_id)):
        best.setdefault(c.spec.sub_mchid, c)
    order = {store: i for i, store in enumerate(ranked_stores)}
    stores = sorted(best, key=lambda s: (order.get(s, len(order)), s))
    return [best[s] for s in stores[:k]]


def held_out(draw_bps: int, holdout_bps: int) -> bool:
    """The random hold-out: `draw_bps` is uniform in [0, 10000), drawn by the caller."""
    assert 0 <= draw_bps < BPS_DENOMINATOR and 0 <= holdout_bps <= BPS_DENOMINATOR
    return draw_bps < holdout_bps


class AfterRefund(enum.Enum):
    RETURNED = "returned"  # the shopper has the coupon again
    KEPT = "kept"          # the coupon stays used


def coupon_after_refund(*, paid_fen: int, refunded_fen: int, valid_until: datetime, at: datetime) -> AfterRefund:
    """The written policy: a full refund gives the coupon back while it is still valid;
    a partial refund (or an expired coupon) keeps it used."""
    assert 0 < refunded_fen <= paid_fen
    if refunded_fen == paid_fen and at < valid_until:
        return AfterRefund.RETURNED
    return AfterRefund.KEPT
