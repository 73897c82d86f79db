"""Middlewares, outermost first: request id + access log, response signing, errors, body
reading (type and time bounded), authentication, text checks of path and query. Every
response leaves signed; every error leaves as a WeChat body."""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from concurrent.futures import Executor
from dataclasses import dataclass

import structlog
from aiohttp import web

from gateway import auth
from gateway.api import CALLER, SERVICES
from gateway.api import validation
from gateway import domain_errors as domain
from gateway.db import CONNECTION_BROKEN, DATABASE_UNAVAILABLE
from gateway import errors as request_errors
from gateway.nonces import NonceBook, RequestNonce
from gateway.services import own_bills
from gateway.wire import json_bytes
from splitting.rules import SplitRefused

log = structlog.get_logger(__name__)

# Paths outside the client API: the channel's notifications (signed by WeChat Pay, not
# by a client) and the public discovery documents.
UNSIGNED_PREFIXES = ("/channel/", "/health", "/openapi.json")
CLIENT_API_PREFIX = "/v3/"
# A client's Request-ID is echoed and logged only when it is short and plain; anything
# else (kilobytes, control characters, undecodable bytes) is replaced by our own.
REQUEST_ID_RE = re.compile(r"[0-9A-Za-z._:-]{1,64}")
RETRY_AFTER_S = 1
SYSTEM_ERROR_BODY = b'{"code":"SYSTEM_ERROR","message":"system error","detail":{}}'


REQUEST_ID = web.RequestKey("request_id", str)


def request_id_of(request: web.Request) -> str:
    sent = request.headers.get("Request-ID", "")
    return sent if REQUEST_ID_RE.fullmatch(sent) else uuid.uuid4().hex


@web.middleware
async def request_context(request: web.Request, handler):
    request_id = request[REQUEST_ID] = request_id_of(request)
    structlog.contextvars.bind_contextvars(request_id=request_id)
    started = time.perf_counter()
    try:
        response = await handler(request)
        if not response.prepared:
            response.headers["Request-ID"] = request_id
        # The route template, not the raw path: paths may carry a shopper's openid.
        log.info("request", method=request.method, route=_route_of(request), status=response.status,
                 duration_ms=round((time.perf_counter() - started) * 1000, 2))
        return response
    finally:
        structlog.contextvars.unbind_contextvars("request_id")


def _route_of(request: web.Request) -> str:
    route = request.match_info.route
    resource = route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def sign_responses(request: web.Request, handler):
    response = await handler(request)
    # The channel does not verify what the gateway answers to its notifications.
    if not request.path.startswith("/channel/") and isinstance(response, web.Response) and not response.prepared:
        svc = request.app[SERVICES]
        await auth.sign_response(response, svc.identity, svc.signature_clock, request.app[SIGNING_EXECUTOR],
                                 answering_serial(request))
    return response


SIGNED_WITH_CERTIFICATE = "signed_with_certificate"


def signed_with_certificate(handler):
    """Marks a handler whose answers always name the gateway's certificate (/v3/certificates:
    an SDK checks the download against the certificate inside it)."""
    setattr(handler, SIGNED_WITH_CERTIFICATE, True)
    return handler


def answering_serial(request: web.Request) -> str:
    """The name of the gateway's key the answer to `request` carries in Wechatpay-Serial."""
    identity = request.app[SERVICES].identity
    if getattr(request.match_info.handler, SIGNED_WITH_CERTIFICATE, False):
        return identity.certificate_serial
    return auth.answering_serial(identity, request.headers.get("Wechatpay-Serial"), request.get(CALLER))


@dataclass(frozen=True, slots=True)
class WeChatError:
    status: int
    code: str
    message: str  # WeChat's generic text, when the refusal has no message of its own


