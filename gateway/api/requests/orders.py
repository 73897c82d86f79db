"""A partner JSAPI order request, and the order queries and close: every field, each
failure precise, parsed before anything is written."""

from __future__ import annotations

from datetime import datetime

from aiohttp import web

from gateway.api.requests import bounded, flag, notify_url, request_hash, sub_object, text
from gateway.caller import Caller
from gateway.domain_errors import InvalidField, NotPermitted
from gateway.formats import APPID_RE, COUPON_ID_RE, GUIDE_ID_RE, MCHID_RE, OPENID_RE, OUT_TRADE_NO_RE
from gateway.services.orders import OrderRequest
from gateway.wire import ascii_digits, parse_wechat_time

DESCRIPTION_CHARS_MAX = 127
ATTACH_CHARS_MAX = 128
GOODS_TAG_CHARS_MAX = 32
ORDER_TOTAL_FEN_MAX = 100_000_000  # one million yuan per order
ORDER_EXPIRE_AFTER_S_MAX = 7 * 24 * 3600
TRANSACTION_ID_CHARS_MAX = 32

ALLOWED_FIELDS = frozenset({
    "sp_appid", "sp_mchid", "sub_appid", "sub_mchid", "description", "out_trade_no",
    "time_expire", "attach", "notify_url", "goods_tag", "settle_info", "amount", "payer",
    "detail", "scene_info", "support_fapiao", "mall_info",
})


def parse_order_request(body, caller: Caller, *, now: datetime, allow_loopback_http: bool) -> OrderRequest:
    if not isinstance(body, dict):
        raise InvalidField("body", "not_an_object", "request body must be a JSON object")
    for name in body:
        if name not in ALLOWED_FIELDS:
            raise InvalidField(name, "unknown_field")
    if caller.role != "mall_app":
        raise NotPermitted("role_cannot_create_orders", f"role {caller.role} cannot create orders")
    sp_mchid = text(body, "sp_mchid", MCHID_RE)
    if not caller.names_its_mall(sp_mchid):
        raise NotPermitted("sp_mchid_not_yours", "sp_mchid is not the caller's mall")
    sp_appid = text(body, "sp_appid", APPID_RE)
    if sp_appid != caller.sp_appid:
        raise InvalidField("sp_appid", "appid_mchid_not_match", "sp_appid does not belong to sp_mchid")
    amount = sub_object(body, "amount", required=True)
    payer = sub_object(body, "payer", required=True)
    settle_info = sub_object(body, "settle_info", required=False) or {}
    parsed = OrderRequest(
        sp_appid=sp_appid,
        sp_mchid=sp_mchid,
        sub_mchid=text(body, "sub_mchid", MCHID_RE),
        sub_appid=text(body, "sub_appid", APPID_RE, required=False),
        description=bounded(body, "description", DESCRIPTION_CHARS_MAX, required=True),
        out_trade_no=text(body, "out_trade_no", OUT_TRADE_NO_RE),
        time_expire=_time_expire(body, now),
        attach=bounded(body, "attach", ATTACH_CHARS_MAX, required=False),
        notify_url=notify_url(body, allow_loopback_http),
        total_fen=_total_fen(amount),
        currency=_currency(amount),
        payer_sp_openid=text(payer, "sp_openid", OPENID_RE, required=False, field="payer.sp_openid"),
        payer_sub_openid=text(payer, "sub_openid", OPENID_RE, required=False, field="payer.sub_openid"),
        profit_sharing=flag(settle_info, "profit_sharing", "settle_info.profit_sharing"),
        mall_info=_mall_info(body),
        request_hash=request_hash(body),
    )
    _check_consistency(parsed, body, amount, payer, settle_info)
    return parsed


def _check_consistency(parsed: OrderRequest, body: dict, amount: dict, payer: dict, settle_info: dict) -> None:
    for container, prefix, allowed in ((amount, "amount", ("total", "currency")),
                                       (payer, "payer", ("sp_openid", "sub_openid")),
                                       (settle_info, "settle_info", ("profit_sharing",))):
        for name in container:
            if name not in allowed:
                raise InvalidField(f"{prefix}.{name}", "unknown_field")
    if (parsed.payer_sp_openid is None) == (parsed.payer_sub_openid is None):
        raise InvalidField("payer", "one_of_sp_openid_sub_openid", "payer needs exactly one of sp_openid, sub_openid")
    if parsed.payer_sub_openid is not None and parsed.sub_appid is None:
        raise InvalidField("sub_appid", "required_with_sub_openid")
    if "goods_tag" in body:
        bounded(body, "goods_tag", GOODS_TAG_CHARS_MAX, required=True)
    for name in ("detail", "scene_info"):
        if name in body and not isinstance(body[name], dict):
            raise InvalidField(name, "not_an_object")
    if "support_fapiao" in body and not isinstance(body["support_fapiao"], bool):
        raise InvalidField("support_fapiao", "not_a_boolean")
    if "coupon_id" in parsed.mall_info and "original_total" not in parsed.mall_info:
        raise InvalidField("mall_info.original_total", "required_with_coupon_id")
    original = parsed.mall_info.get("original_total")
    if original is not None and original < parsed.total_fen:
        raise InvalidField("mall_info.original_total", "less_than_total")


