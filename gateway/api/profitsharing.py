"""/v3/profitsharing: split orders, unfreeze, split returns, amounts, receivers, configs."""

from __future__ import annotations

import re

from aiohttp import web

from gateway import signing
from gateway.api import caller_of, services_of
from gateway.api.middleware import json_body
from gateway.api.orders import json_response
from gateway.errors import InvalidRequest, NoAuth, OrderNotExist, ParamError, ResourceNotExists
from gateway.repo import guides as guides_repo
from gateway.repo import splitting as repo
from gateway.repo import tenants as tenants_repo
from gateway.services import channel_caps, receivers as receivers_service
from gateway.services import splits
from gateway.services.order_requests import MCHID_RE, OPENID_RE, request_hash

routes = web.RouteTableDef()
OUT_NO_RE = re.compile(r"[0-9A-Za-z_*@|-]{1,64}")
DESCRIPTION_CHARS_MAX = 80
RECEIVER_TYPES = ("MERCHANT_ID", "PERSONAL_OPENID", "PERSONAL_SUB_OPENID")


def _object(body) -> dict:
    if not isinstance(body, dict):
        raise ParamError("body", "not_an_object")
    return body


def _field(body: dict, name: str, pattern: re.Pattern, *, required: bool = True):
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise ParamError(name, "required" if value is None else "bad_format")
    return value


def _mall_app(request: web.Request):
    caller = caller_of(request)
    if caller.role != "mall_app":
        raise NoAuth("role_not_allowed", "splits are requested by the mall's app")
    return caller


async def _trade(svc, caller, sub_mchid: str, transaction_id: str):
    async with svc.pool.acquire() as conn:
        row = await repo.funds_by_transaction(conn, caller.mall_id, sub_mchid, transaction_id)
    if row is None:
        raise OrderNotExist("order_not_paid", "no paid order of this store with this transaction_id")
    return row


async def _parts(svc, caller, sub_mchid: str, receivers) -> list[dict]:
    if not isinstance(receivers, list) or not receivers:
        raise ParamError("receivers", "required")
    parts = []
    if any(isinstance(r, dict) and r.get("type") == "MERCHANT_ID" and r.get("account") == svc.settings.sp_mchid
           for r in receivers):
        await receivers_service.ensure_mall_receiver(svc, caller.mall_id, sub_mchid)
    async with svc.pool.acquire() as conn:
        for index, item in enumerate(receivers):
            field = f"receivers[{index}]"
            if not isinstance(item, dict) or item.get("type") not in RECEIVER_TYPES:
                raise ParamError(f"{field}.type", "unknown_receiver_type")
            account, amount, description = item.get("account"), item.get("amount"), item.get("description")
            if not isinstance(account, str) or not OPENID_RE.fullmatch(account):
                raise ParamError(f"{field}.account", "bad_format")
            if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
                raise ParamError(f"{field}.amount", "not_a_positive_integer")
            if not isinstance(description, str) or not 1 <= len(description) <= DESCRIPTION_CHARS_MAX:
                raise ParamError(f"{field}.description", "bad_length_or_characters")
            ledger_account = await _ledger_account(svc, conn, caller.mall_id, sub_mchid, item["type"], account)
            if ledger_account is None:
                raise InvalidRequest("receiver_not_registered", f"{field} is not a receiver of this store")
            parts.append({"type": item["type"], "account": account, "amount": amount, "description": description,
                          "ledger_account": ledger_account, "returnable": item["type"] == "MERCHANT_ID"})
    return parts


async def _ledger_account(svc, conn, mall_id, sub_mchid, type_, account) -> str | None:
    if type_ == "MERCHANT_ID" and account == svc.settings.sp_mchid:
        return receivers_service.ledger_account_for(svc, type_, account)
    found = await guides_repo.receiver(conn, mall_id, sub_mchid, type_, account)
    return None if found is None else found["ledger_account"]


@routes.post("/v3/profitsharing/orders")
async def create_split(request: web.Request) -> web.Response:
    svc, caller = services_of(request), _mall_app(request)
    body = _object(await json_body(request))
    sub_mchid = _field(body, "sub_mchid", MCHID_RE)
    transaction_id = _field(body, "transaction_id", re.compile(r"[0-9]{1,32}"))
    out_order_no = _field(body, "out_order_no", OUT_NO_RE)
    unfreeze_unsplit = body.get("unfreeze_unsplit")
    if not isinstance(unfreeze_unsplit, bool):
        raise ParamError("unfreeze_unsplit", "required")
    if body.get("appid") not in (None, caller.sp_appid):
        raise ParamError("appid", "appid_mchid_not_match")
    trade = await _trade(svc, caller, sub_mchid, transaction_id)
    parts = await _parts(svc, caller, sub_mchid, body.get("receivers"))
    await channel_caps.refresh(svc, caller.mall_id, sub_mchid)  # prepare checks the lower cap
    key = (caller.mall_id, sub_mchid, trade["out_trade_no"])
    async with svc.pool.acquire() as conn, conn.transaction():
        split = await splits.prepare(
            svc, conn, key=key, transaction_id=transaction_id, out_order_no=out_order_no, kind="split",
            purpose="api", parts=parts, request_hash=request_hash(body), client_id=caller.client_id,
            unfreeze_unsplit=unfreeze_unsplit)
    if split["state"] == "PREPARED":
        split = await splits.submit(svc, split)
    return json_response(split["result"] or splits.split_json(split))


