"""/channel/wechatpay/notify: the channel tells the gateway a shopper has paid.

Verified with the channel's platform key and decrypted with the mall's APIv3 key by the
channel client; applied exactly once however often it arrives. Answered 204 once the
payment is in the books, 500 otherwise so the channel retries.
"""

from __future__ import annotations

import asyncio

import structlog
from aiohttp import web

from gateway.api import services_of
from gateway.channel import (
    ChannelNotificationRejected, ChannelPaymentNotice, ChannelRefundNotice, ChannelSplitNotice,
    ChannelSplitNoticeKind,
)
from splitting import repo as splitting_repo
from gateway.services import payments, refunds, returns, splits
from gateway.wire import json_bytes

routes = web.RouteTableDef()
OUTBOX_WAKEUP = web.AppKey("outbox_wakeup", asyncio.Event)
log = structlog.get_logger(__name__)


def _fail(status: int, message: str) -> web.Response:
    return web.Response(status=status, body=json_bytes({"code": "FAIL", "message": message}),
                        content_type="application/json", charset="utf-8")


@routes.post("/channel/wechatpay/notify")
async def channel_notification(request: web.Request) -> web.Response:
    svc = services_of(request)
    body = await request.read()
    try:
        notice = svc.channel.parse_notification(request.headers, body)
    except ChannelNotificationRejected as exc:
        log.warning("channel_notification_rejected", reason=str(exc))
        return _fail(401, "notification rejected")
    if isinstance(notice, ChannelPaymentNotice):
        outcome = await payments.apply_trade(svc, notice.trade)
        if not outcome.in_books:
            return _fail(500, outcome.value)
        if outcome is payments.PaymentOutcome.APPLIED and not payments.notification_held(svc):
            request.app[OUTBOX_WAKEUP].set()  # deliver now rather than at the next poll
    elif isinstance(notice, ChannelRefundNotice):
        await _refund_notice(svc, notice)
    elif isinstance(notice, ChannelSplitNotice):
        await _split_notice(svc, notice)
    return web.Response(status=204)


async def _split_notice(svc, notice: ChannelSplitNotice) -> None:
    """One receiver's line of a split (or of a return): ask the channel for the whole."""
    mall_id = svc.settings.sp_mchid
    if notice.kind is ChannelSplitNoticeKind.SPLIT:
        await splits.sync(svc, mall_id, notice.sub_mchid, notice.out_order_no)
        return
    async with svc.pool.acquire() as conn:  # for a return, WeChat sends the return's numbers
        item = await splitting_repo.split_return(conn, mall_id, notice.sub_mchid, notice.out_order_no)
    if item is not None and item["state"] in ("PREPARED", "PROCESSING"):
        await returns.advance(svc, item, ask_only=True)


async def _refund_notice(svc, notice: ChannelRefundNotice) -> None:
    async with svc.pool.acquire() as conn:
        refund = await splitting_repo.refund(conn, svc.settings.sp_mchid, notice.sub_mchid, notice.out_refund_no)
    if refund is None:
        log.error("refund_notice_unknown", out_refund_no=notice.out_refund_no)
        return
    await refunds.apply_channel_refund(svc, refund, notice.status, notice.success_at, notice.refund_id)
