"""Notifications (payments, refunds, 分账动账), delivered the way WeChat Pay delivers them.

One background task per event: wait `notify_delay_ms`, POST the signed, encrypted body to
the order's notify_url, and on anything but 200/204 retry on WeChat's schedule (scaled by
`retry_time_scale`) until it is delivered or the schedule runs out. The body (event id,
ciphertext) stays the same across attempts; each attempt carries a fresh timestamp, nonce
and signature, as WeChat's do.

Everything is bounded: events in flight (`notify_pending_max`), attempts running at once
(`notify_concurrency_max`), each attempt's time (`notify_timeout_s`), the delivery log
(`notify_log_entries_max`). The tasks belong to the app: started with it, cancelled with it.
"""

from __future__ import annotations

import asyncio
import random
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import aiohttp
import structlog

from gateway import signing
from emulator.auth import sign_headers
from emulator.config import EmulatorConfig
from emulator.state import Order, new_event_id
from emulator.wire import format_time, json_bytes

log = structlog.get_logger(__name__)

EVENT_TRANSACTION_SUCCESS = "TRANSACTION.SUCCESS"
SUMMARY_TRANSACTION_SUCCESS = "支付成功"
EVENT_REFUND_SUCCESS = "REFUND.SUCCESS"
EVENT_REFUND_ABNORMAL = "REFUND.ABNORMAL"
EVENT_PROFITSHARING_SUCCESS = "PROFITSHARING.SUCCESS"
EVENT_PROFITSHARING_RETURN = "PROFITSHARING.RETURN"
# (event_type -> summary, original_type); original_type doubles as associated_data, as WeChat's does.
EVENTS: dict[str, tuple[str, str]] = {
    EVENT_TRANSACTION_SUCCESS: (SUMMARY_TRANSACTION_SUCCESS, "transaction"),
    EVENT_REFUND_SUCCESS: ("退款成功", "refund"),
    EVENT_REFUND_ABNORMAL: ("退款异常", "refund"),
    EVENT_PROFITSHARING_SUCCESS: ("分账", "profitsharing"),
    EVENT_PROFITSHARING_RETURN: ("分账回退", "profitsharing"),
}
RESOURCE_NONCE_CHARS = 12  # WeChat's resource nonces are 12 characters (AES-GCM's 96 bits)
DELIVERED_STATUSES = frozenset({200, 204})


@dataclass
class DeliveryRecord:
    """One event's delivery as operators see it at GET /sandbox/notifications."""

    event_id: str
    event_type: str
    sub_mchid: str
    out_trade_no: str
    notify_url: str
    attempts: int = 0
    delivered: bool = False
    gave_up: bool = False
    duplicates_sent: int = 0
    last_status: str | None = None  # HTTP status, "injected_failure", "timeout" or "unreachable"

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


