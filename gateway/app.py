"""The composition root: `create_app(settings, ...)` wires the whole gateway.

Tests call the same function, handing in their own pool, clock or channel; everything
not handed in is built from settings and torn down with the app (aiohttp cleanup_ctx).
"""

from __future__ import annotations

import contextlib
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

import aiohttp
import structlog
from aiohttp import web

from gateway import auth
from gateway.api import (
    SERVICES, bills, certificates, channel_notify, health, mall, middleware, openapi, orders, profitsharing, refunds,
)
from gateway.background import BackgroundLoops
from gateway.channel.client import WeChatPayChannel
from gateway.channel.transport import SignedTransport
from gateway.channel.credentials import ensure_local_credentials, load_channel_credentials_from_env
from gateway.db import create_pool, ping
from gateway.health import HEALTH, CheckResult, HealthChecks
from gateway.identity import load_or_create_identity
from gateway.netguard import PublicOnlyResolver
from gateway.nonces import NonceBook
from gateway.outbox import OutboxDelivery
from gateway.repo import clients as clients_repo
from gateway.repo import jobs as jobs_repo
from gateway.sandbox_clock import OFFSET_HEADER as SANDBOX_OFFSET_HEADER, FollowedClock
from gateway.services import (
    coupon_campaigns, coupon_issuing, next_store, onboarding, payments, points, reconciliation, scheduler,
)
from gateway.services.context import Services
from gateway.settings import Settings

log = structlog.get_logger(__name__)
OUTBOX = web.AppKey("outbox", OutboxDelivery)
BACKGROUND = web.AppKey("background", BackgroundLoops)
HTTP_CONNECTIONS_MAX = 200


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def channel_credentials(settings: Settings):
    if settings.channel_is_emulator:
        credentials, _ = ensure_local_credentials(settings.data_dir, settings.sp_mchid)
        return credentials
    return load_channel_credentials_from_env()


def create_app(settings: Settings, *, database_url: str | None = None, pool=None, clock=utc_now,
               identity=None, channel=None, run_workers: bool = True) -> web.Application:
    """The gateway app. `database_url` (or `pool`) must be given: the CLI resolves the
    embedded database before calling this, tests hand in their own database."""
    assert database_url is not None or pool is not None
    app = web.Application(
        client_max_size=settings.body_bytes_max,
        middlewares=[middleware.request_context, middleware.sign_responses, middleware.errors,
                     middleware.read_body, middleware.authenticate, middleware.check_text],
    )
    identity = identity or load_or_create_identity(settings.gateway_private_key_file, settings.data_dir)
    app[middleware.CLIENT_KEYS] = auth.ClientKeyCache(settings.client_key_cache_s)
    app[BACKGROUND] = BackgroundLoops(settings.loop_backoff_initial_ms / 1000, settings.loop_backoff_max_ms / 1000)
    app[HEALTH] = HealthChecks(settings.health_check_timeout_ms / 1000)
    app[HEALTH].add("database", _database_answers)
    app[HEALTH].add("background_loops", _loops_running)
    app[HEALTH].add("dead_jobs", _dead_jobs, required=False)
    app[HEALTH].add("dead_points_syncs", _dead_points_syncs, required=False)
    app[HEALTH].add("dead_coupon_issues", _dead_coupon_issues, required=False)
    app[middleware.NONCES] = NonceBook(settings.nonce_batch_max)
    signing_executor = (ThreadPoolExecutor(settings.signing_threads, thread_name_prefix="mallpay-sign")
                        if settings.signing_threads else None)
    app[middleware.SIGNING_EXECUTOR] = signing_executor
    # With the emulator, business time follows its sandbox clock; signatures keep `clock`.
    followed = FollowedClock(clock) if settings.channel_is_emulator else None

    async def services_ctx(app: web.Application):
        # Everything made here is closed in reverse order on shutdown, and also when a
        # later step of the start fails (a database without the schema, say).
        async with contextlib.AsyncExitStack() as made:
            await _start_services(app, made)
            yield

    async def _start_services(app: web.Application, made: contextlib.AsyncExitStack) -> None:
        if signing_executor is not None:
            made.callback(signing_executor.shutdown)
        the_pool = pool
        if the_pool is None:
            the_pool = await create_pool(
                database_url, min_size=settings.db_pool_size_min, max_size=settings.db_pool_size_max,
                statement_timeout_ms=settings.db_statement_timeout_ms,
                acquire_timeout_s=settings.db_acquire_timeout_ms / 1000,
            )
            made.push_async_callback(the_pool.close)
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=HTTP_CONNECTIONS_MAX))
        made.push_async_callback(session.close)
        # Notifications go to addresses clients chose: public ones only (loopback for local runs).
        notify_session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(
            limit=HTTP_CONNECTIONS_MAX, resolver=PublicOnlyResolver(allow_loopback=settings.channel_is_emulator)))
        made.push_async_callback(notify_session.close)
        the_channel = channel or WeChatPayChannel(SignedTransport(
            channel_credentials(settings), settings.channel_url, session,
            settings.channel_timeout_s, clock,
            on_answer_headers=None if followed is None else (
                lambda headers: followed.follow_header(headers.get(SANDBOX_OFFSET_HEADER))),
        ))
        svc = Services(settings=settings, pool=the_pool, channel=the_channel, clock=followed or clock,
                       identity=identity, signature_clock=clock, coupons=next_store.CouponRuntime())
        # First out at shutdown: issuing in flight (its payments are committed).
        made.callback(lambda: [task.cancel() for task in list(svc.coupons.tasks)])
        await onboarding.ensure_mall(the_pool, settings.sp_mchid, settings.sp_appid, settings.mall_name)
        app[SERVICES] = svc
        app[OUTBOX] = OutboxDelivery(svc, notify_session, signing_executor)
        svc.coupons.wakeup = app[OUTBOX].wakeup  # a payment not held for coupons wakes it (payments.apply_trade)
        svc.coupons.hand_over = app[OUTBOX].hand_over  # a released notification goes out without a claim

    async def workers_ctx(app: web.Application):
        svc, loops, outbox = app[SERVICES], app[BACKGROUND], app[OUTBOX]
        for index in range(settings.outbox_workers):
            loops.start(f"outbox_{index}", outbox.deliver_due, outbox.pause_after(woken=index == 0))
        loops.start_every("unpaid_orders", settings.unpaid_check_interval_s,
                          lambda: payments.check_due_unpaid_orders(svc))
        loops.start_every("scheduler", settings.jobs_poll_interval_ms / 1000, lambda: scheduler.run_due_jobs(svc))
        loops.start_every("nonce_cleanup", settings.signature_window_s, lambda: _forget_old_nonces(svc))
        loops.start_every("reconciliation_plan", reconciliation.PLAN_INTERVAL_S,
                          lambda: reconciliation.plan_daily(svc))
        loops.start_every("coupon_model_refit", settings.coupon_model_refit_interval_s,
                          lambda: next_store.refit(svc))
        loops.start_every("coupon_campaigns_refresh", settings.coupon_campaigns_refresh_s,
                          lambda: next_store.refresh_campaigns(svc))
        loops.start_every("coupon_expiry", settings.coupon_expiry_interval_s,
                          lambda: coupon_campaigns.release_expired(svc))
        loops.start_every("coupon_issue_retry", settings.coupon_issue_poll_interval_ms / 1000,
                          lambda: coupon_issuing.retry_due(svc))
        loops.start_every("points_sync", settings.points_sync_poll_interval_ms / 1000, lambda: points.sync_due(svc))
        if followed is not None and channel is None:
            loops.start_every("sandbox_clock", settings.sandbox_clock_poll_s, lambda: _read_sandbox_clock(svc))
        yield
        await loops.stop()
        try:  # deliveries acknowledged since the last claim; else they are sent again after their lease
            await outbox.flush()
        except Exception:
            log.warning("outbox_flush_failed", exc_info=True)

    app.cleanup_ctx.append(services_ctx)
    if run_workers:
        app.cleanup_ctx.append(workers_ctx)
    for module in (orders, channel_notify, health, mall, openapi, profitsharing, refunds, bills, certificates):
        app.router.add_routes(module.routes)
    return app