# The one place refusals become WeChat's answers: the nearest listed class of the exception
# (its own, else a base class) decides status, code and generic message.
WECHAT_ERRORS: dict[type[Exception], WeChatError] = {
    # the domain's (gateway.domain_errors and the cores')
    domain.InvalidField: WeChatError(400, "PARAM_ERROR", "参数错误"),
    domain.Refused: WeChatError(400, "INVALID_REQUEST", "无效请求"),
    SplitRefused: WeChatError(400, "INVALID_REQUEST", "无效请求"),
    domain.NotPermitted: WeChatError(403, "NO_AUTH", "商户无权限"),
    domain.NotFound: WeChatError(404, "RESOURCE_NOT_EXISTS", "资源不存在"),
    domain.InProgress: WeChatError(409, "INVALID_REQUEST", "请求处理中，请稍后重试"),
    domain.ChannelUnavailable: WeChatError(500, "SYSTEM_ERROR", "系统异常，请稍后重试"),
    own_bills.NoStatement: WeChatError(400, "NO_STATEMENT_EXIST", "账单文件不存在"),
    own_bills.NotReady: WeChatError(400, "STATEMENT_CREATING", "账单生成中，请在账单日次日再下载"),
    # the request's own (gateway.errors)
    request_errors.SignError: WeChatError(401, "SIGN_ERROR", "签名错误"),
    request_errors.BodyTooLarge: WeChatError(413, "PARAM_ERROR", "请求体过大"),
    request_errors.BodyReadTimeout: WeChatError(408, "PARAM_ERROR", "请求体读取超时"),
    request_errors.UnsupportedContentType: WeChatError(400, "PARAM_ERROR", "Content-Type 必须为 application/json"),
    request_errors.DatabaseUnavailable: WeChatError(503, "SYSTEM_ERROR", "系统繁忙，请稍后重试"),
}
# WeChat names a missing order with its own code; any other missing thing is a resource.
NOT_FOUND_BY_WHAT = {"order": WeChatError(404, "ORDER_NOT_EXIST", "订单不存在")}
REFUSALS = tuple(WECHAT_ERRORS)  # what the gateway refuses as expected


@dataclass(frozen=True, slots=True)
class WeChatAnswer:
    status: int
    code: str
    message: str
    detail: dict
    reason: str  # for the log


def wechat_answer(refusal: Exception) -> WeChatAnswer:
    """`refusal` (one of REFUSALS) as the WeChat error the client receives."""
    kind = next(WECHAT_ERRORS[k] for k in type(refusal).__mro__ if k in WECHAT_ERRORS)
    if isinstance(refusal, domain.NotFound):
        kind = NOT_FOUND_BY_WHAT.get(refusal.what, kind)
    if isinstance(refusal, SplitRefused):
        reason, message, detail = refusal.code, refusal.message, {"reason": refusal.code, **refusal.detail}
    else:
        reason, message, detail = refusal.reason, refusal.message, refusal.detail
    return WeChatAnswer(kind.status, kind.code, message or kind.message, detail, reason)


def error_response(answer: WeChatAnswer) -> web.Response:
    """The WeChat-style body of `answer`. Never fails: a detail that cannot be encoded as
    UTF-8 JSON is escaped, and failing that the answer is a fixed SYSTEM_ERROR body."""
    body = {"code": answer.code, "message": answer.message, "detail": answer.detail}
    try:
        data = json_bytes(body)
    except (TypeError, ValueError):  # a lone surrogate (UnicodeEncodeError) or an odd detail value
        try:
            data = json.dumps(body, ensure_ascii=True, default=str, separators=(",", ":")).encode()
        except (TypeError, ValueError):
            return web.Response(status=500, body=SYSTEM_ERROR_BODY, content_type="application/json",
                                charset="utf-8")
    return web.Response(status=answer.status, body=data, content_type="application/json", charset="utf-8")


def refusal_response(refusal: Exception) -> web.Response:
    answer = wechat_answer(refusal)
    log.info("request_refused", code=answer.code, reason=answer.reason, status=answer.status)
    return error_response(answer)


@web.middleware
async def errors(request: web.Request, handler):
    try:
        return await handler(request)
    except REFUSALS as refusal:
        return refusal_response(refusal)
    except web.HTTPRequestEntityTooLarge:
        return refusal_response(request_errors.BodyTooLarge("body_too_large"))
    except web.HTTPException as exc:
        if exc.status == 404:
            return refusal_response(_not_found())
        if exc.status == 405:
            return refusal_response(domain.Refused("method_not_allowed", "method not allowed"))
        raise
    except DATABASE_UNAVAILABLE as exc:
        # Not a bug: the database restarts, dropped this connection or is saturated. The
        # request's transaction did not commit (or committed once; a retry finds it).
        log.warning("database_unavailable", error=type(exc).__name__, exc_info=isinstance(exc, CONNECTION_BROKEN))
        response = refusal_response(request_errors.DatabaseUnavailable("database_unavailable"))
        response.headers["Retry-After"] = str(RETRY_AFTER_S)
        return response
    except Exception:
        log.exception("unhandled_error")
        body = {"code": "SYSTEM_ERROR", "message": "系统异常，请稍后重试", "detail": {}}
        return web.Response(status=500, body=json_bytes(body), content_type="application/json",
                            charset="utf-8")


