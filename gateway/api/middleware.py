"""Middlewares, outermost first: request id + access log, response signing, errors,
authentication. Every response leaves signed; every error leaves as a WeChat body."""

from __future__ import annotations

import json
import time
import uuid
from concurrent.futures import Executor

import structlog
from aiohttp import web

from gateway import auth
from gateway.api import CALLER, SERVICES
from gateway.errors import ApiError, BodyTooLarge, ParamError, ResourceNotExists
from gateway.nonces import NonceBook
from gateway.wire import json_bytes

log = structlog.get_logger(__name__)

# Paths outside the client API: the channel's notifications (signed by WeChat Pay, not
# by a client) and the public discovery documents.
UNSIGNED_PREFIXES = ("/channel/", "/health", "/openapi.json")


@web.middleware
async def request_context(request: web.Request, handler):
    request_id = request.headers.get("Request-ID") or uuid.uuid4().hex
    structlog.contextvars.bind_contextvars(request_id=request_id)
    started = time.perf_counter()
    try:
        response = await handler(request)
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
    if not request.path.startswith("/channel/") and isinstance(response, web.Response):
        svc = request.app[SERVICES]
        await auth.sign_response(response, svc.identity, svc.signature_clock, request.app[SIGNING_EXECUTOR])
    return response


def error_response(error: ApiError) -> web.Response:
    body = {"code": error.code, "message": error.message, "detail": error.detail}
    return web.Response(status=error.status, body=json_bytes(body),
                        content_type="application/json", charset="utf-8")


@web.middleware
async def errors(request: web.Request, handler):
    try:
        return await handler(request)
    except ApiError as error:
        log.info("request_refused", code=error.code, reason=error.reason, status=error.status)
        return error_response(error)
    except web.HTTPRequestEntityTooLarge:
        return error_response(BodyTooLarge("body_too_large"))
    except web.HTTPException as exc:
        if exc.status == 404:
            return error_response(_not_found())
        if exc.status == 405:
            return error_response(ApiError("method_not_allowed", "method not allowed"))
        raise
    except Exception:
        log.exception("unhandled_error")
        body = {"code": "SYSTEM_ERROR", "message": "系统异常，请稍后重试", "detail": {}}
        return web.Response(status=500, body=json_bytes(body), content_type="application/json",
                            charset="utf-8")


def _not_found() -> ApiError:
    return ResourceNotExists("no_such_path", "no such resource")


@web.middleware
async def authenticate(request: web.Request, handler):
    if request.path.startswith(UNSIGNED_PREFIXES):
        return await handler(request)
    svc = request.app[SERVICES]
    request[CALLER] = await auth.authenticate(
        request, pool=svc.pool, keys=request.app[CLIENT_KEYS], nonces=request.app[NONCES], clock=svc.signature_clock,
        window_s=svc.settings.signature_window_s,
    )
    structlog.contextvars.bind_contextvars(client_id=request[CALLER].client_id)
    try:
        return await handler(request)
    finally:
        structlog.contextvars.unbind_contextvars("client_id")


CLIENT_KEYS = web.AppKey("client_keys", auth.ClientKeyCache)
NONCES = web.AppKey("nonces", NonceBook)
# Threads that make response signatures (MALLPAY_SIGNING_THREADS); None: on the event loop.
SIGNING_EXECUTOR = web.AppKey("signing_executor", Executor)


async def json_body(request: web.Request):
    """The parsed JSON body; PARAM_ERROR when it is not JSON (or nested too deep to parse)."""
    raw = await request.read()
    try:
        return json.loads(raw) if raw else None
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ParamError("body", "not_json", "request body is not valid JSON") from None
