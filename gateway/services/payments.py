"""A shopper's payment reaching the ledger, exactly once however it is learned of:
the channel's notification (any number of times, in any order) or a query of the
channel for an order whose notification never came."""

from __future__ import annotations

import enum
import uuid
from datetime import timedelta

import structlog

from gateway.channel import ChannelError, ChannelNotFound, ChannelTrade, ChannelTradeState
from gateway.repo import orders as orders_repo
from gateway.services import coupon_issuing, coupon_redemption, points
from gateway.services.context import Services
from gateway.services.payment_effects import Paid, payment_effects

log = structlog.get_logger(__name__)


class PaymentOutcome(enum.Enum):
    APPLIED = "applied"
    ALREADY_APPLIED = "already_applied"
    AMOUNT_MISMATCH = "amount_mismatch"
    ORDER_CLOSED = "order_closed"
    NOT_FOUND = "not_found"
    OTHER_MALL = "other_mall"

    @property
    def in_books(self) -> bool:
        """True when the channel may stop telling us: the payment is in the books."""
        return self in (PaymentOutcome.APPLIED, PaymentOutcome.ALREADY_APPLIED)


async def apply_trade(svc: Services, trade: ChannelTrade) -> PaymentOutcome:
    assert trade.state is ChannelTradeState.SUCCESS, trade.state
    if trade.sp_mchid != svc.settings.sp_mchid:
        log.error("payment_for_other_mall", sub_mchid=trade.sub_mchid, out_trade_no=trade.out_trade_no)
        return PaymentOutcome.OTHER_MALL
    key = (trade.sp_mchid, trade.sub_mchid, trade.out_trade_no)
    async with svc.pool.acquire() as conn:
        row = await orders_repo.order_to_pay(conn, *key)
        if row is None:
            outcome = PaymentOutcome.NOT_FOUND
        elif row["state"] == "SUCCESS":
            outcome = PaymentOutcome.ALREADY_APPLIED
        else:
            now = svc.clock()
            joins = await _joins(svc, conn, row)
            issuing = coupon_issuing.may_issue(svc, row, trade.success_at or now)
            outcome = PaymentOutcome(await _apply(svc, conn, row, trade, now, joins, issuing))
    if not outcome.in_books:
        # The channel took money we cannot place: an operator must look. Not acking
        # keeps the channel retrying, so the case stays visible until resolved.
        log.error("payment_not_applicable", outcome=outcome.value, sub_mchid=trade.sub_mchid,
                  out_trade_no=trade.out_trade_no, total_fen=trade.total_fen)
    elif outcome is PaymentOutcome.APPLIED:
        log.info("payment_applied", sub_mchid=trade.sub_mchid, out_trade_no=trade.out_trade_no,
                 total_fen=trade.total_fen)
        if notification_held(svc, issuing):
            coupon_issuing.start(svc, (row["mall_id"], row["sub_mchid"], row["out_trade_no"]))
        elif svc.coupons is not None and svc.coupons.wakeup is not None:
            svc.coupons.wakeup.set()  # the outbox delivers its TRANSACTION.SUCCESS now, not at the next poll
    return outcome


def notification_held(svc: Services, issuing: bool) -> bool:
    """Whether a payment's TRANSACTION.SUCCESS is written held for coupon issuing: in a
    process that issues right after the commit (`svc.coupons`), for a payment some
    campaign may reward (`issuing`, `coupon_issuing.may_issue`). Issuing then releases it
    and hands it to the outbox itself, so the payment does not wake the outbox (that would
    only cost a claim finding nothing due); a payment not held wakes it at once."""
    return bool(issuing) and svc.coupons is not None