@web.middleware
async def read_body(request: web.Request, handler):
    """Read the whole body up front, within `body_read_timeout_s`: a client that declares
    a body and sends it slowly is cut off (408, connection closed) instead of holding a
    connection. Client API bodies must be JSON, as WeChat Pay v3 requires."""
    if request.body_exists:
        if request.path.startswith(CLIENT_API_PREFIX) and request.content_type != "application/json":
            raise request_errors.UnsupportedContentType("content_type_not_json", field="Content-Type")
        timeout_s = request.app[SERVICES].settings.body_read_timeout_s
        try:
            async with asyncio.timeout(timeout_s):  # in this task: wait_for would start one per request
                await request.read()  # aiohttp keeps it for later reads
        except TimeoutError:
            return await _answer_and_close(request, refusal_response(
                request_errors.BodyReadTimeout("body_read_timeout", timeout_s=timeout_s)))
    return await handler(request)


def _not_found() -> domain.NotFound:
    return domain.NotFound("path", "no_such_path", "no such resource")


async def _answer_and_close(request: web.Request, response: web.Response) -> web.Response:
    """Send `response` now (signed, with the request id) and close the connection: left to
    aiohttp, it would linger up to 10 s reading the rest of a body that is not coming."""
    svc = request.app[SERVICES]
    await auth.sign_response(response, svc.identity, svc.signature_clock, request.app[SIGNING_EXECUTOR],
                             answering_serial(request))
    response.headers["Request-ID"] = request[REQUEST_ID]
    response.force_close()
    await response.prepare(request)
    await response.write_eof()
    request.protocol.force_close()
    return response


@web.middleware
async def authenticate(request: web.Request, handler):
    if request.path.startswith(UNSIGNED_PREFIXES):
        return await handler(request)
    svc = request.app[SERVICES]
    caller, nonce = await auth.authenticate(
        request, pool=svc.pool, keys=request.app[CLIENT_KEYS], clock=svc.signature_clock,
        window_s=svc.settings.signature_window_s,
    )
    book = request.app[NONCES]
    if not getattr(request.match_info.handler, SPENDS_NONCE, False):
        await book.record(svc.pool, nonce)  # before the handler: a replay has no effect
    request[CALLER], request[REQUEST_NONCE] = caller, nonce
    structlog.contextvars.bind_contextvars(client_id=caller.client_id)
    try:
        return await _recording_unspent_nonce(request, handler, book, svc.pool, nonce)
    finally:
        structlog.contextvars.unbind_contextvars("client_id")


async def _recording_unspent_nonce(request: web.Request, handler, book: NonceBook, pool, nonce: RequestNonce):
    """A `spends_nonce` handler that ended without the statement recording its nonce (a
    refusal before it, or the statement failed) had no effect; its nonce is recorded now,
    and a replay's refusal takes the place of whatever it answered."""
    try:
        response = await handler(request)
    except Exception:
        if not nonce.spent:
            await book.record(pool, nonce)
        raise
    if not nonce.spent:
        await book.record(pool, nonce)
    return response


SPENDS_NONCE = "spends_nonce"


def spends_nonce(handler):
    """Marks a handler whose first statement records the request's nonce (`nonce_of`, then
    `gateway.repo.clients.REQUEST_NONCE_CTES`), so the nonce costs no statement of its own.
    Such a handler has no effect before that statement: until it runs, a replay is not
    known to be one."""
    setattr(handler, SPENDS_NONCE, True)
    return handler


def nonce_of(request: web.Request) -> RequestNonce:
    return request[REQUEST_NONCE]


@web.middleware
async def check_text(request: web.Request, handler):
    validation.check_request_text(request.match_info, request.query)
    return await handler(request)


CLIENT_KEYS = web.AppKey("client_keys", auth.ClientKeyCache)
NONCES = web.AppKey("nonces", NonceBook)
REQUEST_NONCE = web.RequestKey("request_nonce", RequestNonce)
# Threads that make response signatures (MALLPAY_SIGNING_THREADS); None: on the event loop.
SIGNING_EXECUTOR = web.AppKey("signing_executor", Executor)


async def json_body(request: web.Request):
    """The parsed JSON body, checked by `validation.parse_json`; PARAM_ERROR when it is not
    JSON, nests too deep, or carries NUL or invalid Unicode."""
    return validation.parse_json(await request.read())
