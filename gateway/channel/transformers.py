"""WeChat Pay's JSON and statuses <-> the channel's domain types.

Pure functions, no I/O: the client builds request bodies and reads answers through them,
so WeChat's field names stop here. Amounts are `int` fen on both sides; WeChat's times are
RFC 3339 with a +08:00 offset and become aware UTC datetimes.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any, TypeVar

from gateway.channel import (
    BillNotReady, ChannelError, ChannelNotFound, ChannelOrderRequest, ChannelTrade, ChannelTradeState, SplitNotReady,
)
from gateway.wire import CHINA_TZ

E = TypeVar("E", bound=enum.Enum)
EVENT_TRANSACTION_SUCCESS = "TRANSACTION.SUCCESS"
RESOURCE_TYPE_ENCRYPTED = "encrypt-resource"
RESOURCE_ALGORITHM = "AEAD_AES_256_GCM"

# Codes for failures that happen on our side of the wire, not sent by WeChat.
CODE_TIMEOUT = "CHANNEL_TIMEOUT"
CODE_UNREACHABLE = "CHANNEL_UNREACHABLE"
CODE_BAD_SIGNATURE = "CHANNEL_BAD_SIGNATURE"
CODE_BAD_RESPONSE = "CHANNEL_BAD_RESPONSE"
CODE_NOT_FOUND = "ORDER_NOT_EXIST"
# WeChat's "no such thing" codes: the order APIs' and the v3 RESOURCE_NOT_EXISTS.
NOT_FOUND_CODES = frozenset({CODE_NOT_FOUND, "ORDERNOTEXIST", "RESOURCE_NOT_EXISTS"})
CODE_BILL_NOT_READY = "STATEMENT_CREATING"

_RETRYABLE_CODES = frozenset({"SYSTEM_ERROR", "SYSTEMERROR", "FREQUENCY_LIMITED", "BANKERROR",
                              CODE_BILL_NOT_READY})  # a bill not generated yet: ask again later
# WeChat answers a split (or unfreeze) asked for too soon after payment -- before the
# order has settled, "about a minute" -- with 400 INVALID_REQUEST and text like
# 订单处理中，暂时无法分账，请稍后重试 (or 订单处理中，请稍后重试); API v2 named it ORDER_NOT_READY.
# `error_from` reports that answer as SplitNotReady with this code, so callers can tell
# "try again later" from a real refusal without reading WeChat's text.
SPLIT_NOT_READY = "ORDER_NOT_READY"
_NOT_READY_MARK = "处理中"


class UnexpectedChannelResponse(ValueError):
    """A 2xx answer whose JSON does not have the shape WeChat documents."""


def parse_wechat_time(text: str) -> datetime:
    """RFC 3339 with offset (WeChat sends +08:00) -> aware UTC datetime."""
    try:
        parsed = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        raise UnexpectedChannelResponse("time is not RFC 3339") from None
    if parsed.tzinfo is None:
        raise UnexpectedChannelResponse("time has no offset")
    return parsed.astimezone(timezone.utc)


def jsapi_order_body(req: ChannelOrderRequest) -> dict[str, Any]:
    """The body of POST /v3/pay/partner/transactions/jsapi for one order request."""
    assert isinstance(req.total_fen, int) and not isinstance(req.total_fen, bool)
    assert (req.payer_sp_openid is None) != (req.payer_sub_openid is None), "exactly one payer id"
    payer = {"sp_openid": req.payer_sp_openid} if req.payer_sp_openid else {"sub_openid": req.payer_sub_openid}
    body: dict[str, Any] = {
        "sp_appid": req.sp_appid,
        "sp_mchid": req.sp_mchid,
        "sub_mchid": req.sub_mchid,
        "description": req.description,
        "out_trade_no": req.out_trade_no,
        "notify_url": req.notify_url,
        "amount": {"total": req.total_fen, "currency": req.currency},
        "payer": payer,
        "settle_info": {"profit_sharing": req.profit_sharing},
    }
    optional = {"sub_appid": req.sub_appid, "time_expire": req.time_expire, "attach": req.attach}
    body.update({name: value for name, value in optional.items() if value is not None})
    return body


def prepay_id_from(data: Mapping[str, Any]) -> str:
    prepay_id = data.get("prepay_id")
    if not isinstance(prepay_id, str) or not prepay_id:
        raise UnexpectedChannelResponse("no prepay_id")
    return prepay_id


def trade_from(data: Mapping[str, Any]) -> ChannelTrade:
    """A partner query answer or decrypted TRANSACTION resource -> ChannelTrade."""
    amount = read_mapping(data.get("amount"), "amount")
    payer = read_mapping(data.get("payer") or {}, "payer")
    try:
        state = ChannelTradeState(read_text(data, "trade_state"))
    except ValueError:
        raise UnexpectedChannelResponse("unknown trade_state") from None
    success_time = data.get("success_time")
    return ChannelTrade(
        sp_mchid=read_text(data, "sp_mchid"),
        sub_mchid=read_text(data, "sub_mchid"),
        out_trade_no=read_text(data, "out_trade_no"),
        transaction_id=read_optional_text(data, "transaction_id"),
        state=state,
        total_fen=read_fen(amount, "total"),
        payer_total_fen=read_fen(amount, "payer_total") if "payer_total" in amount else None,
        currency=read_optional_text(amount, "currency") or "CNY",
        bank_type=read_optional_text(data, "bank_type"),
        success_at=parse_wechat_time(success_time) if success_time else None,
        payer_sp_openid=read_optional_text(payer, "sp_openid"),
        payer_sub_openid=read_optional_text(payer, "sub_openid"),
    )


def error_from(status: int, data: Any) -> ChannelError:
    """A non-2xx answer -> ChannelError with WeChat's code, of the kind that says what the
    code means (ChannelNotFound, SplitNotReady, BillNotReady; plain ChannelError otherwise).

    The message names the status and code only: WeChat's own `message` text is for logs,
    never for what the gateway tells its clients.
    """
    code = data.get("code") if isinstance(data, Mapping) else None
    if not isinstance(code, str) or not code:
        code = f"HTTP_{status}"
    upstream_message = data.get("message") if isinstance(data, Mapping) else None
    if code == "INVALID_REQUEST" and isinstance(upstream_message, str) and _NOT_READY_MARK in upstream_message:
        code = SPLIT_NOT_READY  # the only place WeChat's text decides anything
    retryable = status >= 500 or status == 429 or code in _RETRYABLE_CODES
    kind = ChannelError
    if status == 404 and code in NOT_FOUND_CODES:
        kind = ChannelNotFound
    elif code == SPLIT_NOT_READY:
        kind = SplitNotReady
    elif code == CODE_BILL_NOT_READY:
        kind = BillNotReady
    return kind(code, f"channel answered {status} {code}", retryable=retryable, http_status=status)


def read_mapping(value: Any, name: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise UnexpectedChannelResponse(f"{name} is not an object")
    return value


def read_text(data: Mapping[str, Any], name: str) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not value:
        raise UnexpectedChannelResponse(f"{name} missing")
    return value


def read_optional_text(data: Mapping[str, Any], name: str) -> str | None:
    value = data.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise UnexpectedChannelResponse(f"{name} is not a string")
    return value


def read_fen(data: Mapping[str, Any], name: str) -> int:
    value = data.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise UnexpectedChannelResponse(f"{name} is not a non-negative integer of fen")
    return value


def read_time(data: Mapping[str, Any], name: str) -> datetime:
    return parse_wechat_time(read_text(data, name))


def read_optional_time(data: Mapping[str, Any], name: str) -> datetime | None:
    """None while WeChat leaves the time out or empty (success_time before a refund succeeds)."""
    return read_time(data, name) if data.get(name) else None


def read_enum(kind: type[E], data: Mapping[str, Any], name: str) -> E:
    try:
        return kind(read_text(data, name))
    except ValueError:
        raise UnexpectedChannelResponse(f"{name} is not one of {kind.__name__}") from None


def points_notice_body(notice) -> dict[str, Any]:
    """POST /v3/businesscircle/points/notify (partner mode names the store)."""
    body: dict[str, Any] = {
        "sub_mchid": notice.sub_mchid, "transaction_id": notice.transaction_id, "appid": notice.appid,
        "openid": notice.openid, "earn_points": notice.earn_points, "increased_points": notice.increased_points,
        # WeChat's example carries milliseconds (2020-05-20T13:29:35.120+08:00).
        "points_update_time": notice.points_update_at.astimezone(CHINA_TZ).isoformat(timespec="milliseconds"),
        "total_points": notice.total_points,
    }
    if notice.no_points_remarks is not None:
        body["no_points_remarks"] = notice.no_points_remarks
    return body
