"""The OpenAPI 3 document of the gateway, served at /openapi.json.

Written by hand next to the routes; `tests/contract/test_openapi.py` checks that every
route the app serves is documented and every documented path is served.
"""

from __future__ import annotations

from aiohttp import web

from gateway.formats import OUT_TRADE_NO_RE
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


def _optional(name: str, description: str = "") -> dict:
    optional = {"name": name, "in": "query", "required": False, "schema": {"type": "string"}}
    return {**optional, "description": description} if description else optional


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
    "/v3/profitsharing/orders": {"post": _op(
        "Request a split of a paid order to registered receivers (cap-checked)", body="SplitOrderRequest",
        result="SplitOrder")},
    "/v3/profitsharing/orders/{out_order_no}": {"get": _op(
        "Query a split order", result="SplitOrder",
        params=[_param("out_order_no", "path"), _param("sub_mchid"), _param("transaction_id")])},
    "/v3/profitsharing/orders/unfreeze": {"post": _op(
        "Release what is left of an order to the store", body="UnfreezeRequest", result="SplitOrder")},
    "/v3/profitsharing/return-orders": {"post": _op(
        "Take a split back from a merchant receiver", body="ReturnRequest", result="SplitReturn")},
    "/v3/profitsharing/return-orders/{out_return_no}": {"get": _op(
        "Query a split return", result="SplitReturn",
        params=[_param("out_return_no", "path"), _param("sub_mchid"), _param("out_order_no")])},
    "/v3/profitsharing/transactions/{transaction_id}/amounts": {"get": _op(
        "Amount still frozen (unsplit_amount); mall_info.splittable_amount: what the mall may still split "
        "within the cap, mall_info.set_aside_amount: kept for the guide reward and commission",
        params=[_param("transaction_id", "path")])},
    "/v3/profitsharing/receivers/add": {"post": _op("Add a merchant receiver for a store", body="Receiver")},
    "/v3/profitsharing/receivers/delete": {"post": _op("Delete a receiver of a store", body="Receiver")},
    "/v3/profitsharing/merchant-configs/{sub_mchid}": {"get": _op(
        "A store's maximum split ratio (1/10000)", params=[_param("sub_mchid", "path")])},
    "/v3/refund/domestic/refunds": {"post": _op(
        "Refund (partial, repeated); splits are returned or recorded as owed first", body="RefundRequest",
        result="Refund")},
    "/v3/refund/domestic/refunds/{out_refund_no}": {"get": _op(
        "Query a refund", result="Refund", params=[_param("out_refund_no", "path"), _param("sub_mchid")])},
    "/v3/mall/guides": {
        "post": _op("Register a shopping guide of a store (admin)", body="Guide"),
        "get": _op("List the mall's guides"),
    },
    "/v3/mall/tenants/{sub_mchid}/contract": {"patch": _op(
        "Change a store's terms other than the cap (admin)", result="Tenant",
        params=[_param("sub_mchid", "path")])},
    "/v3/mall/tenants/{sub_mchid}/approvals": {
        "post": _op("Record a high-ratio approval and raise the store's cap (admin)", body="Approval",
                    params=[_param("sub_mchid", "path")]),
        "get": _op("The store's approvals (admin, finance)", params=[_param("sub_mchid", "path")]),
    },
    "/v3/mall/coupon-subsidies/payouts": {
        "post": _op("The mall pays a store what mall-funded coupons owe it (coupon_receivable → available), "
                    "idempotent by out_payout_no, never above the receivable (admin, finance)",
                    body="CouponSubsidyPayout", result="CouponSubsidyPayout"),
        "get": _op("Coupon-subsidy payouts, newest first (admin and finance: all, or one store's with sub_mchid; "
                   "a store: its own; another or an unknown store is missing, as for /v3/mall/payouts)", params=[_optional("sub_mchid"), _optional("limit"), _optional("offset")]),
    },
    "/v3/mall/points/syncs": {"get": _op(
        "Points changes told to WeChat's business-circle points API, in one state (default dead: WeChat never "
        "took them), with the last error (admin)",
        params=[_optional("state", "dead, pending or synced"), _optional("limit"), _optional("offset")])},
    "/v3/mall/points/syncs/{sync_id}/retry": {"post": _op(
        "Start a dead points sync over: sent again once, attempts from zero (admin)",
        params=[_param("sync_id", "path")])},
    "/v3/mall/tenants/{sub_mchid}/points-rule": {
        "put": _op("Set the store's points per paid yuan, 0 to 1000 (admin)", body="PointsRuleChange",
                   result="PointsRule", params=[_param("sub_mchid", "path")]),
        "get": _op("The points the store's payments earn per yuan: its rule or the mall's default "
                   "(admin, finance, the store)", result="PointsRule", params=[_param("sub_mchid", "path")]),
    },
    "/v3/mall/tenants": {
        "post": _op("Onboard a store with its contract (admin)", body="Tenant", result="Tenant"),
        "get": _op("List the mall's stores", result="TenantPage"),
    },
    "/v3/mall/tenants/{sub_mchid}": {"get": _op("One store", result="Tenant",
                                                params=[_param("sub_mchid", "path")])},
    "/v3/certificates": {"get": _op(
        "Download the gateway's platform certificate (下载平台证书) for SDKs in platform certificate mode: "
        "the gateway's signing key under its certificate serial, encrypted with the caller's APIv3 key; "
        "any client; always signed under the certificate serial", result="Certificates")},
    "/v3/mall/clients": {"post": _op("Register an API client with its public key (admin)",
                                     body="NewClient", result="ClientConfig")},
    "/v3/mall/clients/{mchid}/keys": {"post": _op("Add a key to a client (rotation)", body="NewKey",
                                                  params=[_param("mchid", "path")])},
    "/v3/mall/clients/{mchid}/keys/{serial_no}": {"delete": _op(
        "Revoke a client key", ok=204, params=[_param("mchid", "path"), _param("serial_no", "path")])},
    "/v3/mall/ledger/trial-balance": {"get": _op(
        "Trial balance of the mall's ledger, now or at an instant (finance, admin)", result="TrialBalance",
        params=[_optional("at", "ISO 8601 instant with offset; transfers created before it count")])},
    "/v3/mall/ledger/balances": {"get": _op(
        "Balances of named accounts, now or at an instant (finance, admin)",
        params=[_param("account"), _optional("at", "ISO 8601 instant with offset")])},
    "/v3/mall/ledger/export": {"get": _op(
        "Ledger transfers of a range as CSV, JSON Lines or beancount, streamed from one snapshot (finance, admin)",
        params=[_param("from"), _param("to"), _optional("format", "csv (default), jsonl or beancount")])},
    "/v3/mall/statements": {"get": _op(
        "A store's statement for a China-time day or range, JSON or WeChat trade-bill style CSV "
        "(a tenant: its own store only; finance, admin: any)",
        params=[_param("sub_mchid"), _param("date"), _optional("to", "last day, inclusive (YYYY-MM-DD)"),
                _optional("format", "json (default) or csv")])},
    "/v3/mall/notifications": {"get": _op("Notification delivery counts and dead letters (admin)")},
    "/v3/bill/tradebill": {"get": _op(
        "Apply for the trade bill of a China-time day (the caller's orders; a tenant: its store only)",
        result="BillLink", params=[_param("bill_date"), _optional("sub_mchid"), _optional("bill_type"),
                                   _optional("tar_type")])},
    "/v3/profitsharing/bills": {"get": _op(
        "Apply for the profit-sharing bill of a China-time day", result="BillLink",
        params=[_param("bill_date"), _optional("sub_mchid"), _optional("tar_type")])},
    "/v3/billdownload/file": {"get": _op(
        "Download a bill applied for (WeChat's CSV, optionally GZIP; SHA-1 = hash_value; only by the client "
        "that applied, within 10 minutes)", params=[_param("token")])},
    "/v3/mall/payouts": {"get": _op(
        "Payouts: money the channel paid from a store's balance to its bank (tenant: its own store only; "
        "finance, admin: any or all)", result="Payouts",
        params=[_optional("sub_mchid"), _param("from"), _param("to"), _optional("limit"), _optional("offset")])},
    "/v3/mall/reconciliations": {
        "get": _op("Reconciliation reports against the channel's bills, newest first (finance, admin)",
                   params=[_optional("date"), _optional("limit"), _optional("offset")]),
        "post": _op("Reconcile a past China-time day now: download its bills, book payouts, match (finance, admin)",
                    body="ReconcileRequest", result="Reconciliation")},
    "/v3/mall/reconciliations/{date}": {"get": _op(
        "One day's reconciliation report with every discrepancy, what happened and what to do (finance, admin)",
        result="Reconciliation", params=[_param("date", "path")])},
    "/v3/mall/jobs": {"get": _op("The scheduler's jobs in one state (default dead: gave up), with the last error (admin)",
                                 params=[{**_param("state"), "required": False}])},
    "/v3/mall/jobs/{job_id}": {"get": _op("One job and the operators' actions on it (admin)",
                                          params=[_param("job_id", "path")])},
    "/v3/mall/jobs/{job_id}/{action}": {"post": _op(
        "retry (start over) or resolve (settled by hand) a dead job, with a reason; recorded with who and when (admin)",
        body="JobAction", params=[_param("job_id", "path"), _param("action", "path")])},
    "/v3/mall/coupon-campaigns": {
        "post": _op("Create a coupon campaign (admin; a store for its own store-funded ones)",
                    body="CouponCampaign", result="CouponCampaign"),
        "get": _op("List coupon campaigns (a store sees its own)")},
    "/v3/mall/coupon-campaigns/{campaign_id}": {
        "get": _op("A coupon campaign with its committed budget", result="CouponCampaign",
                   params=[_param("campaign_id", "path")]),
        "patch": _op("Change budget, caps, end; pause, resume or end", body="CouponCampaignChange",
                     result="CouponCampaign", params=[_param("campaign_id", "path")])},
    "/v3/mall/coupon-campaigns/{campaign_id}/report": {"get": _op(
        "Attribution and uplift over the hold-out (window_days, default from settings)",
        params=[_param("campaign_id", "path")])},
    "/v3/mall/members/{openid}/coupons": {"get": _op(
        "A shopper's coupons (admin, mall_app)", params=[_param("openid", "path")])},
    "/v3/mall/members/{openid}/points": {"get": _op(
        "A shopper's mall points (admin, mall_app)", params=[_param("openid", "path")])},
    "/channel/wechatpay/notify": {"post": {
        "summary": "Payment notifications from WeChat Pay (signed by the channel, not a client)",
        "responses": {"204": {"description": "applied"}, "401": {"description": "rejected"},
                      "500": {"description": "not applied; the channel retries"}}}},
    "/openapi.json": {"get": {"summary": "This document", "responses": {"200": {"description": "OpenAPI 3"}}}},
    "/health": {"get": {"summary": "Liveness: the process is up (touches nothing else)",
                        "responses": {"200": {"description": "up"}}}},
    "/health/ready": {"get": {"summary": "Readiness: database reachable, every background loop running, "
                                         "plus informational checks (dead_jobs: jobs that gave up)",
                              "responses": {"200": {"description": "ready"},
                                            "503": {"description": "not ready; the body says which check failed"}}}},
}

