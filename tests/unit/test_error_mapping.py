"""The domain's refusals become exactly the WeChat bodies clients have always received."""

from __future__ import annotations

import json

import pytest

from gateway import domain_errors as domain
from gateway import errors as request_errors
from gateway.api.middleware import WECHAT_ERRORS, error_response, wechat_answer
from gateway.services import own_bills
from splitting.rules import SplitRefused


def answer(refusal: Exception) -> tuple[int, dict]:
    response = error_response(wechat_answer(refusal))
    return response.status, json.loads(response.body)


CASES = [
    (domain.InvalidField("amount.total", "out_of_range", "amount.total must be 1 to 100 fen"),
     400, {"code": "PARAM_ERROR", "message": "amount.total must be 1 to 100 fen",
           "detail": {"field": "amount.total", "issue": "out_of_range"}}),
    (domain.InvalidField("openid", "invalid_openid"),
     400, {"code": "PARAM_ERROR", "message": "openid: invalid_openid",
           "detail": {"field": "openid", "issue": "invalid_openid"}}),
    (domain.Refused("order_paid", "the order is paid and cannot be closed"),
     400, {"code": "INVALID_REQUEST", "message": "the order is paid and cannot be closed",
           "detail": {"reason": "order_paid"}}),
    (domain.Refused("job_not_dead", state="done"),
     400, {"code": "INVALID_REQUEST", "message": "无效请求", "detail": {"reason": "job_not_dead", "state": "done"}}),
    (domain.KeyReused("out_trade_no"),
     400, {"code": "INVALID_REQUEST", "message": "out_trade_no was used with other fields",
           "detail": {"reason": "out_trade_no_reused"}}),
    (domain.ChannelRefused("order", "INVALID_REQUEST", reason="channel_rejected"),
     400, {"code": "INVALID_REQUEST", "message": "the payment channel refused the order",
           "detail": {"reason": "channel_rejected", "channel_code": "INVALID_REQUEST"}}),
    (domain.StoreBalanceInsufficient(available=3, needed=5),
     400, {"code": "INVALID_REQUEST", "message": "the store's available balance cannot carry this refund now",
           "detail": {"reason": "store_balance_insufficient", "available": 3, "needed": 5}}),
    (SplitRefused("ratio_exceeded", "over the cap", asked=10, allowed=5),
     400, {"code": "INVALID_REQUEST", "message": "over the cap",
           "detail": {"reason": "ratio_exceeded", "asked": 10, "allowed": 5}}),
    (domain.NotPermitted("role_cannot_close_orders"),
     403, {"code": "NO_AUTH", "message": "商户无权限", "detail": {"reason": "role_cannot_close_orders"}}),
    (domain.NotFound("order", "order_not_exist"),
     404, {"code": "ORDER_NOT_EXIST", "message": "订单不存在", "detail": {"reason": "order_not_exist"}}),
    (domain.NotFound("tenant"),
     404, {"code": "RESOURCE_NOT_EXISTS", "message": "资源不存在", "detail": {"reason": "tenant_not_found"}}),
    (domain.NotFound("split", message="no finished split with this out_order_no"),
     404, {"code": "RESOURCE_NOT_EXISTS", "message": "no finished split with this out_order_no",
           "detail": {"reason": "split_not_found"}}),
    (domain.InProgress("request_in_progress", "retry shortly"),
     409, {"code": "INVALID_REQUEST", "message": "retry shortly", "detail": {"reason": "request_in_progress"}}),
    (domain.ChannelUnavailable(),
     500, {"code": "SYSTEM_ERROR", "message": "系统异常，请稍后重试", "detail": {"reason": "channel_unavailable"}}),
    (own_bills.NoStatement(),
     400, {"code": "NO_STATEMENT_EXIST", "message": "账单文件不存在", "detail": {"reason": "no_statement"}}),
    (own_bills.NotReady(),
     400, {"code": "STATEMENT_CREATING", "message": "账单生成中，请在账单日次日再下载",
           "detail": {"reason": "statement_creating"}}),
    (request_errors.SignError("nonce_replayed", "nonce_str was already used"),
     401, {"code": "SIGN_ERROR", "message": "nonce_str was already used", "detail": {"reason": "nonce_replayed"}}),
    (request_errors.BodyTooLarge("body_too_large"),
     413, {"code": "PARAM_ERROR", "message": "请求体过大", "detail": {"reason": "body_too_large"}}),
    (request_errors.BodyReadTimeout("body_read_timeout", timeout_s=5),
     408, {"code": "PARAM_ERROR", "message": "请求体读取超时", "detail": {"reason": "body_read_timeout", "timeout_s": 5}}),
    (request_errors.UnsupportedContentType("content_type_not_json", field="Content-Type"),
     400, {"code": "PARAM_ERROR", "message": "Content-Type 必须为 application/json",
           "detail": {"reason": "content_type_not_json", "field": "Content-Type"}}),
    (request_errors.DatabaseUnavailable("database_unavailable"),
     503, {"code": "SYSTEM_ERROR", "message": "系统繁忙，请稍后重试", "detail": {"reason": "database_unavailable"}}),
]


@pytest.mark.parametrize("refusal, status, body", CASES,
                         ids=lambda c: type(c).__name__ if isinstance(c, Exception) else "")
def test_each_refusal_has_its_wechat_answer(refusal, status, body):
    assert answer(refusal) == (status, body)


def test_every_kind_of_refusal_is_mapped():
    kinds = {cls for module in (domain, request_errors, own_bills) for cls in vars(module).values()
             if isinstance(cls, type) and issubclass(cls, domain.DomainError)}
    unmapped = {k for k in kinds - {domain.DomainError} if not any(issubclass(k, m) for m in WECHAT_ERRORS)}
    assert unmapped == set()
    assert {type(case[0]) for case in CASES} >= kinds - {domain.DomainError}