def _total_fen(amount: dict) -> int:
    total = amount.get("total")
    if total is None:
        raise InvalidField("amount.total", "required")
    if not isinstance(total, int) or isinstance(total, bool):
        raise InvalidField("amount.total", "not_an_integer", "amount.total is an integer number of fen")
    if not 1 <= total <= ORDER_TOTAL_FEN_MAX:
        raise InvalidField("amount.total", "out_of_range", f"amount.total must be 1 to {ORDER_TOTAL_FEN_MAX} fen")
    return total


def _currency(amount: dict) -> str:
    currency = amount.get("currency", "CNY")
    if currency != "CNY":
        raise InvalidField("amount.currency", "unsupported_currency", "only CNY is accepted")
    return currency


def _time_expire(body: dict, now: datetime) -> datetime | None:
    raw = body.get("time_expire")
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise InvalidField("time_expire", "not_a_string")
    moment = parse_wechat_time(raw)
    if moment is None:
        raise InvalidField("time_expire", "bad_format", "time_expire is RFC 3339 with an offset")
    seconds_ahead = (moment - now).total_seconds()
    if not 60 <= seconds_ahead <= ORDER_EXPIRE_AFTER_S_MAX:
        raise InvalidField("time_expire", "out_of_range", "time_expire must be 1 minute to 7 days ahead")
    return moment


def _mall_info(body: dict) -> dict:
    info = sub_object(body, "mall_info", required=False)
    if info is None:
        return {}
    result: dict = {}
    for name, value in info.items():
        if name == "guide_id":
            result[name] = text(info, name, GUIDE_ID_RE, field="mall_info.guide_id")
        elif name == "coupon_id":
            result[name] = text(info, name, COUPON_ID_RE, field="mall_info.coupon_id")
        elif name == "original_total":
            if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= ORDER_TOTAL_FEN_MAX:
                raise InvalidField("mall_info.original_total", "out_of_range")
            result[name] = value
        else:
            raise InvalidField(f"mall_info.{name}", "unknown_field")
    return result


def out_trade_no_of(request: web.Request) -> str:
    out_trade_no = request.match_info["out_trade_no"]
    if not OUT_TRADE_NO_RE.fullmatch(out_trade_no):
        raise InvalidField("out_trade_no", "bad_format")
    return out_trade_no


def transaction_id_of(request: web.Request) -> str:
    transaction_id = request.match_info["transaction_id"]
    if not ascii_digits(transaction_id, TRANSACTION_ID_CHARS_MAX):
        raise InvalidField("transaction_id", "bad_format")
    return transaction_id


def query_scope(request: web.Request) -> tuple[str | None, str]:
    """A query's `sp_mchid` and `sub_mchid`: present and well formed."""
    sp_mchid = request.query.get("sp_mchid")
    sub_mchid = request.query.get("sub_mchid")
    if not sp_mchid:
        raise InvalidField("sp_mchid", "required")
    if not sub_mchid or not MCHID_RE.fullmatch(sub_mchid):
        raise InvalidField("sub_mchid", "required" if not sub_mchid else "bad_format")
    return sp_mchid, sub_mchid


def close_scope(body) -> tuple[str | None, str]:
    """A close request's body: `sp_mchid` and `sub_mchid`, nothing else."""
    if not isinstance(body, dict):
        raise InvalidField("body", "not_an_object")
    for name in body:
        if name not in ("sp_mchid", "sub_mchid"):
            raise InvalidField(name, "unknown_field")
    sub_mchid = body.get("sub_mchid")
    if not isinstance(sub_mchid, str) or not MCHID_RE.fullmatch(sub_mchid):
        raise InvalidField("sub_mchid", "required")
    return body.get("sp_mchid"), sub_mchid
