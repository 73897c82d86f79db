"""/v3/profitsharing: split orders, unfreeze, amounts, receivers, configs."""

from __future__ import annotations

from aiohttp import web

from gateway import signing
from gateway.api import caller_of, json_response, mall_app_of, services_of
from gateway.api.handlers import found_or_missing, mall_app_command
from gateway.api.middleware import json_body
from gateway.api.requests import store_query
from gateway.api.requests.profitsharing import (
    parse_receiver_add, parse_receiver_delete, parse_split, parse_unfreeze,
)
from gateway.domain_errors import NotFound
from gateway.services import profitsharing, receivers

routes = web.RouteTableDef()


@routes.post("/v3/profitsharing/orders")
async def create_split(request: web.Request) -> web.Response:
    return await mall_app_command(request, lambda body: parse_split(body, caller_of(request)),
                                  profitsharing.request_split)


@routes.get("/v3/profitsharing/orders/{out_order_no}")
async def query_split(request: web.Request) -> web.Response:
    return await found_or_missing(request, profitsharing.find_split, NotFound("split"), store_query(request),
                                  request.match_info["out_order_no"], request.query.get("transaction_id"))


@routes.post("/v3/profitsharing/orders/unfreeze")
async def unfreeze(request: web.Request) -> web.Response:
    return await mall_app_command(request, parse_unfreeze, profitsharing.request_unfreeze)


@routes.get("/v3/profitsharing/transactions/{transaction_id}/amounts")
async def unsplit_amount(request: web.Request) -> web.Response:
    return await found_or_missing(request, profitsharing.unsplit_amount, NotFound("order", "order_not_paid"),
                                  request.match_info["transaction_id"])


@routes.get("/v3/profitsharing/merchant-configs/{sub_mchid}")
async def merchant_config(request: web.Request) -> web.Response:
    return await found_or_missing(request, profitsharing.merchant_config, NotFound("tenant"),
                                  request.match_info["sub_mchid"])


@routes.post("/v3/profitsharing/receivers/add")
async def add_receiver(request: web.Request) -> web.Response:
    svc, caller = services_of(request), mall_app_of(request)
    sub_mchid, type_, account, name, relation_type = parse_receiver_add(
        await json_body(request), lambda ciphertext: signing.oaep_decrypt(svc.identity.private_key, ciphertext))
    return json_response(await receivers.add_receiver(svc, caller.mall_id, sub_mchid, type_, account, name,
                                                      relation_type))


@routes.post("/v3/profitsharing/receivers/delete")
async def delete_receiver(request: web.Request) -> web.Response:
    svc, caller = services_of(request), mall_app_of(request)
    sub_mchid, type_, account = parse_receiver_delete(await json_body(request))
    deleted = await receivers.delete_receiver(svc, caller.mall_id, sub_mchid, type_, account)
    if deleted is None:
        raise NotFound("receiver")
    return json_response(deleted)
