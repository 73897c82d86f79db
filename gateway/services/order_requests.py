"""Validation of a partner JSAPI order request: every field, each failure precise.

Pure: takes the parsed JSON body and the caller, returns `OrderRequest` or raises
`ParamError`/`NoAuth` before anything is written.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

from gateway.errors import NoAuth, ParamError
from gateway.repo.clients import Caller
from gateway.wire import canonical_json, parse_wechat_time

OUT_TRADE_NO_RE = re.compile(r"[0-9A-Za-z_*|-]{6,32}")  # WeChat Pay partner JSAPI: [0-9A-Za-z_\-|*]
MCHID_RE = re.compile(r"[0-9]{1,32}")  # WeChat merchant ids are digits
APPID_RE = re.compile(r"[0-9A-Za-z_-]{1,32}")
OPENID_RE = re.compile(r"[0-9A-Za-z_-]{1,128}")
GUIDE_ID_RE = re.compile(r"[0-9A-Za-z_-]{1,32}")
COUPON_ID_RE = re.compile(r"[0-9A-Za-z]{1,64}")
DESCRIPTION_CHARS_MAX = 127
ATTACH_CHARS_MAX = 128
NOTIFY_URL_CHARS_MAX = 255
GOODS_TAG_CHARS_MAX = 32
ORDER_TOTAL_FEN_MAX = 100_000_000  # one million yuan per order
ORDER_EXPIRE_AFTER_S_MAX = 7 * 24 * 3600

ALLOWED_FIELDS = frozenset({
    "sp_appid", "sp_mchid", "sub_appid", "sub_mchid", "description", "out_trade_no",
    "time_expire", "attach", "notify_url", "goods_tag", "settle_info", "amount", "payer",
    "detail", "scene_info", "support_fapiao", "mall_info",
})


@dataclass(frozen=True, slots=True)
class OrderRequest:
    sp_appid: str
    sp_mchid: str
    sub_mchid: str
    sub_appid: str | None
    description: str
    out_trade_no: str
    time_expire: datetime | None
    attach: str | None
    notify_url: str
    total_fen: int
    currency: str
    payer_sp_openid: str | None
    payer_sub_openid: str | None
    profit_sharing: bool
    mall_info: dict
    request_hash: str


def request_hash(body: dict) -> str:
    return hashlib.sha256(canonical_json(body).encode()).hexdigest()


def parse_order_request(body, caller: Caller, *, now: datetime, allow_loopback_http: bool) -> OrderRequest:
    if not isinstance(body, dict):
        raise ParamError("body", "not_an_object", "request body must be a JSON object")
    for name in body:
        if name not in ALLOWED_FIELDS:
            raise ParamError(name, "unknown_field")
    if caller.role != "mall_app":
        raise NoAuth("role_cannot_create_orders", f"role {caller.role} cannot create orders")
    sp_mchid = _text(body, "sp_mchid", MCHID_RE)
    if not caller.names_its_mall(sp_mchid):
        raise NoAuth("sp_mchid_not_yours", "sp_mchid is not the caller's mall")
    sp_appid = _text(body, "sp_appid", APPID_RE)
    if sp_appid != caller.sp_appid:
        raise ParamError("sp_appid", "appid_mchid_not_match", "sp_appid does not belong to sp_mchid")
    amount = _object(body, "amount", required=True)
    payer = _object(body, "payer", required=True)
    settle_info = _object(body, "settle_info", required=False) or {}
    parsed = OrderRequest(
        sp_appid=sp_appid,
        sp_mchid=sp_mchid,
        sub_mchid=_text(body, "sub_mchid", MCHID_RE),
        sub_appid=_text(body, "sub_appid", APPID_RE, required=False),
        description=_bounded(body, "description", DESCRIPTION_CHARS_MAX, required=True),
        out_trade_no=_text(body, "out_trade_no", OUT_TRADE_NO_RE),
        time_expire=_time_expire(body, now),
        attach=_bounded(body, "attach", ATTACH_CHARS_MAX, required=False),
        notify_url=_notify_url(body, allow_loopback_http),
        total_fen=_total_fen(amount),
        currency=_currency(amount),
        payer_sp_openid=_text(payer, "sp_openid", OPENID_RE, required=False, field="payer.sp_openid"),
        payer_sub_openid=_text(payer, "sub_openid", OPENID_RE, required=False, field="payer.sub_openid"),
        profit_sharing=_flag(settle_info, "profit_sharing", "settle_info.profit_sharing"),
        mall_info=_mall_info(body),
        request_hash=request_hash(body),
    )
    _check_consistency(parsed, body, amount, payer, settle_info)
    return parsed


def _check_consistency(parsed: OrderRequest, body: dict, amount: dict, payer: dict, settle_info: dict) -> None:
    for name in amount:
        if name not in ("total", "currency"):
            raise ParamError(f"amount.{name}", "unknown_field")
    for name in payer:
        if name not in ("sp_openid", "sub_openid"):
            raise ParamError(f"payer.{name}", "unknown_field")
    for name in settle_info:
        if name != "profit_sharing":
            raise ParamError(f"settle_info.{name}", "unknown_field")
    if (parsed.payer_sp_openid is None) == (parsed.payer_sub_openid is None):
        raise ParamError("payer", "one_of_sp_openid_sub_openid", "payer needs exactly one of sp_openid, sub_openid")
    if parsed.payer_sub_openid is not None and parsed.sub_appid is None:
        raise ParamError("sub_appid", "required_with_sub_openid")
    if "goods_tag" in body:
        _bounded(body, "goods_tag", GOODS_TAG_CHARS_MAX, required=True)
    for name in ("detail", "scene_info"):
        if name in body and not isinstance(body[name], dict):
            raise ParamError(name, "not_an_object")
    if "support_fapiao" in body and not isinstance(body["support_fapiao"], bool):
        raise ParamError("support_fapiao", "not_a_boolean")
    if "coupon_id" in parsed.mall_info and "original_total" not in parsed.mall_info:
        raise ParamError("mall_info.original_total", "required_with_coupon_id")
    original = parsed.mall_info.get("original_total")
    if original is not None and original < parsed.total_fen:
        raise ParamError("mall_info.original_total", "less_than_total")


def _text(container: dict, name: str, pattern: re.Pattern, *, required: bool = True, field: str | None = None):
    field = field or name
    value = container.get(name)
    if value is None:
        if required:
            raise ParamError(field, "required")
        return None
    if not isinstance(value, str):
        raise ParamError(field, "not_a_string")
    if not pattern.fullmatch(value):
        raise ParamError(field, "bad_format")
    return value


def _bounded(container: dict, name: str, chars_max: int, *, required: bool):
    value = container.get(name)
    if value is None:
        if required:
            raise ParamError(name, "required")
        return None
    if not isinstance(value, str):
        raise ParamError(name, "not_a_string")
    if not value.strip() or len(value) > chars_max or any(ord(c) < 32 for c in value):
        raise ParamError(name, "bad_length_or_characters", f"{name}: 1 to {chars_max} printable characters")
    return value


def _object(container: dict, name: str, *, required: bool):
    value = container.get(name)
    if value is None:
        if required:
            raise ParamError(name, "required")
        return None
    if not isinstance(value, dict):
        raise ParamError(name, "not_an_object")
    return value


def _flag(container: dict, name: str, field: str) -> bool:
    value = container.get(name, False)
    if not isinstance(value, bool):
        raise ParamError(field, "not_a_boolean")
    return value


def _total_fen(amount: dict) -> int:
    total = amount.get("total")
    if total is None:
        raise ParamError("amount.total", "required")
    if not isinstance(total, int) or isinstance(total, bool):
        raise ParamError("amount.total", "not_an_integer", "amount.total is an integer number of fen")
    if not 1 <= total <= ORDER_TOTAL_FEN_MAX:
        raise ParamError("amount.total", "out_of_range", f"amount.total must be 1 to {ORDER_TOTAL_FEN_MAX} fen")
    return total


def _currency(amount: dict) -> str:
    currency = amount.get("currency", "CNY")
    if currency != "CNY":
        raise ParamError("amount.currency", "unsupported_currency", "only CNY is accepted")
    return currency


def _time_expire(body: dict, now: datetime) -> datetime | None:
    raw = body.get("time_expire")
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise ParamError("time_expire", "not_a_string")
    moment = parse_wechat_time(raw)
    if moment is None:
        raise ParamError("time_expire", "bad_format", "time_expire is RFC 3339 with an offset")
    seconds_ahead = (moment - now).total_seconds()
    if not 60 <= seconds_ahead <= ORDER_EXPIRE_AFTER_S_MAX:
        raise ParamError("time_expire", "out_of_range", "time_expire must be 1 minute to 7 days ahead")
    return moment


def _notify_url(body: dict, allow_loopback_http: bool) -> str:
    url = body.get("notify_url")
    if url is None:
        raise ParamError("notify_url", "required")
    if not isinstance(url, str) or len(url) > NOTIFY_URL_CHARS_MAX:
        raise ParamError("notify_url", "bad_format")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ParamError("notify_url", "bad_format") from None
    if not parts.hostname or parts.username or parts.password or parts.query or parts.fragment:
        raise ParamError("notify_url", "bad_format", "notify_url is an absolute URL without credentials or query")
    loopback = _is_loopback(parts.hostname)
    if parts.scheme not in ("http", "https"):
        raise ParamError("notify_url", "https_required", "notify_url must be https")
    if allow_loopback_http and loopback and port:
        return url  # local runs: the emulator, the demo and tests deliver on this machine
    if parts.scheme != "https":
        raise ParamError("notify_url", "https_required", "notify_url must be https")
    if loopback or _is_private_literal(parts.hostname):
        # A client must not make the gateway call into a private network (SPEC 8); names
        # are checked again when they are resolved for delivery.
        raise ParamError("notify_url", "private_address", "notify_url must be a public address")
    return url


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _is_private_literal(host: str) -> bool:
    try:
        return not ipaddress.ip_address(host).is_global
    except ValueError:
        return host.endswith((".local", ".internal", ".localhost"))


def _mall_info(body: dict) -> dict:
    info = _object(body, "mall_info", required=False)
    if info is None:
        return {}
    result: dict = {}
    for name, value in info.items():
        if name == "guide_id":
            result[name] = _text(info, name, GUIDE_ID_RE, field="mall_info.guide_id")
        elif name == "coupon_id":
            result[name] = _text(info, name, COUPON_ID_RE, field="mall_info.coupon_id")
        elif name == "original_total":
            if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= ORDER_TOTAL_FEN_MAX:
                raise ParamError("mall_info.original_total", "out_of_range")
            result[name] = value
        else:
            raise ParamError(f"mall_info.{name}", "unknown_field")
    return result
