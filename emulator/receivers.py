"""Split receivers of a store: POST /v3/profitsharing/receivers/add and /receivers/delete.

A split may only send money to receivers added for that store beforehand. Adding twice
updates the relation; deleting an unknown receiver succeeds (as WeChat's does). A
MERCHANT_ID receiver needs its full name, RSA-OAEP encrypted under the platform key.
"""

from __future__ import annotations

from typing import Any

import structlog
from aiohttp import web

from emulator import fields
from emulator.profitsharing import BASE, context_of
from emulator.split_book import MERCHANT_ID, RECEIVER_TYPES, BookFull, ReceiverRelation
from emulator.wire import EmulatorError, json_response, param_error, read_json_object

log = structlog.get_logger(__name__)
routes = web.RouteTableDef()

RELATION_TYPES = frozenset({
    "SERVICE_PROVIDER", "STORE", "STAFF", "STORE_OWNER", "PARTNER", "HEADQUARTER", "BRAND",
    "DISTRIBUTOR", "USER", "SUPPLIER", "CUSTOM",
})
CUSTOM_RELATION_CHARS_MAX = 10  # WeChat: 本字段最多10个字


@routes.post(BASE + "/receivers/add")
async def add_receiver(request: web.Request) -> web.Response:
    body = await read_json_object(request)
    ctx = context_of(request)
    receiver = _receiver_of(body)
    relation_type = body.get("relation_type")
    if relation_type not in RELATION_TYPES:
        raise param_error("relation_type is not one of WeChat's relation types")
    custom_relation = fields.optional_text(body, "custom_relation", CUSTOM_RELATION_CHARS_MAX)
    if relation_type == "CUSTOM" and custom_relation is None:
        raise param_error("custom_relation is required when relation_type is CUSTOM")
    name = body.get("name")
    if name is None and receiver["type"] == MERCHANT_ID:
        raise param_error("name (the merchant's full name) is required for a MERCHANT_ID receiver")
    if name is not None:
        fields.encrypted_name(request, name, ctx.config.credentials)
    try:
        ctx.book.add_relation(ReceiverRelation(
            sub_mchid=receiver["sub_mchid"], type=receiver["type"], account=receiver["account"],
            relation_type=relation_type, custom_relation=custom_relation if relation_type == "CUSTOM" else None,
        ))
    except BookFull:
        raise EmulatorError(400, "INVALID_REQUEST", "分账接收方数量已达上限") from None
    log.info("emulator.receiver_added", sub_mchid=receiver["sub_mchid"], type=receiver["type"])
    answer: dict[str, Any] = {**_answer_of(receiver), "relation_type": relation_type}
    if relation_type == "CUSTOM":
        answer["custom_relation"] = custom_relation
    return json_response(answer)


@routes.post(BASE + "/receivers/delete")
async def delete_receiver(request: web.Request) -> web.Response:
    body = await read_json_object(request)
    ctx = context_of(request)
    receiver = _receiver_of(body)
    ctx.book.delete_relation(receiver["sub_mchid"], receiver["type"], receiver["account"])
    log.info("emulator.receiver_deleted", sub_mchid=receiver["sub_mchid"], type=receiver["type"])
    return json_response(_answer_of(receiver))


def _receiver_of(body: dict[str, Any]) -> dict[str, Any]:
    receiver_type = body.get("type")
    if receiver_type not in RECEIVER_TYPES:
        raise param_error("type must be MERCHANT_ID, PERSONAL_OPENID or PERSONAL_SUB_OPENID")
    receiver = {
        "sub_mchid": fields.mchid(body, "sub_mchid"),
        "appid": fields.text(body, "appid", fields.APPID_CHARS_MAX),
        "sub_appid": fields.optional_text(body, "sub_appid", fields.APPID_CHARS_MAX),
        "type": receiver_type,
        "account": fields.text(body, "account", fields.ACCOUNT_CHARS_MAX),
    }
    if receiver_type == "PERSONAL_SUB_OPENID" and receiver["sub_appid"] is None:
        raise param_error("sub_appid is required for a PERSONAL_SUB_OPENID receiver")
    return receiver


def _answer_of(receiver: dict[str, Any]) -> dict[str, Any]:
    # WeChat echoes name encrypted under the merchant's key; it is optional, so left out.
    return {"sub_mchid": receiver["sub_mchid"], "type": receiver["type"], "account": receiver["account"]}