async def _apply(svc: Services, conn, row, trade: ChannelTrade, now=None, joins=None, issuing=None) -> str:
    """One round trip: the order's NOTPAY → SUCCESS and every effect of the payment
    (`payment_effects`, the place where features join payment success): the coupon it
    redeems and the points it earns join as rows and transfers, and, when it may be
    rewarded with coupons (`issuing`), the intent to issue them."""
    if trade.total_fen != row["total_fen"]:
        return PaymentOutcome.AMOUNT_MISMATCH.value
    paid = Paid(transaction_id=trade.transaction_id, bank_type=trade.bank_type or "OTHERS",
                success_at=trade.success_at or svc.clock(),
                payer_total_fen=trade.payer_total_fen if trade.payer_total_fen is not None else trade.total_fen)
    now = now or svc.clock()
    effects = payment_effects(
        row, paid, notification_id=uuid.uuid4(), now=now,
        split_first_try_after_s=svc.settings.split_first_try_after_s,
        finish_before_unfreeze_s=svc.settings.finish_before_unfreeze_s,
    )
    if joins is not None:
        effects = joins(effects, paid)
    if issuing if issuing is not None else coupon_issuing.may_issue(svc, row, paid.success_at):
        effects = coupon_issuing.join_payment(svc, row, effects, now)
    return await orders_repo.apply_payment(
        conn, key=(row["mall_id"], row["sub_mchid"], row["out_trade_no"]), total_fen=trade.total_fen,
        paid=paid.columns(), now=now, transfers=effects.transfers_data(), rows=list(effects.rows),
    )


async def _joins(svc: Services, conn, row):
    """What coupons and points read before the payment, as a pure step that adds their
    transfers and rows to the payment's effects (so the payment stays one round trip)."""
    coupon = await coupon_redemption.coupon_to_confirm(conn, row)
    rate = await points.rate_for(svc, conn, row)

    def join(effects, paid):
        effects = coupon_redemption.join_payment(row, coupon, effects, paid.success_at)
        return points.join_payment(row, rate, effects, paid.transaction_id, paid.success_at)
    return join


async def sync_with_channel(svc: Services, row):
    """Ask the channel about an unpaid order and apply what it says; the fresh row.

    Returns None when the channel cannot be asked right now (the caller keeps what it has).
    """
    key = (row["mall_id"], row["sub_mchid"], row["out_trade_no"])
    try:
        trade = await svc.channel.query_by_out_trade_no(row["sub_mchid"], row["out_trade_no"])
    except ChannelError as exc:
        log.warning("channel_query_failed", code=exc.code, retryable=exc.retryable)
        return None
    if trade is not None and trade.state is ChannelTradeState.SUCCESS:
        await apply_trade(svc, trade)
    elif trade is not None and trade.state is ChannelTradeState.CLOSED:
        async with svc.pool.acquire() as conn:
            await orders_repo.close_order(conn, key, svc.clock())
    async with svc.pool.acquire() as conn:
        return await orders_repo.order(conn, *key)


async def check_due_unpaid_orders(svc: Services) -> int:
    """One pass of the unpaid-order check: find payments whose notification was lost,
    close orders past their expiry. Bounded by `unpaid_check_batch_max` per pass."""
    now = svc.clock()
    recheck_at = now + timedelta(seconds=svc.settings.unpaid_order_query_after_s)
    async with svc.pool.acquire() as conn:
        due = await orders_repo.claim_due_unpaid(conn, svc.settings.sp_mchid, now, recheck_at,
                                                 svc.settings.unpaid_check_batch_max)
    for row in due:
        fresh = await sync_with_channel(svc, row)
        if fresh is not None and fresh["state"] == "NOTPAY" and fresh["time_expire"] <= now:
            await _close_expired(svc, fresh)
    return len(due)


async def _close_expired(svc: Services, row) -> None:
    key = (row["mall_id"], row["sub_mchid"], row["out_trade_no"])
    try:
        await svc.channel.close_order(row["sub_mchid"], row["out_trade_no"])
    except ChannelNotFound:
        pass  # never opened there: nothing to close but ours
    except ChannelError as exc:
        log.warning("channel_close_failed", code=exc.code)
        return
    async with svc.pool.acquire() as conn:
        await orders_repo.close_order(conn, key, svc.clock())
