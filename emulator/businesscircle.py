"""Smart business circle (智慧商圈) points: POST /v3/businesscircle/points/notify.

The mall tells WeChat how many points a shopper's paid transaction earned (or that it
earned none, with a remark). WeChat answers 204. A repeat of the same notice (same
store, transaction and update time) is answered 204 again and changes nothing, so a
retried call whose answer was lost is not counted twice.
"""

from __future__ import annotations

from datetime import datetime
import structlog
from aiohttp import web

from emulator import keys
from emulator.points_book import POINTS_MAX, PointsNotice
from emulator.state import PAID_STATES
from emulator.wire import EmulatorError, json_response, no_content, param_error, read_json_object

log = structlog.get_logger(__name__)
routes = web.RouteTableDef()
REMARKS_CHARS_MAX = 20  # WeChat: 未获得积分的备注信息, up to 20 characters


@routes.post("/v3/businesscircle/points/notify")
async def notify_points(request: web.Request) -> web.Response:
    book = request.app[keys.POINTS]
    book.calls += 1
    if book.failures_left > 0:
        book.failures_left -= 1
        raise EmulatorError(500, "SYSTEM_ERROR", "系统错误 (injected)")
    notice = _notice_of(await read_json_object(request))
    order = request.app[keys.ORDERS].by_transaction_id(notice.transaction_id)
    if order is None or order.sub_mchid != notice.sub_mchid or order.state not in PAID_STATES:
        raise EmulatorError(404, "RESOURCE_NOT_EXISTS", "交易不存在")
    fresh = book.record(notice)
    log.info("emulator.points_notified", transaction_id=notice.transaction_id, fresh=fresh,
             increased_points=notice.increased_points)
    if book.lost_answers_left > 0:
        book.lost_answers_left -= 1
        raise EmulatorError(500, "SYSTEM_ERROR", "系统错误 (injected after recording)")
    return no_content()


@routes.get("/sandbox/businesscircle/points")
async def points_notices(request: web.Request) -> web.Response:
    book = request.app[keys.POINTS]
    return json_response({"calls": book.calls, "data": [n.as_json() for n in book.notices()]})


def _notice_of(body: dict) -> PointsNotice:
    for name in ("sub_mchid", "transaction_id", "appid", "openid", "points_update_time"):
        if not isinstance(body.get(name), str) or not body[name]:
            raise param_error(f"{name} is required")
    if not isinstance(body.get("earn_points"), bool):
        raise param_error("earn_points must be a boolean")
    increased = body.get("increased_points")
    if not isinstance(increased, int) or isinstance(increased, bool) or abs(increased) > POINTS_MAX:
        raise param_error("increased_points must be an integer")
    total = body.get("total_points")
    if total is not None and (not isinstance(total, int) or isinstance(total, bool) or total < 0):
        raise param_error("total_points must be a non-negative integer")
    remarks = body.get("no_points_remarks")
    if remarks is not None and (not isinstance(remarks, str) or len(remarks) > REMARKS_CHARS_MAX):
        raise param_error(f"no_points_remarks is at most {REMARKS_CHARS_MAX} characters")
    if not body["earn_points"] and remarks is None:
        raise param_error("no_points_remarks is required when earn_points is false")
    try:
        datetime.fromisoformat(body["points_update_time"])
    except ValueError:
        raise param_error("points_update_time must be RFC 3339") from None
    return PointsNotice(body["sub_mchid"], body["transaction_id"], body["appid"], body["openid"],
                        body["earn_points"], increased, body["points_update_time"], remarks, total)