_AMOUNT = {"type": "object", "required": ["total"], "properties": {
    "total": {"type": "integer", "minimum": 1, "description": "fen"},
    "currency": {"type": "string", "enum": ["CNY"]}}}

SCHEMAS = {
    "JobAction": {"type": "object", "required": ["reason"], "properties": {
        "reason": {"type": "string", "minLength": 1, "maxLength": 500}}},
    "SplitOrderRequest": {"type": "object", "required": [
        "sub_mchid", "transaction_id", "out_order_no", "receivers", "unfreeze_unsplit"], "properties": {
        "sub_mchid": {"type": "string"}, "appid": {"type": "string"}, "transaction_id": {"type": "string"},
        "out_order_no": {"type": "string"}, "unfreeze_unsplit": {"type": "boolean"},
        "receivers": {"type": "array", "maxItems": 50, "items": {"type": "object", "properties": {
            "type": {"type": "string", "enum": ["MERCHANT_ID", "PERSONAL_OPENID", "PERSONAL_SUB_OPENID"]},
            "account": {"type": "string"}, "amount": {"type": "integer"}, "description": {"type": "string"},
            "name": {"type": "string"}}}}}},
    "SplitOrder": {"type": "object", "properties": {
        "sub_mchid": {"type": "string"}, "transaction_id": {"type": "string"}, "out_order_no": {"type": "string"},
        "order_id": {"type": "string"}, "state": {"type": "string", "enum": ["PROCESSING", "FINISHED"]},
        "receivers": {"type": "array", "items": {"type": "object"}}}},
    "UnfreezeRequest": {"type": "object", "required": ["sub_mchid", "transaction_id", "out_order_no", "description"],
                        "properties": {"sub_mchid": {"type": "string"}, "transaction_id": {"type": "string"},
                                       "out_order_no": {"type": "string"}, "description": {"type": "string"}}},
    "ReturnRequest": {"type": "object", "required": [
        "sub_mchid", "out_order_no", "out_return_no", "return_mchid", "amount", "description"], "properties": {
        "sub_mchid": {"type": "string"}, "out_order_no": {"type": "string"}, "out_return_no": {"type": "string"},
        "return_mchid": {"type": "string"}, "amount": {"type": "integer"}, "description": {"type": "string"}}},
    "SplitReturn": {"type": "object", "properties": {
        "out_order_no": {"type": "string"}, "out_return_no": {"type": "string"}, "return_mchid": {"type": "string"},
        "amount": {"type": "integer"}, "result": {"type": "string", "enum": ["PROCESSING", "SUCCESS", "FAILED"]}}},
    "Receiver": {"type": "object", "required": ["sub_mchid", "type", "account"], "properties": {
        "sub_mchid": {"type": "string"}, "type": {"type": "string"}, "account": {"type": "string"},
        "name": {"type": "string", "description": "RSA-OAEP encrypted with the gateway public key"},
        "relation_type": {"type": "string"}}},
    "RefundRequest": {"type": "object", "required": ["sub_mchid", "out_refund_no", "amount"], "properties": {
        "sub_mchid": {"type": "string"}, "transaction_id": {"type": "string"}, "out_trade_no": {"type": "string"},
        "out_refund_no": {"type": "string"}, "reason": {"type": "string"}, "notify_url": {"type": "string"},
        "amount": {"type": "object", "required": ["refund", "total"], "properties": {
            "refund": {"type": "integer"}, "total": {"type": "integer"}, "currency": {"type": "string"}}}}},
    "Refund": {"type": "object", "properties": {
        "refund_id": {"type": "string"}, "out_refund_no": {"type": "string"}, "transaction_id": {"type": "string"},
        "out_trade_no": {"type": "string"}, "status": {"type": "string",
                                                       "enum": ["PROCESSING", "SUCCESS", "ABNORMAL"]},
        "amount": {"type": "object"}}},
    "Guide": {"type": "object", "required": ["guide_id", "sub_mchid", "openid", "name"], "properties": {
        "guide_id": {"type": "string"}, "sub_mchid": {"type": "string"}, "openid": {"type": "string"},
        "name": {"type": "string"}}},
    "Approval": {"type": "object", "required": ["approved_by", "reason", "max_ratio_bps"], "properties": {
        "approved_by": {"type": "string"}, "reason": {"type": "string"},
        "max_ratio_bps": {"type": "integer", "minimum": 3001, "maximum": 10000}}},
    "Error": {"type": "object", "required": ["code", "message"], "properties": {
        "code": {"type": "string"}, "message": {"type": "string"}, "detail": {"type": "object"}}},
    "JsapiOrder": {"type": "object", "required": [
        "sp_appid", "sp_mchid", "sub_mchid", "description", "out_trade_no", "notify_url", "amount", "payer"],
        "properties": {
            "sp_appid": {"type": "string"}, "sp_mchid": {"type": "string"}, "sub_appid": {"type": "string"},
            "sub_mchid": {"type": "string"}, "description": {"type": "string", "maxLength": 127},
            "out_trade_no": {"type": "string", "pattern": f"^{OUT_TRADE_NO_RE.pattern}$"},
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
    "CouponSubsidyPayout": {"type": "object", "required": ["sub_mchid", "amount", "out_payout_no"], "properties": {
        "sub_mchid": {"type": "string"}, "amount": {"type": "integer", "minimum": 1, "description": "fen"},
        "out_payout_no": {"type": "string"}, "paid_at": {"type": "string", "readOnly": True}}},
    "PointsRuleChange": {"type": "object", "required": ["points_per_yuan"], "additionalProperties": False,
                         "properties": {"points_per_yuan": {"type": "integer", "minimum": 0, "maximum": 1000}}},
    "PointsRule": {"type": "object", "properties": {
        "sub_mchid": {"type": "string"}, "points_per_yuan": {"type": "integer"},
        "source": {"type": "string", "enum": ["store_rule", "mall_default"]},
        "updated_at": {"type": "string", "nullable": True}}},
    "TenantPage": {"type": "object", "properties": {
        "total_count": {"type": "integer"}, "data": {"type": "array", "items": {"$ref": "#/components/schemas/Tenant"}}}},
    "NewClient": {"type": "object", "required": ["role", "public_key"], "properties": {
        "role": {"type": "string", "enum": ["mall_app", "tenant", "finance", "admin"]},
        "sub_mchid": {"type": "string"}, "name": {"type": "string"},
        "public_key": {"type": "string", "description": "PEM"},
        "verification": {"type": "string", "enum": ["public_key", "certificate"], "default": "public_key",
                         "description": "the name of the gateway's key its answers and notifications carry in "
                                        "Wechatpay-Serial when the request names none: PUB_KEY_ID_… or the "
                                        "serial of the certificate from /v3/certificates"}}},
    "NewKey": {"type": "object", "required": ["public_key"], "properties": {"public_key": {"type": "string"}}},
    "ClientConfig": {"type": "object", "properties": {
        "mchid": {"type": "string"}, "sp_mchid": {"type": "string"}, "appid": {"type": "string"},
        "merchant_serial_no": {"type": "string"}, "apiv3_key": {"type": "string"},
        "public_key_id": {"type": "string"}, "public_key": {"type": "string"},
        "verification": {"type": "string", "enum": ["public_key", "certificate"]}}},
    "Certificates": {"type": "object", "properties": {"data": {"type": "array", "items": {
        "type": "object", "properties": {
            "serial_no": {"type": "string", "description": "40 upper-case hex digits"},
            "effective_time": {"type": "string", "format": "date-time"},
            "expire_time": {"type": "string", "format": "date-time"},
            "encrypt_certificate": {"type": "object", "properties": {
                "algorithm": {"type": "string", "enum": ["AEAD_AES_256_GCM"]},
                "nonce": {"type": "string"},
                "associated_data": {"type": "string", "enum": ["certificate"]},
                "ciphertext": {"type": "string", "description": "the PEM certificate, AES-256-GCM under "
                                                                "the caller's APIv3 key, base64"}}}}}}}},
    "CouponCampaign": {"type": "object", "required": [
        "name", "sub_mchid", "funded_by", "discount", "budget", "per_shopper_max", "starts_at", "ends_at",
        "coupon_valid_seconds"], "properties": {
        "name": {"type": "string"}, "sub_mchid": {"type": "string", "description": "the redeeming store"},
        "funded_by": {"type": "string", "enum": ["store", "mall"]},
        "discount": {"type": "object", "required": ["type", "amount"], "properties": {
            "type": {"type": "string", "enum": ["amount_off", "threshold"]},
            "amount": {"type": "integer", "minimum": 1, "description": "fen"},
            "threshold": {"type": "integer", "description": "fen; threshold discounts only"}}},
        "budget": {"type": "object", "required": ["amount", "count"], "properties": {
            "amount": {"type": "integer", "description": "fen"}, "count": {"type": "integer"}}},
        "daily_count_max": {"type": "integer"}, "per_shopper_max": {"type": "integer"},
        "starts_at": {"type": "string", "format": "date-time"}, "ends_at": {"type": "string", "format": "date-time"},
        "coupon_valid_seconds": {"type": "integer"},
        "trigger": {"type": "object", "properties": {
            "stores": {"type": "array", "items": {"type": "string"}},
            "floors": {"type": "array", "items": {"type": "string"}},
            "categories": {"type": "array", "items": {"type": "string"}},
            "min_spend": {"type": "integer", "description": "fen"}}}}},
    "CouponCampaignChange": {"type": "object", "properties": {
        "budget": {"type": "object"}, "daily_count_max": {"type": "integer"},
        "per_shopper_max": {"type": "integer"}, "ends_at": {"type": "string", "format": "date-time"},
        "state": {"type": "string", "enum": ["active", "paused", "ended"]}}},
    "TrialBalance": {"type": "object", "properties": {
        "accounts": {"type": "array", "items": {"type": "object"}}, "totals": {"type": "object"},
        "balanced": {"type": "boolean"}}},
    "Payouts": {"type": "object", "properties": {"offset": {"type": "integer"}, "limit": {"type": "integer"},
        "data": {"type": "array", "items": {"type": "object", "properties": {
            "sub_mchid": {"type": "string"}, "payout_id": {"type": "string"},
            "amount": {"type": "integer", "description": "fen"}, "paid_at": {"type": "string"}}}}}},
    "BillLink": {"type": "object", "properties": {
        "download_url": {"type": "string"}, "hash_type": {"type": "string", "enum": ["SHA1"]},
        "hash_value": {"type": "string"}}},
    "ReconcileRequest": {"type": "object", "required": ["date"], "properties": {
        "date": {"type": "string", "format": "date", "description": "a past China-time day"}}},
    "Reconciliation": {"type": "object", "properties": {
        "date": {"type": "string"}, "state": {"type": "string", "enum": ["running", "done"]},
        "runs": {"type": "integer"}, "bills": {"type": "object", "description": "lines read per bill"},
        "counts": {"type": "object", "description": "per bill: matched, missing_ours, missing_channel, "
                                                    "amount_mismatch, status_mismatch, fee_mismatch"},
        "started_at": {"type": "string"}, "finished_at": {"type": "string", "nullable": True},
        "discrepancies": {"type": "array", "items": {"type": "object", "properties": {
            "bill": {"type": "string", "enum": ["trade", "profitsharing", "fundflow"]},
            "class": {"type": "string", "enum": ["missing_ours", "missing_channel", "amount_mismatch",
                                                 "status_mismatch", "fee_mismatch"]},
            "ref": {"type": "string"}, "sub_mchid": {"type": "string"}, "ours": {"type": "object", "nullable": True},
            "channel": {"type": "object", "nullable": True}, "what": {"type": "string"},
            "action": {"type": "string"}, "healed": {"type": "boolean"}}}}}},
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
