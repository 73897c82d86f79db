"""Delivery of client notifications (SPEC 2.2), at least once, from the outbox.

Each worker claims a batch of due rows, encrypts each resource with the client's APIv3
key (AES-256-GCM), signs the body with the gateway key, POSTs it to the notify_url and
records the outcome. Failures retry on WeChat's schedule; after the last retry the row
is `dead` and shows in the operators' view. Several workers and processes run safely
side by side: rows are claimed with FOR UPDATE SKIP LOCKED and a lease, each process
only its own mall's rows. An acknowledged delivery is recorded by the worker's next claim
(the same statement), so delivering costs one transaction per claim, not one per row; a
process that stops before that leaves the row to be delivered again after its lease
(at least once, as before).
"""

from __future__ import annotations

import asyncio
from concurrent.futures import Executor
from datetime import timedelta

import aiohttp
import structlog
from cachetools import TTLCache

from gateway.auth import JSON_CONTENT_TYPE, serial_for_mode, signed_response_headers_async
from gateway.repo import clients as clients_repo
from gateway.repo import outbox as outbox_repo
from gateway.services.context import Services
from gateway.shapes.notifications import notification_body

log = structlog.get_logger(__name__)
LEASE_MARGIN_S = 5
ERROR_CHARS_MAX = 200
CLIENT_KEYS_CACHED_MAX = 10_000
IDLE_WORKER_POLL_FACTOR = 5


def lease_s(settings) -> float:
    """How long a claimed (or handed over) row is kept off other workers: one delivery's
    timeout and a margin."""
    return settings.outbox_delivery_timeout_s + LEASE_MARGIN_S


def next_attempt_delay_s(schedule_s: tuple[int, ...], attempts_done: int) -> int | None:
    """Delay before the next attempt after `attempts_done` failed ones; None: give up."""
    if attempts_done > len(schedule_s):
        return None
    return schedule_s[attempts_done - 1]


