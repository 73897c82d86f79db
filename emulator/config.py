"""Every knob of the emulator, with units, and its defaults for a quiet, honest WeChat Pay."""

from __future__ import annotations

import os
import random
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace

from gateway.channel.credentials import EmulatorCredentials

# WeChat Pay's notification retry schedule after the first attempt: 15s/15s/30s/3m/10m/
# 20m/30m/30m/30m/60m/3h/3h/3h/6h/6h (SPEC 2.2), so at most 16 attempts per event.
WECHAT_NOTIFY_RETRY_SCHEDULE_S: tuple[float, ...] = (
    15, 15, 30, 180, 600, 1200, 1800, 1800, 1800, 3600, 10800, 10800, 10800, 21600, 21600,
)
BPS_WHOLE = 10_000  # basis points in one whole
LOOPBACK_HOSTS: tuple[str, ...] = ("127.0.0.1", "localhost", "::1", "[::1]")
ENV_PREFIX = "MALLPAY_EMULATOR_"


class EmulatorConfigError(ValueError):
    """A knob is out of range; the emulator must not start."""


@dataclass(frozen=True)
class EmulatorConfig:
    credentials: EmulatorCredentials

    # Notifications (TRANSACTION.SUCCESS) to the order's notify_url.
    notify_delay_ms: int = 200  # before the first attempt, as WeChat takes a moment too
    notify_failure_rate: float = 0.0  # chance an attempt is deliberately dropped (counted failed)
    notify_duplicate_count: int = 0  # extra deliveries after a success, each freshly signed
    notify_retry_schedule_s: tuple[float, ...] = WECHAT_NOTIFY_RETRY_SCHEDULE_S
    retry_time_scale: float = 1.0  # multiplies the retry schedule (0.001 in tests)
    notify_timeout_s: float = 5.0  # per attempt, as WeChat gives up on a slow receiver
    notify_concurrency_max: int = 16  # attempts in flight at once
    notify_pending_max: int = 10_000  # events not yet delivered or given up; beyond: 429 on pay
    notify_log_entries_max: int = 10_000  # delivery log kept for GET /sandbox/notifications
    # Plain-http notify_urls are accepted only towards these hosts (https: any host).
    notify_http_hosts: tuple[str, ...] = LOOPBACK_HOSTS

    # The API itself.
    response_delay_ms: int = 0  # added before every /v3 answer
    error_rate: float = 0.0  # share of /v3 calls answered 500 SYSTEM_ERROR before any change
    orders_max: int = 100_000  # beyond this the oldest order is forgotten
    signature_window_s: int = 300  # request timestamps further from the clock are refused
    nonce_cache_entries_max: int = 100_000  # replay protection memory
    request_body_bytes_max: int = 64 * 1024

    # Money (SPEC 3): each paid order pays WeChat's fee, rounded half up per order; an
    # order paid with settle_info.profit_sharing=true stays frozen (unsplit) until split
    # and unfrozen, or until `freeze_days` pass and the channel unfreezes it itself.
    fee_rate_bps: int = 60
    freeze_days: int = 30
    # Profit sharing (分账).
    split_after_payment_s: int = 60  # splits before this are refused "订单处理中" (retry later)
    split_finish_delay_ms: int = 500  # PROCESSING -> FINISHED
    split_failure_rate: float = 0.0  # share of receiver lines that end CLOSED (ACCOUNT_ABNORMAL)
    max_ratio_bps_default: int = 3000  # WeChat's default cap; POST /sandbox/merchant-configs changes it
    split_return_window_days: int = 180  # split returns are refused after this
    # 分账动账通知 go to a URL set in WeChat's merchant platform, not in the request;
    # None sends none. The gateway points it at its own /channel/wechatpay/notify.
    profitsharing_notify_url: str | None = None
    # Refunds.
    refund_finish_delay_ms: int = 500  # PROCESSING -> SUCCESS (or ABNORMAL)
    refund_abnormal_rate: float = 0.0  # share of refunds that end ABNORMAL instead of SUCCESS
    # Memory bounds for the money model.
    split_orders_max: int = 100_000  # split orders and split returns, each; oldest forgotten
    refunds_max: int = 100_000  # oldest forgotten
    receivers_max: int = 10_000  # receiver relations ever added, all stores; beyond: refused
    merchants_max: int = 10_000  # stores with a balance; payments for more are refused (429)
    jobs_pending_max: int = 10_000  # splits and refunds still PROCESSING; beyond: 429

    # Business-circle points: the first `points_notify_failures` calls fail before any
    # change (500); the next `points_notify_lost_answers` are recorded but answered 500,
    # as when WeChat's answer is lost on the way back.
    points_notify_failures: int = 0
    points_notify_lost_answers: int = 0
    points_notices_max: int = 100_000
    rng: random.Random = field(default_factory=random.Random)  # seed it for repeatable runs

    def __post_init__(self) -> None:
        for name in ("notify_failure_rate", "error_rate", "split_failure_rate", "refund_abnormal_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise EmulatorConfigError(f"{name} must be within 0..1")
        non_negative = (
            "notify_delay_ms", "notify_duplicate_count", "response_delay_ms", "retry_time_scale",
            "fee_rate_bps", "freeze_days", "split_after_payment_s", "split_finish_delay_ms",
            "split_return_window_days", "refund_finish_delay_ms", "points_notify_failures",
            "points_notify_lost_answers",
        )
        for name in non_negative:
            if getattr(self, name) < 0:
                raise EmulatorConfigError(f"{name} must not be negative")
        positive = (
            "notify_timeout_s", "notify_concurrency_max", "notify_pending_max", "notify_log_entries_max",
            "orders_max", "signature_window_s", "nonce_cache_entries_max", "request_body_bytes_max",
            "split_orders_max", "refunds_max", "receivers_max", "merchants_max", "jobs_pending_max",
        )
        for name in positive:
            if getattr(self, name) <= 0:
                raise EmulatorConfigError(f"{name} must be positive")
        if self.notify_duplicate_count > 100:
            raise EmulatorConfigError("notify_duplicate_count above 100 is a mistake, not a test")
        if any(delay < 0 for delay in self.notify_retry_schedule_s):
            raise EmulatorConfigError("notify_retry_schedule_s delays must not be negative")
        for name in ("fee_rate_bps", "max_ratio_bps_default"):
            if not 0 <= getattr(self, name) <= BPS_WHOLE:
                raise EmulatorConfigError(f"{name} must be within 0..{BPS_WHOLE}")
        url = self.profitsharing_notify_url
        if url is not None and not url.startswith(("http://", "https://")):
            raise EmulatorConfigError("profitsharing_notify_url must be an http(s) URL")

    def with_(self, **changes) -> "EmulatorConfig":
        return replace(self, **changes)


def emulator_config_from_env(credentials: EmulatorCredentials, env: Mapping[str, str] | None = None) -> EmulatorConfig:
    """Knobs from MALLPAY_EMULATOR_<FIELD> variables (e.g. MALLPAY_EMULATOR_ERROR_RATE=0.05);
    MALLPAY_EMULATOR_SEED seeds the random source."""
    env = os.environ if env is None else env
    values: dict = {}
    for f in fields(EmulatorConfig):
        key = ENV_PREFIX + f.name.upper()
        if f.name in ("credentials", "rng") or key not in env:
            continue
        raw = env[key]
        try:
            if f.type.startswith("tuple"):
                parts = [part.strip() for part in raw.split(",") if part.strip()]
                values[f.name] = tuple(float(p) if f.name.endswith("_s") else p for p in parts)
            elif f.type == "int":
                values[f.name] = int(raw)
            elif f.type == "float":
                values[f.name] = float(raw)
            elif f.type in ("str", "str | None"):
                values[f.name] = raw.strip() or None
        except ValueError:
            raise EmulatorConfigError(f"{key}: cannot read {raw!r} as {f.type}") from None
    seed = env.get(ENV_PREFIX + "SEED")
    if seed:
        values["rng"] = random.Random(seed)
    return EmulatorConfig(credentials=credentials, **values)
