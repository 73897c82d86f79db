"""Profit-sharing requests: split orders, unfreezes, receivers."""

from __future__ import annotations

from typing import Callable

from gateway.api.requests import body_object, field, is_positive_int, request_hash
from gateway.caller import Caller
from gateway.domain_errors import InvalidField
from gateway.formats import MCHID_RE, OPENID_RE, OUT_NO_RE, TRANSACTION_ID_RE
from gateway.services.profitsharing import SplitRequest, UnfreezeRequest

DESCRIPTION_CHARS_MAX = 80
RECEIVER_TYPES = ("MERCHANT_ID", "PERSONAL_OPENID", "PERSONAL_SUB_OPENID")
RELATION_TYPES = frozenset({"SERVICE_PROVIDER", "STORE", "STAFF", "STORE_OWNER", "PARTNER", "HEADQUARTER",
                            "BRAND", "DISTRIBUTOR", "USER", "SUPPLIER", "CUSTOM"})


def parse_split(body, caller: Caller) -> SplitRequest:
    body = body_object(body)
    sub_mchid = field(body, "sub_mchid", MCHID_RE)
    transaction_id = field(body, "transaction_id", TRANSACTION_ID_RE)
    out_order_no = field(body, "out_order_no", OUT_NO_RE)
    unfreeze_unsplit = body.get("unfreeze_unsplit")
    if not isinstance(unfreeze_unsplit, bool):
        raise InvalidField("unfreeze_unsplit", "required")
    if body.get("appid") not in (None, caller.sp_appid):
        raise InvalidField("appid", "appid_mchid_not_match")
    return SplitRequest(sub_mchid=sub_mchid, transaction_id=transaction_id, out_order_no=out_order_no,
                        unfreeze_unsplit=unfreeze_unsplit, receivers=_receivers(body.get("receivers")),
                        request_hash=request_hash(body))


def _receivers(receivers) -> tuple[dict, ...]:
    if not isinstance(receivers, list) or not receivers:
        raise InvalidField("receivers", "required")
    parsed = []
    for index, item in enumerate(receivers):
        name = f"receivers[{index}]"
        if not isinstance(item, dict) or item.get("type") not in RECEIVER_TYPES:
            raise InvalidField(f"{name}.type", "unknown_receiver_type")
        account, amount, description = item.get("account"), item.get("amount"), item.get("description")
        if not isinstance(account, str) or not OPENID_RE.fullmatch(account):
            raise InvalidField(f"{name}.account", "bad_format")
        if not is_positive_int(amount):
            raise InvalidField(f"{name}.amount", "not_a_positive_integer")
        if not _is_description(description):
            raise InvalidField(f"{name}.description", "bad_length_or_characters")
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
        raise InvalidField("description", "required")
    return UnfreezeRequest(sub_mchid=sub_mchid, transaction_id=transaction_id, out_order_no=out_order_no,
                           request_hash=request_hash(body))


def parse_receiver_delete(body) -> tuple[str, str, str]:
    """sub_mchid, type and account of the receiver to delete."""
    body = body_object(body)
    sub_mchid = field(body, "sub_mchid", MCHID_RE)
    if body.get("type") not in RECEIVER_TYPES:
        raise InvalidField("type", "unknown_receiver_type")
    return sub_mchid, body["type"], field(body, "account", OPENID_RE)


def parse_receiver_add(body, decrypt: Callable[[str], str | None]) -> tuple[str, str, str, str | None, str]:
    """sub_mchid, type, account, name and relation_type of a merchant receiver to add. The
    name comes encrypted with the gateway's public key, as WeChat asks; `decrypt` opens it
    (None when it cannot). Persons receive splits as guides, never through this call."""
    body = body_object(body)
    sub_mchid = field(body, "sub_mchid", MCHID_RE)
    name = body.get("name")
    if name is not None:
        name = decrypt(name) if isinstance(name, str) else None
        if name is None:
            raise InvalidField("name", "not_decryptable", "name must be encrypted with the gateway public key")
    type_, account, relation_type = body.get("type"), body.get("account"), body.get("relation_type")
    if type_ != "MERCHANT_ID":
        raise InvalidField("type", "use_guides_for_persons", "persons receive splits as guides: POST /v3/mall/guides")
    if not isinstance(account, str) or not MCHID_RE.fullmatch(account):
        raise InvalidField("account", "bad_format")
    if not isinstance(relation_type, str) or relation_type not in RELATION_TYPES:
        raise InvalidField("relation_type", "unknown_relation_type")
    return sub_mchid, type_, account, name, relation_type
