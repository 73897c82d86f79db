"""The OpenAPI 3 document of the gateway, served at /openapi.json.

Written by hand next to the routes; `tests/contract/test_openapi.py` checks that every
route the app serves is documented and every documented path is served.
"""

from __future__ import annotations

from aiohttp import web

from gateway.wire import json_bytes

routes = web.RouteTableDef()

ERROR = {"$ref": "#/components/schemas/Error"}
SIGNED = [{"wechatpay": []}]


def _op(summary: str, *, body: str | None = None, ok: int = 200, result: str | None = None,
        params: list[dict] | None = None) -> dict:
    op: dict = {"summary": summary, "security": SIGNED, "parameters": params or [], "responses": {
        str(ok): {"description": "success"} if result is None else {
            "description": "success",
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{result}"}}}},
        "400": {"description": "PARAM_ERROR / INVALID_REQUEST", "content": {"application/json": {"schema": ERROR}}},
        "401": {"description": "SIGN_ERROR", "content": {"application/json": {"schema": ERROR}}},
        "403": {"description": "NO_AUTH", "content": {"application/json": {"schema": ERROR}}},
    }}
    if body:
        op["requestBody"] = {"required": True, "content": {"application/json": {
            "schema": {"$ref": f"#/components/schemas/{body}"}}}}
    return op


def _param(name: str, where: str = "query") -> dict:
    return {"name": name, "in": where, "required": True, "schema": {"type": "string"}}


SCOPE = [_param("sp_mchid"), _param("sub_mchid")]

PATHS = {
    "/v3/pay/partner/transactions/jsapi": {"post": _op(
        "Create a mini-program (JSAPI) order for a store", body="JsapiOrder", result="PrepayResult")},
    "/v3/pay/partner/transactions/out-trade-no/{out_trade_no}": {"get": _op(
        "Query an order by out_trade_no", result="Transaction", params=[_param("out_trade_no", "path"), *SCOPE])},
    "/v3/pay/partner/transactions/id/{transaction_id}": {"get": _op(
        "Query an order by transaction_id", result="Transaction",
        params=[_param("transaction_id", "path"), *SCOPE])},
    "/v3/pay/partner/transactions/out-trade-no/{out_trade_no}/close": {"post": _op(
        "Close an unpaid order", body="CloseOrder", ok=204, params=[_param("out_trade_no", "path")])},
    "/v3/mall/tenants": {
        "post": _op("Onboard a store with its contract (admin)", body="Tenant", result="Tenant"),
        "get": _op("List the mall's stores", result="TenantPage"),
    },
    "/v3/mall/tenants/{sub_mchid}": {"get": _op("One store", result="Tenant",
                                                params=[_param("sub_mchid", "path")])},
    "/v3/mall/clients": {"post": _op("Register an API client with its public key (admin)",
                                     body="NewClient", result="ClientConfig")},
    "/v3/mall/clients/{mchid}/keys": {"post": _op("Add a key to a client (rotation)", body="NewKey",
                                                  params=[_param("mchid", "path")])},
    "/v3/mall/clients/{mchid}/keys/{serial_no}": {"delete": _op(
        "Revoke a client key", ok=204, params=[_param("mchid", "path"), _param("serial_no", "path")])},
    "/v3/mall/ledger/trial-balance": {"get": _op("Trial balance of the mall's ledger (finance)",
                                                 result="TrialBalance")},
    "/v3/mall/notifications": {"get": _op("Notification delivery counts and dead letters (admin)")},
    "/channel/wechatpay/notify": {"post": {
        "summary": "Payment notifications from WeChat Pay (signed by the channel, not a client)",
        "responses": {"204": {"description": "applied"}, "401": {"description": "rejected"},
                      "500": {"description": "not applied; the channel retries"}}}},
    "/openapi.json": {"get": {"summary": "This document", "responses": {"200": {"description": "OpenAPI 3"}}}},
    "/health": {"get": {"summary": "Liveness and database reachability",
                        "responses": {"200": {"description": "ok"}}}},
}

_AMOUNT = {"type": "object", "required": ["total"], "properties": {
    "total": {"type": "integer", "minimum": 1, "description": "fen"},
    "currency": {"type": "string", "enum": ["CNY"]}}}

SCHEMAS = {
    "Error": {"type": "object", "required": ["code", "message"], "properties": {
        "code": {"type": "string"}, "message": {"type": "string"}, "detail": {"type": "object"}}},
    "JsapiOrder": {"type": "object", "required": [
        "sp_appid", "sp_mchid", "sub_mchid", "description", "out_trade_no", "notify_url", "amount", "payer"],
        "properties": {
            "sp_appid": {"type": "string"}, "sp_mchid": {"type": "string"}, "sub_appid": {"type": "string"},
            "sub_mchid": {"type": "string"}, "description": {"type": "string", "maxLength": 127},
            "out_trade_no": {"type": "string", "pattern": "^[0-9A-Za-z_*-]{6,32}$"},
            "time_expire": {"type": "string", "format": "date-time"}, "attach": {"type": "string"},
            "notify_url": {"type": "string", "format": "uri"}, "goods_tag": {"type": "string"},
            "settle_info": {"type": "object", "properties": {"profit_sharing": {"type": "boolean"}}},
            "amount": _AMOUNT,
            "payer": {"type": "object", "properties": {"sp_openid": {"type": "string"},
                                                       "sub_openid": {"type": "string"}}},
            "mall_info": {"type": "object", "properties": {
                "guide_id": {"type": "string"}, "coupon_id": {"type": "string"},
                "original_total": {"type": "integer"}}},
        }},
    "PrepayResult": {"type": "object", "required": ["prepay_id"], "properties": {
        "prepay_id": {"type": "string"},
        "mall_info": {"type": "object", "properties": {"pay_params": {"type": "object"}}}}},
    "Transaction": {"type": "object", "properties": {
        "sp_appid": {"type": "string"}, "sp_mchid": {"type": "string"}, "sub_mchid": {"type": "string"},
        "out_trade_no": {"type": "string"}, "transaction_id": {"type": "string"},
        "trade_type": {"type": "string"}, "trade_state": {"type": "string",
                                                         "enum": ["NOTPAY", "SUCCESS", "CLOSED"]},
        "trade_state_desc": {"type": "string"}, "success_time": {"type": "string"},
        "amount": {"type": "object"}, "payer": {"type": "object"}, "mall_info": {"type": "object"}}},
    "CloseOrder": {"type": "object", "required": ["sp_mchid", "sub_mchid"], "properties": {
        "sp_mchid": {"type": "string"}, "sub_mchid": {"type": "string"}}},
    "Tenant": {"type": "object", "required": ["sub_mchid", "name"], "properties": {
        "sub_mchid": {"type": "string"}, "name": {"type": "string"}, "floor": {"type": "string"},
        "category": {"type": "string"}, "sub_appid": {"type": "string"},
        "contract": {"type": "object", "properties": {
            "commission_bps": {"type": "integer"}, "max_ratio_bps": {"type": "integer", "maximum": 3000},
            "fee_rate_bps": {"type": "integer"}, "freeze_days": {"type": "integer"},
            "guide_reward_bps": {"type": "integer"}, "auto_split": {"type": "boolean"}}}}},
    "TenantPage": {"type": "object", "properties": {
        "total_count": {"type": "integer"}, "data": {"type": "array", "items": {"$ref": "#/components/schemas/Tenant"}}}},
    "NewClient": {"type": "object", "required": ["role", "public_key"], "properties": {
        "role": {"type": "string", "enum": ["mall_app", "tenant", "finance", "admin"]},
        "sub_mchid": {"type": "string"}, "name": {"type": "string"},
        "public_key": {"type": "string", "description": "PEM"}}},
    "NewKey": {"type": "object", "required": ["public_key"], "properties": {"public_key": {"type": "string"}}},
    "ClientConfig": {"type": "object", "properties": {
        "mchid": {"type": "string"}, "sp_mchid": {"type": "string"}, "appid": {"type": "string"},
        "merchant_serial_no": {"type": "string"}, "apiv3_key": {"type": "string"},
        "public_key_id": {"type": "string"}, "public_key": {"type": "string"}}},
    "TrialBalance": {"type": "object", "properties": {
        "accounts": {"type": "array", "items": {"type": "object"}}, "totals": {"type": "object"},
        "balanced": {"type": "boolean"}}},
}

DOCUMENT = {
    "openapi": "3.0.3",
    "info": {"title": "Mall Pay gateway", "version": "0.1.0",
             "description": "WeChat Pay API v3 partner endpoints plus mall extensions. Every /v3 "
                            "request carries a WECHATPAY2-SHA256-RSA2048 Authorization header; "
                            "every response is signed with the gateway key."},
    "paths": PATHS,
    "components": {"schemas": SCHEMAS, "securitySchemes": {"wechatpay": {
        "type": "apiKey", "in": "header", "name": "Authorization",
        "description": 'WECHATPAY2-SHA256-RSA2048 mchid="…",nonce_str="…",signature="…",timestamp="…",serial_no="…"'}}},
}


@routes.get("/openapi.json")
async def document(_request: web.Request) -> web.Response:
    return web.Response(body=json_bytes(DOCUMENT), content_type="application/json", charset="utf-8")


@routes.get("/health")
async def health(request: web.Request) -> web.Response:
    from gateway.api import services_of
    async with services_of(request).pool.acquire() as conn:
        await conn.fetchval("SELECT 1")
    return web.Response(body=b'{"status":"ok"}', content_type="application/json", charset="utf-8")