@routes.get("/v3/profitsharing/orders/{out_order_no}")
async def query_split(request: web.Request) -> web.Response:
    svc, caller = services_of(request), caller_of(request)
    sub_mchid = request.query.get("sub_mchid", "")
    if not MCHID_RE.fullmatch(sub_mchid):
        raise ParamError("sub_mchid", "required")
    async with svc.pool.acquire() as conn:
        split = await repo.split_order(conn, caller.mall_id, sub_mchid, request.match_info["out_order_no"])
    if (split is None or split["transaction_id"] != request.query.get("transaction_id")
            or not caller.sees_store(split["sub_mchid"])):
        raise ResourceNotExists("split_not_found")
    if split["state"] in ("PREPARED", "PROCESSING"):
        await splits.sync(svc, caller.mall_id, sub_mchid, split["out_order_no"])
        async with svc.pool.acquire() as conn:
            split = await repo.split_order(conn, caller.mall_id, sub_mchid, split["out_order_no"])
    return json_response(split["result"] or splits.split_json(split))


@routes.post("/v3/profitsharing/orders/unfreeze")
async def unfreeze(request: web.Request) -> web.Response:
    svc, caller = services_of(request), _mall_app(request)
    body = _object(await json_body(request))
    sub_mchid = _field(body, "sub_mchid", MCHID_RE)
    transaction_id = _field(body, "transaction_id", re.compile(r"[0-9]{1,32}"))
    out_order_no = _field(body, "out_order_no", OUT_NO_RE)
    description = body.get("description")
    if not isinstance(description, str) or not 1 <= len(description) <= DESCRIPTION_CHARS_MAX:
        raise ParamError("description", "required")
    trade = await _trade(svc, caller, sub_mchid, transaction_id)
    key = (caller.mall_id, sub_mchid, trade["out_trade_no"])
    async with svc.pool.acquire() as conn, conn.transaction():
        split = await splits.prepare(
            svc, conn, key=key, transaction_id=transaction_id, out_order_no=out_order_no, kind="unfreeze",
            purpose="api", parts=[], request_hash=request_hash(body), client_id=caller.client_id)
    if split["state"] == "PREPARED":
        split = await splits.submit(svc, split)
    return json_response(split["result"] or splits.split_json(split))


@routes.get("/v3/profitsharing/transactions/{transaction_id}/amounts")
async def unsplit_amount(request: web.Request) -> web.Response:
    svc, caller = services_of(request), caller_of(request)
    transaction_id = request.match_info["transaction_id"]
    async with svc.pool.acquire() as conn:
        row = await repo.funds_of_transaction(conn, caller.mall_id, transaction_id)
    if row is None or not caller.sees_store(row["sub_mchid"]):
        raise OrderNotExist("order_not_paid")
    funds = repo.funds_from_row(row)
    # WeChat's unsplit_amount is what is still frozen (to split or to unfreeze); what the
    # mall may still split within the cap, less what is kept for the gateway's own
    # splits (guide reward, commission), is the mall's own field beside it.
    return json_response({"transaction_id": transaction_id,
                          "unsplit_amount": 0 if funds.unfrozen else funds.frozen_fen,
                          "mall_info": {"splittable_amount": funds.splittable_fen,
                                        "set_aside_amount": funds.set_aside_fen}})


@routes.get("/v3/profitsharing/merchant-configs/{sub_mchid}")
async def merchant_config(request: web.Request) -> web.Response:
    svc, caller = services_of(request), caller_of(request)
    async with svc.pool.acquire() as conn:
        tenant = await tenants_repo.tenant(conn, caller.mall_id, request.match_info["sub_mchid"])
    if tenant is None or not caller.sees_store(tenant.sub_mchid):
        raise ResourceNotExists("tenant_not_found")
    # What the channel will actually accept: the lower of the contract's cap and its own.
    channel = await channel_caps.refresh(svc, caller.mall_id, tenant.sub_mchid)
    max_ratio = tenant.max_ratio_bps if channel is None else min(tenant.max_ratio_bps, channel)
    return json_response({"sub_mchid": tenant.sub_mchid, "max_ratio": max_ratio})


@routes.post("/v3/profitsharing/receivers/add")
async def add_receiver(request: web.Request) -> web.Response:
    svc, caller = services_of(request), _mall_app(request)
    body = _object(await json_body(request))
    sub_mchid = _field(body, "sub_mchid", MCHID_RE)
    name = body.get("name")
    if name is not None:
        # Encrypted by the client with the gateway's public key, as WeChat asks.
        name = signing.oaep_decrypt(svc.identity.private_key, name) if isinstance(name, str) else None
        if name is None:
            raise ParamError("name", "not_decryptable", "name must be encrypted with the gateway public key")
    added = await receivers_service.add_receiver(svc, caller.mall_id, sub_mchid, body.get("type"),
                                                 body.get("account"), name, body.get("relation_type"))
    return json_response(added)


@routes.post("/v3/profitsharing/receivers/delete")
async def delete_receiver(request: web.Request) -> web.Response:
    svc, caller = services_of(request), _mall_app(request)
    body = _object(await json_body(request))
    sub_mchid = _field(body, "sub_mchid", MCHID_RE)
    async with svc.pool.acquire() as conn:
        row = await guides_repo.delete_receiver(conn, caller.mall_id, sub_mchid, body.get("type"),
                                                body.get("account"), svc.clock())
    if row is None:
        raise ResourceNotExists("receiver_not_found")
    return json_response({"sub_mchid": sub_mchid, "type": row["type"], "account": row["account"]})
