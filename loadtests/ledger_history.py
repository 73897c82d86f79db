"""A seeded, plausible ledger history of a mall: payments, guide rewards, commission splits,
brand splits, split returns, unfreezes, refunds, guides' debts and payouts, each built
with the same posting functions the gateway uses, spread over China-time days.

Used by the statement property test (small) and the statement benchmark (a busy day).
Everything is decided by `random.Random(seed)`, so a failure replays exactly.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from ledger import accounts
from ledger.payments import channel_fee_fen, payment_transfer
from ledger.statements import period_bounds
from ledger.transfers import Move, Transfer, transfer_of
from splitting import postings
from splitting.funds import RefundPlan

FEE_RATE_BPS = 60
BRAND = "1900009999"


@dataclass
class _Order:
    sub_mchid: str
    no: str
    paid_fen: int
    frozen_fen: int
    commission_fen: int = 0
    refunded_fen: int = 0


@dataclass
class History:
    """Transfers with their instants, and the accounts they need."""

    stores: list[str]
    guides: list[str]
    items: list[tuple[Transfer, datetime]] = field(default_factory=list)

    def account_specs(self) -> list[accounts.AccountSpec]:
        specs = accounts.mall_accounts() + accounts.receiver_accounts(BRAND)
        for store in self.stores:
            specs += accounts.tenant_accounts(store)
        for guide in self.guides:
            specs += accounts.guide_accounts(guide)
        return specs


def build_history(seed: int, stores: list[str], days: list, orders_per_day: int) -> History:
    """`days`: the China-time dates to fill; orders spread over each day at random."""
    rng = random.Random(seed)
    guides = [f"G{store[-4:]}" for store in stores]
    history = History(stores=stores, guides=guides)
    available = dict.fromkeys(stores, 0)
    serial = 0
    for day in days:
        start, end = period_bounds(day, day)
        seconds = int((end - start).total_seconds())
        instants = sorted(start + timedelta(seconds=rng.randrange(seconds - 60)) for _ in range(orders_per_day))
        for at in instants:
            serial += 1
            store = rng.choice(stores)
            _one_order(rng, history, available, store, f"H{serial:09d}", at)
        for store in stores:  # the channel pays out part of the available balance at day's end
            if available[store] > 0 and rng.random() < 0.7:
                amount = rng.randint(1, available[store])
                available[store] -= amount
                history.items.append((transfer_of("payout", f"{store}/FF{day:%Y%m%d}{store}", accounts.CNY, [
                    Move(accounts.tenant_available(store), accounts.tenant_settled(store), amount)]),
                    end - timedelta(seconds=30)))
    return history


def _one_order(rng, history: History, available: dict, store: str, no: str, at: datetime) -> None:
    total = rng.randint(1, 200_000)
    sharing = rng.random() < 0.8
    add = history.items.append
    fee = channel_fee_fen(total, FEE_RATE_BPS)
    add((payment_transfer(sub_mchid=store, out_trade_no=no, total_fen=total, fee_fen=fee,
                          profit_sharing=sharing), at))
    order = _Order(store, no, total, total - fee if sharing else 0)
    if not sharing:
        available[store] += total - fee
    step = at
    if sharing:
        cap = total * 3000 // 10_000
        guide_fen = rng.randint(0, cap // 3) if rng.random() < 0.5 else 0
        commission = rng.randint(0, cap - guide_fen) if rng.random() < 0.6 else 0
        brand = rng.randint(0, cap - guide_fen - commission) if rng.random() < 0.2 else 0
        parts = [(accounts.guide_rewards(f"G{store[-4:]}"), guide_fen), (accounts.MALL_COMMISSION, commission),
                 (accounts.receiver(BRAND), brand)]
        parts = [(a, f) for a, f in parts if f > 0 and f <= order.frozen_fen]
        if parts and sum(f for _, f in parts) <= order.frozen_fen:
            step += timedelta(seconds=rng.randint(1, 50))
            add((postings.split_transfer(store, f"S{no}", parts), step))
            order.frozen_fen -= sum(f for _, f in parts)
            order.commission_fen = commission
        if order.commission_fen and rng.random() < 0.2:
            back = rng.randint(1, order.commission_fen)
            step += timedelta(seconds=1)
            add((postings.return_transfer(store, f"R{no}", accounts.MALL_COMMISSION, back), step))
            available[store] += back
        if order.frozen_fen and rng.random() < 0.7:
            step += timedelta(seconds=1)
            add((postings.unfreeze_transfer(store, f"U{no}", order.frozen_fen), step))
            available[store] += order.frozen_fen
            order.frozen_fen = 0
    if rng.random() < 0.15:
        _refund(rng, history, available, order, step + timedelta(seconds=2))


def _refund(rng, history: History, available: dict, order: _Order, at: datetime) -> None:
    """A refund the store carries from this order's frozen money, then its available balance."""
    store = order.sub_mchid
    refund = rng.randint(1, order.paid_fen)
    fee_back = min(channel_fee_fen(refund, FEE_RATE_BPS), channel_fee_fen(order.paid_fen, FEE_RATE_BPS))
    store_part = refund - fee_back
    if store_part <= 0 or store_part > order.frozen_fen + available[store]:
        return
    from_frozen = min(order.frozen_fen, store_part)
    from_available = store_part - from_frozen
    plan = RefundPlan(refund_fen=refund, returns=(), owed=(), fee_back_fen=fee_back,
                      from_frozen_fen=from_frozen, from_available_fen=from_available)
    history.items.append((postings.refund_transfer(store, f"F{order.no}", plan), at))
    order.frozen_fen -= from_frozen
    available[store] -= from_available