@contextlib.asynccontextmanager
async def one_shot_services(settings: Settings, database_url: str, *, clock=utc_now):
    """Services for a command-line action (no HTTP server, no background workers)."""
    pool = await create_pool(database_url, min_size=1, max_size=2,
                             statement_timeout_ms=settings.db_statement_timeout_ms)
    try:
        async with aiohttp.ClientSession() as session:
            channel = WeChatPayChannel(SignedTransport(channel_credentials(settings), settings.channel_url,
                                                       session, settings.channel_timeout_s, clock))
            identity = load_or_create_identity(settings.gateway_private_key_file, settings.data_dir)
            await onboarding.ensure_mall(pool, settings.sp_mchid, settings.sp_appid, settings.mall_name)
            yield Services(settings=settings, pool=pool, channel=channel, clock=clock, identity=identity)
    finally:
        await pool.close()


def database_services(settings: Settings, pool, *, clock=utc_now) -> Services:
    """Services for work that needs only the database (command-line actions, seeding a
    mall): no payment channel and no gateway identity."""
    return Services(settings=settings, pool=pool, channel=None, clock=clock, identity=None)


async def _database_answers(app: web.Application) -> CheckResult:
    await ping(app[SERVICES].pool)
    return CheckResult(True)


async def _loops_running(app: web.Application) -> CheckResult:
    loops = app[BACKGROUND]
    return CheckResult(not loops.not_running(), {"loops": loops.as_json()})


async def _dead_jobs(app: web.Application) -> CheckResult:
    # Jobs that gave up wait for an operator (GET /v3/mall/jobs): counted, not a failure.
    async with app[SERVICES].pool.acquire() as conn:
        return CheckResult(True, {"count": await jobs_repo.dead_count(conn, app[SERVICES].settings.sp_mchid)})


async def _dead_points_syncs(app: web.Application) -> CheckResult:
    # Points changes WeChat never took wait for an operator (GET /v3/mall/points/syncs).
    svc = app[SERVICES]
    return CheckResult(True, {"count": await points.dead_sync_count(svc, svc.settings.sp_mchid)})


async def _dead_coupon_issues(app: web.Application) -> CheckResult:
    # Payments whose coupons could not be issued after every retry (in the log with why).
    svc = app[SERVICES]
    return CheckResult(True, {"count": await coupon_issuing.dead_intent_count(svc, svc.settings.sp_mchid)})


async def _forget_old_nonces(svc: Services) -> None:
    async with svc.pool.acquire() as conn:
        await clients_repo.forget_nonces_before(conn, auth.nonce_cutoff(svc.signature_clock(),
                                                                         svc.settings.signature_window_s))


async def _read_sandbox_clock(svc: Services) -> None:
    await svc.channel.read_sandbox_clock()
