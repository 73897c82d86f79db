"""/channel/wechatpay/notify: the channel tells the gateway a shopper has paid.

Verified with the channel's platform key and decrypted with the mall's APIv3 key by the
channel client; applied exactly once however often it arrives. Answered 204 once the
payment is in the books, 500 otherwise so the channel retries.
"""

from __future__ import annotations

import structlog
from aiohttp import web

from gateway.api import services_of
from gateway.channel import ChannelNotificationRejected
from gateway.services import channel_notices
from gateway.wire import json_bytes

routes = web.RouteTableDef()
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
    outcome = await channel_notices.apply_notice(svc, notice)
    if outcome is not None and not outcome.in_books:
        return _fail(500, outcome.value)
    return web.Response(status=204)
