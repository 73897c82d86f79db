"""The emulator's composition root: one aiohttp app standing in for WeChat Pay.

Middlewares, outermost first:
  1. `signed_answers` turns every outcome (answer, EmulatorError, HTTP error, crash) into
     WeChat's JSON and signs it with the platform key;
  2. `faults` adds `response_delay_ms` and answers `error_rate` of /v3 calls with
     500 SYSTEM_ERROR before anything is changed;
  3. `verify_request` checks the merchant's signature on /v3 calls.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timezone

import structlog
from aiohttp import web

from gateway.sandbox_clock import OFFSET_HEADER
from emulator import bills, businesscircle, keys, orders, profitsharing, receivers, refunds, return_orders, sandbox
from emulator.auth import API_PREFIX, NonceCache, request_verifier, sign_headers
from emulator.bill_book import BillState
from emulator.clock import SandboxClock
from emulator.config import EmulatorConfig
from emulator.funds import Funds
from emulator.jobs import DelayedJobs
from emulator.notify import Notifier
from emulator.points_book import PointsBook
from emulator.refund_book import RefundBook
from emulator.split_book import SplitBook
from emulator.state import OrderBook
from emulator.wire import EmulatorError, error_response

log = structlog.get_logger(__name__)

_HTTP_ERROR_CODES = {
    400: "PARAM_ERROR", 401: "SIGN_ERROR", 403: "NO_AUTH", 404: "NOT_FOUND",
    405: "INVALID_REQUEST", 413: "PARAM_ERROR", 429: "FREQUENCY_LIMITED",
}


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def create_emulator_app(config: EmulatorConfig, *, clock: Callable[[], datetime] = utc_now) -> web.Application:
    clock = SandboxClock(clock)  # POST /sandbox/clock moves it; everything here reads it
    app = web.Application(
        client_max_size=config.request_body_bytes_max,
        middlewares=[
            _signed_answers(config, clock),
            _faults(config),
            # Signatures carry the unmoved time on both sides: the sandbox clock moves
            # business time (payments, freezes, bills), never transport freshness.
            request_verifier(config.credentials, clock.base, config.signature_window_s,
                             NonceCache(config.nonce_cache_entries_max, config.signature_window_s)),
        ],
    )
    app[keys.CONFIG] = config
    app[keys.SANDBOX_CLOCK] = clock
    app[keys.CLOCK] = clock
    app[keys.ORDERS] = OrderBook(config.orders_max)
    app[keys.NOTIFIER] = Notifier(config, clock, signing_clock=clock.base)
    app[keys.FUNDS] = Funds(fee_rate_bps=config.fee_rate_bps, freeze_days=config.freeze_days,
                            trades_max=config.orders_max, merchants_max=config.merchants_max)
    app[keys.SPLITS] = SplitBook(orders_max=config.split_orders_max, relations_max=config.receivers_max,
                                 configs_max=config.merchants_max, max_ratio_bps_default=config.max_ratio_bps_default)
    app[keys.REFUNDS] = RefundBook(config.refunds_max)
    app[keys.JOBS] = DelayedJobs(config.jobs_pending_max)
    app[keys.POINTS] = PointsBook(config.points_notices_max, config.points_notify_failures,
                                  config.points_notify_lost_answers)
    app[keys.BILLS] = BillState()
    app[keys.BILLS].payouts.start(clock())
    app.cleanup_ctx.append(_notifier_ctx)
    app.cleanup_ctx.append(_jobs_ctx)
    for module in (orders, profitsharing, receivers, return_orders, refunds, sandbox, bills, businesscircle):
        app.add_routes(module.routes)
    return app


async def _notifier_ctx(app: web.Application) -> AsyncIterator[None]:
    notifier = app[keys.NOTIFIER]
    await notifier.start()
    yield
    await notifier.stop()


async def _jobs_ctx(app: web.Application) -> AsyncIterator[None]:
    yield
    await app[keys.JOBS].stop()  # before the notifier stops: a finishing job may still notify


def _signed_answers(config: EmulatorConfig, clock: SandboxClock):
    @web.middleware
    async def signed_answers(request: web.Request, handler) -> web.StreamResponse:
        try:
            response = await handler(request)
        except EmulatorError as exc:
            response = error_response(exc.status, exc.code, exc.message)
        except web.HTTPException as exc:
            code = _HTTP_ERROR_CODES.get(exc.status, "SYSTEM_ERROR" if exc.status >= 500 else "INVALID_REQUEST")
            response = error_response(exc.status, code, exc.reason)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("emulator.crash", path=request.path)
            response = error_response(500, "SYSTEM_ERROR", "系统错误")
        assert isinstance(response, web.Response) and isinstance(response.body, bytes), "answers are bytes"
        response.headers.update(sign_headers(config.credentials, response.body, clock.base()))
        response.headers[OFFSET_HEADER] = str(clock.offset_s)
        return response

    return signed_answers


def _faults(config: EmulatorConfig):
    @web.middleware
    async def faults(request: web.Request, handler) -> web.StreamResponse:
        if request.path.startswith(API_PREFIX):
            if config.response_delay_ms:
                await asyncio.sleep(config.response_delay_ms / 1000)
            if config.error_rate and config.rng.random() < config.error_rate:
                raise EmulatorError(500, "SYSTEM_ERROR", "系统错误 (injected)")
        return await handler(request)

    return faults


async def start_emulator(
    host: str, port: int, config: EmulatorConfig, *, clock: Callable[[], datetime] = utc_now
) -> web.AppRunner:
    """Serve the emulator inside the running loop (demo, load tests); `await runner.cleanup()` to stop."""
    runner = web.AppRunner(create_emulator_app(config, clock=clock), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    log.info("emulator.started", host=host, port=port)
    return runner


def run_emulator(host: str, port: int, config: EmulatorConfig, *, clock: Callable[[], datetime] = utc_now) -> None:
    """Serve the emulator until interrupted (`mallpay emulator`)."""
    log.info("emulator.starting", host=host, port=port)
    web.run_app(create_emulator_app(config, clock=clock), host=host, port=port, print=None, access_log=None)
