"""What the channel tells the gateway on its own (`/channel/wechatpay/notify`), once the
channel client has verified and decrypted it: a payment, a refund's end, a split's line."""

from __future__ import annotations

import structlog

from gateway.channel import ChannelPaymentNotice, ChannelRefundNotice, ChannelSplitNotice, ChannelSplitNoticeKind
from gateway.services import payments, refunds, returns, splits
from gateway.services.context import Services
from splitting import repo

log = structlog.get_logger(__name__)


async def apply_notice(svc: Services, notice) -> payments.PaymentOutcome | None:
    """The payment's outcome for a payment notice (the caller answers by it); None for the
    others, which are only hints to ask the channel and always acknowledged."""
    if isinstance(notice, ChannelPaymentNotice):
        return await payments.apply_trade(svc, notice.trade)
    if isinstance(notice, ChannelRefundNotice):
        await _refund_notice(svc, notice)
    elif isinstance(notice, ChannelSplitNotice):
        await _split_notice(svc, notice)
    return None


async def _split_notice(svc: Services, notice: ChannelSplitNotice) -> None:
    """One receiver's line of a split (or of a return): ask the channel for the whole."""
    mall_id = svc.settings.sp_mchid
    if notice.kind is ChannelSplitNoticeKind.SPLIT:
        await splits.sync(svc, mall_id, notice.sub_mchid, notice.out_order_no)
        return
    async with svc.pool.acquire() as conn:  # for a return, WeChat sends the return's numbers
        item = await repo.split_return(conn, mall_id, notice.sub_mchid, notice.out_order_no)
    if item is not None and (item["state"] in ("PREPARED", "PROCESSING") or repo.closed_unsent(item)):
        await returns.advance(svc, item, ask_only=True)


async def _refund_notice(svc: Services, notice: ChannelRefundNotice) -> None:
    async with svc.pool.acquire() as conn:
        refund = await repo.refund(conn, svc.settings.sp_mchid, notice.sub_mchid, notice.out_refund_no)
    if refund is None:
        log.error("refund_notice_unknown", out_refund_no=notice.out_refund_no)
        return
    await refunds.apply_channel_refund(svc, refund, notice.status, notice.success_at, notice.refund_id)
