"""Expected failures, each with a stable code, turned into WeChat-style error bodies.

Services raise these in the domain's words; `api.middleware.errors` maps them to HTTP
(`{"code", "message", "detail"}`) in one place. Anything else is a bug: logged, and
answered as a bare SYSTEM_ERROR with no internals in the body.
"""

from __future__ import annotations


class ApiError(Exception):
    status = 400
    code = "INVALID_REQUEST"
    message = "无效请求"

    def __init__(self, reason: str, message: str | None = None, **detail):
        super().__init__(reason)
        self.reason = reason
        if message:
            self.message = message
        self.detail = {"reason": reason, **detail}


class ParamError(ApiError):
    code = "PARAM_ERROR"
    message = "参数错误"

    def __init__(self, field: str, issue: str, message: str | None = None):
        super().__init__(issue, message or f"{field}: {issue}", field=field)
        self.detail = {"field": field, "issue": issue}


class InvalidRequest(ApiError):
    """A well-formed request the current state refuses (reused key, paid order...)."""


class SignError(ApiError):
    status = 401
    code = "SIGN_ERROR"
    message = "签名错误"


class NoAuth(ApiError):
    status = 403
    code = "NO_AUTH"
    message = "商户无权限"


class OrderNotExist(ApiError):
    status = 404
    code = "ORDER_NOT_EXIST"
    message = "订单不存在"


class ResourceNotExists(ApiError):
    status = 404
    code = "RESOURCE_NOT_EXISTS"
    message = "资源不存在"


class Conflict(ApiError):
    """The same key is being processed right now; retrying shortly is safe."""

    status = 409
    code = "INVALID_REQUEST"
    message = "请求处理中，请稍后重试"


class FrequencyLimited(ApiError):
    status = 429
    code = "FREQUENCY_LIMITED"
    message = "频率超限"


class BodyTooLarge(ApiError):
    status = 413
    code = "PARAM_ERROR"
    message = "请求体过大"


class ChannelUnavailable(ApiError):
    """The payment channel failed or timed out; no money moved. Retrying the same request
    is safe: it carries on from where this one stopped."""

    status = 500
    code = "SYSTEM_ERROR"
    message = "系统异常，请稍后重试"


class DatabaseUnavailable(ApiError):
    """The database is away (restarting, connections dropped, pool exhausted); nothing was
    committed by this request, or it was committed once and a retry returns it."""

    status = 503
    code = "SYSTEM_ERROR"
    message = "系统繁忙，请稍后重试"


class BodyReadTimeout(ApiError):
    """The client declared a body and did not send it in time."""

    status = 408
    code = "PARAM_ERROR"
    message = "请求体读取超时"


class UnsupportedContentType(ApiError):
    """WeChat Pay v3 takes JSON bodies only (Content-Type: application/json)."""

    code = "PARAM_ERROR"
    message = "Content-Type 必须为 application/json"