class OutboxDelivery:
    def __init__(self, svc: Services, session: aiohttp.ClientSession, signing_executor: Executor | None = None):
        self._svc = svc
        self._session = session
        self._signing_executor = signing_executor
        self._timeout = aiohttp.ClientTimeout(total=svc.settings.outbox_delivery_timeout_s)
        self.wakeup = asyncio.Event()
        # Clients' APIv3 keys and verification modes, so a notification costs no client
        # query; kept as long as client keys are (a removed client stops receiving within that time).
        self._client_keys = TTLCache(maxsize=CLIENT_KEYS_CACHED_MAX, ttl=svc.settings.client_key_cache_s)
        self._mall_id = svc.settings.sp_mchid
        # (event_id, delivered_at) acknowledged and not yet recorded: the next claim records them.
        self._acknowledged: list[tuple[int, object]] = []
        self._handed: set[asyncio.Task] = set()

    def pause_after(self, *, woken: bool):
        """The pause between passes, for gateway.background. After a batch shorter than
        `outbox_batch_max` nothing else was due, so the worker pauses until the next poll,
        or, when `woken`, until a payment (or the release of a held notification) sets
        `wakeup`: one worker per process is woken, so a payment costs one claim rather
        than one per worker."""
        poll_s = self._svc.settings.outbox_poll_interval_ms / 1000

        async def pause(delivered: int) -> None:
            if delivered >= self._svc.settings.outbox_batch_max:
                return
            if not woken:
                # The other workers are for backlogs and slow endpoints; found idle, they
                # look less often (the woken worker polls every `poll_s` as well).
                await asyncio.sleep(poll_s if delivered else poll_s * IDLE_WORKER_POLL_FACTOR)
                return
            try:
                async with asyncio.timeout(poll_s):
                    await self.wakeup.wait()
            except TimeoutError:
                pass
            self.wakeup.clear()

        return pause

    async def deliver_due(self) -> int:
        """One pass: record the deliveries acknowledged since the last pass, claim up to
        `outbox_batch_max` due rows (one statement) and try each once."""
        settings = self._svc.settings
        now = self._svc.clock()
        lease = timedelta(seconds=lease_s(settings))
        acknowledged, self._acknowledged = self._acknowledged, []
        try:
            async with self._svc.pool.acquire() as conn:
                rows = await outbox_repo.claim_due(conn, self._mall_id, now, now + lease,
                                                   settings.outbox_batch_max, acknowledged)
        except BaseException:
            self._acknowledged[:0] = acknowledged  # recorded by the next pass
            raise
        if rows:
            # Every row's attempt finishes (and records its outcome) before a failure of one
            # is raised to the loop's supervisor; an unrecorded row is retried after its lease.
            outcomes = await asyncio.gather(*(self._deliver(row) for row in rows), return_exceptions=True)
            for outcome in outcomes:
                if isinstance(outcome, BaseException):
                    raise outcome
        return len(rows)

    def hand_over(self, row) -> None:
        """Deliver `row` now, without a claim: for code whose own statement has just made
        the row due and leased it to this process (`next_attempt_at` = now + `lease_s`,
        RETURNING `outbox_repo.CLAIMED_COLUMNS`), such as the release of a held
        TRANSACTION.SUCCESS. Its outcome is recorded as a claimed row's is; if this process
        stops first, the row is claimed again when the lease runs out."""
        assert row["mall_id"] == self._mall_id, row["mall_id"]
        task = asyncio.create_task(self._deliver_handed(row))
        self._handed.add(task)
        task.add_done_callback(self._handed.discard)

    async def _deliver_handed(self, row) -> None:
        try:
            await self._deliver(row)
        except Exception:  # the row stays leased and is claimed again after the lease
            log.exception("handed_notification_failed", event_id=row["event_id"])

    async def flush(self) -> None:
        """Record acknowledged deliveries now (when the workers stop); deliveries handed
        over and still running are left to their lease."""
        for task in list(self._handed):
            task.cancel()
        acknowledged, self._acknowledged = self._acknowledged, []
        if acknowledged:
            async with self._svc.pool.acquire() as conn:
                await outbox_repo.mark_delivered(conn, self._mall_id, acknowledged)

    async def _deliver(self, row) -> None:
        error = await self._attempt(row)
        now = self._svc.clock()
        if error is None:
            self._acknowledged.append((row["event_id"], now))
            return
        attempts_done = row["attempts"] + 1
        delay_s = next_attempt_delay_s(self._svc.settings.notify_retry_schedule_s, attempts_done)
        dead = delay_s is None
        next_at = now + timedelta(seconds=delay_s or 0)
        async with self._svc.pool.acquire() as conn:
            await outbox_repo.mark_failed(conn, row["mall_id"], row["event_id"], error[:ERROR_CHARS_MAX],
                                          next_at, dead)
        log.info("notification_failed", event_id=row["event_id"], attempts=attempts_done,
                 dead=dead, error=error[:ERROR_CHARS_MAX])

    async def _keys_of(self, client_id: str) -> clients_repo.NotificationKeys | None:
        keys = self._client_keys.get(client_id)
        if keys is None:
            async with self._svc.pool.acquire() as conn:
                keys = await clients_repo.notification_keys(conn, client_id)
            if keys is not None:
                self._client_keys[client_id] = keys
        return keys

    async def _attempt(self, row) -> str | None:
        """None when the client acknowledged; else a short reason for operators."""
        keys = await self._keys_of(row["client_id"])
        if keys is None:
            return "client_removed"
        body = notification_body(row, keys.apiv3_key.reveal())
        headers = await signed_response_headers_async(self._svc.identity, body, self._svc.signature_clock,
                                                      self._signing_executor,
                                                      serial_for_mode(self._svc.identity, keys.verification))
        headers["Content-Type"] = JSON_CONTENT_TYPE
        try:
            async with self._session.post(row["notify_url"], data=body, headers=headers,
                                          timeout=self._timeout, allow_redirects=False) as response:
                await response.read()
                if response.status in (200, 204):
                    return None
                return f"http_{response.status}"
        except asyncio.TimeoutError:
            return "timeout"
        except aiohttp.ClientError as exc:
            return f"connection_error:{type(exc).__name__}"
