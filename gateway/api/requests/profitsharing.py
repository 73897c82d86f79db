"""Profit-sharing requests: split orders, unfreezes, receivers."""

from __future__ import annotations

from gateway.api.requests import body_object, field, is_positive_int, request_hash
from gateway.caller import Caller
from gateway.errors import ParamError
from gateway.formats import MCHID_RE, OPENID_RE, OUT_NO_RE, TRANSACTION_ID_RE
from gateway.services.profitsharing import SplitRequest, UnfreezeRequest

DESCRIPTION_CHARS_MAX = 80
RECEIVER_TYPES = ("MERCHANT_ID", "PERSONAL_OPENID", "PERSONAL_SUB_OPENID")


def parse_split(body, caller: Caller) -> SplitRequest:
    body = body_object(body)
    sub_mchid = field(body, "sub_mchid", MCHID_RE)
    transaction_id = field(body, "transaction_id", TRANSACTION_ID_RE)
    out_order_no = field(body, "out_order_no", OUT_NO_RE)
    unfreeze_unsplit = body.get("unfreeze_unsplit")
    if not isinstance(unfreeze_unsplit, bool):
        raise ParamError("unfreeze_unsplit", "required")
    if body.get("appid") not in (None, caller.sp_appid):
        raise ParamError("appid", "appid_mchid_not_match")
    return SplitRequest(sub_mchid=sub_mchid, transaction_id=transaction_id, out_order_no=out_order_no,
                        unfreeze_unsplit=unfreeze_unsplit, receivers=_receivers(body.get("receivers")),
                        request_hash=request_hash(body))


def _receivers(receivers) -> tuple[dict, ...]:
    if not isinstance(receivers, list) or not receivers:
        raise ParamError("receivers", "required")
    parsed = []
    for index, item in enumerate(receivers):
        name = f"receivers[{index}]"
        if not isinstance(item, dict) or item.get("type") not in RECEIVER_TYPES:
            raise ParamError(f"{name}.type", "unknown_receiver_type")
        account, amount, description = item.get("account"), item.get("amount"), item.get("description")
        if not isinstance(account, str) or not OPENID_RE.fullmatch(account):
            raise ParamError(f"{name}.account", "bad_format")
        if not is_positive_int(amount):
            raise ParamError(f"{name}.amount", "not_a_positive_integer")
        if not _is_description(description):
            raise ParamError(f"{name}.description", "bad_length_or_characters")
        parsed.append({"type": item["type"], "account": account, "amount": amount, "description": description})
    return tuple(parsed)


def _is_description(value) -> bool:
    return isinstance(value, str) and 1 <= len(value) <= DESCRIPTION_CHARS_MAX


def parse_unfreeze(body) -> UnfreezeRequest:
    body = body_object(body)
    sub_mchid = field(body, "sub_mchid", MCHID_RE)
    transaction_id = field(body, "transaction_id", TRANSACTION_ID_RE)
    out_order_no = field(body, "out_order_no", OUT_NO_RE)
    if not _is_description(body.get("description")):
        raise ParamError("description", "required")
    return UnfreezeRequest(sub_mchid=sub_mchid, transaction_id=transaction_id, out_order_no=out_order_no,
                           request_hash=request_hash(body))


def parse_receiver_delete(body) -> tuple[str, str, str]:
    """sub_mchid, type and account of the receiver to delete."""
    body = body_object(body)
    sub_mchid = field(body, "sub_mchid", MCHID_RE)
    if body.get("type") not in RECEIVER_TYPES:
        raise ParamError("type", "unknown_receiver_type")
    return sub_mchid, body["type"], field(body, "account", OPENID_RE)