class Notifier:
    def __init__(self, config: EmulatorConfig, clock: Callable[[], datetime], *,
                 signing_clock: Callable[[], datetime] | None = None):
        self._config = config
        self._clock = clock  # the events' times
        self._signing_clock = signing_clock or clock  # the signatures' freshness
        self._semaphore = asyncio.Semaphore(config.notify_concurrency_max)
        self._tasks: set[asyncio.Task] = set()
        self._log: OrderedDict[str, DeliveryRecord] = OrderedDict()
        self._session: aiohttp.ClientSession | None = None
        # Its own stream, seeded from the config's, so which attempts are dropped depends
        # on the seed alone, not on how many ids were drawn before.
        self._failure_rng = random.Random(config.rng.getrandbits(64))

    async def start(self) -> None:
        assert self._session is None, "started once"
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self._config.notify_timeout_s))

    async def stop(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None

    def has_capacity(self) -> bool:
        return len(self._tasks) < self._config.notify_pending_max

    def records(self) -> list[DeliveryRecord]:
        return list(self._log.values())

    def submit_transaction_success(self, order: Order, resource: dict[str, Any]) -> DeliveryRecord:
        """Schedule TRANSACTION.SUCCESS for a just-paid order; `resource` is its query JSON."""
        return self.submit(EVENT_TRANSACTION_SUCCESS, resource, sp_mchid=order.sp_mchid, sub_mchid=order.sub_mchid,
                           out_trade_no=order.out_trade_no, notify_url=order.notify_url)

    def submit(self, event_type: str, resource: dict[str, Any], *, sp_mchid: str, sub_mchid: str,
               out_trade_no: str, notify_url: str) -> DeliveryRecord:
        """Schedule one event; `out_trade_no` names the payment it concerns in the delivery log."""
        assert self._session is not None, "the notifier runs inside the app"
        assert self.has_capacity(), "callers check capacity before changing state"
        summary, original_type = EVENTS[event_type]
        body = self._event_body(sp_mchid, event_type, summary, original_type, resource)
        record = DeliveryRecord(
            event_id=body["id"], event_type=event_type, sub_mchid=sub_mchid,
            out_trade_no=out_trade_no, notify_url=notify_url,
        )
        self._remember(record)
        task = asyncio.create_task(self._deliver(record, json_bytes(body)), name=f"notify-{record.event_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return record

    def _event_body(self, sp_mchid: str, event_type: str, summary: str, original_type: str,
                    resource: dict[str, Any]) -> dict[str, Any]:
        merchant = self._config.credentials.merchants[sp_mchid]
        nonce = "".join(self._config.rng.choices(_ALPHANUMERIC, k=RESOURCE_NONCE_CHARS))
        ciphertext = signing.aes_gcm_encrypt(merchant.apiv3_key.reveal(), json_bytes(resource), nonce, original_type)
        return {
            "id": new_event_id(self._config.rng),
            "create_time": format_time(self._clock()),
            "event_type": event_type,
            "resource_type": "encrypt-resource",
            "summary": summary,
            "resource": {
                "algorithm": "AEAD_AES_256_GCM",
                "ciphertext": ciphertext,
                "nonce": nonce,
                "associated_data": original_type,
                "original_type": original_type,
            },
        }

    def _remember(self, record: DeliveryRecord) -> None:
        while len(self._log) >= self._config.notify_log_entries_max:
            self._log.popitem(last=False)
        self._log[record.event_id] = record

    async def _deliver(self, record: DeliveryRecord, body: bytes) -> None:
        config = self._config
        delays_s = [config.notify_delay_ms / 1000]
        delays_s += [delay * config.retry_time_scale for delay in config.notify_retry_schedule_s]
        for delay_s in delays_s:
            await asyncio.sleep(delay_s)
            record.attempts += 1
            if self._failure_rng.random() < config.notify_failure_rate:
                record.last_status = "injected_failure"
                continue
            if await self._post(record, body):
                record.delivered = True
                break
        else:
            record.gave_up = True
            log.warning("emulator.notify_gave_up", event_id=record.event_id, out_trade_no=record.out_trade_no,
                        attempts=record.attempts)
            return
        for _ in range(config.notify_duplicate_count):
            await self._post(record, body)
            record.duplicates_sent += 1
        log.info("emulator.notify_delivered", event_id=record.event_id, out_trade_no=record.out_trade_no,
                 attempts=record.attempts, duplicates_sent=record.duplicates_sent)

    async def _post(self, record: DeliveryRecord, body: bytes) -> bool:
        assert self._session is not None
        async with self._semaphore:
            headers = sign_headers(self._config.credentials, body, self._signing_clock())
            headers["Content-Type"] = "application/json; charset=utf-8"
            try:
                async with self._session.post(record.notify_url, data=body, headers=headers) as resp:
                    # Only the status matters; the receiver's body is not read (nor bounded).
                    record.last_status = str(resp.status)
                    return resp.status in DELIVERED_STATUSES
            except asyncio.TimeoutError:
                record.last_status = "timeout"
            except aiohttp.ClientError:
                record.last_status = "unreachable"
            return False


_ALPHANUMERIC = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
