"""Every limit and default of the gateway, with units, read from the environment once.

Names follow the habit `thing_unit_max`. `Settings.from_env()` validates at start-up so a
misconfigured process refuses to start instead of failing on its first payment.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from urllib.parse import urlsplit

# WeChat Pay's documented notification retry schedule after the first attempt (SPEC 2.2).
NOTIFY_RETRY_SCHEDULE_S = (15, 15, 30, 180, 600, 1200, 1800, 1800, 1800, 3600, 10800, 10800, 10800, 21600, 21600)

CHANNEL_EMULATOR = "emulator"
CHANNEL_WECHATPAY = "wechatpay"


# Earlier names of settings, still read: the unpaid-order check was called "reconcile".
RENAMED_ENV = {
    "MALLPAY_RECONCILE_INTERVAL_S": "MALLPAY_UNPAID_CHECK_INTERVAL_S",
    "MALLPAY_RECONCILE_BATCH_MAX": "MALLPAY_UNPAID_CHECK_BATCH_MAX",
}


class SettingsError(ValueError):
    """A configuration value is missing or out of range; the process must not start."""


@dataclass(frozen=True)
class Settings:
    database_url: str | None = None
    data_dir: Path = field(default_factory=lambda: Path.cwd() / ".mallpay")
    host: str = "127.0.0.1"
    port: int = 8080
    migrate_on_start: bool = True
    serve_workers: int = 1
    # Where the channel reaches the gateway (its notifications). Empty: the address the
    # gateway listens on (host and port, also when --port changes them).
    public_url: str = ""
    gateway_private_key_file: Path | None = None
    sp_mchid: str = "1900000100"
    sp_appid: str = "wxmallpay00000001"
    mall_name: str = "Mall Pay demo mall"

    channel: str = CHANNEL_EMULATOR
    channel_url: str = "http://127.0.0.1:8090"
    channel_timeout_s: float = 10.0
    emulator_port: int = 8090

    signature_window_s: int = 300
    nonce_batch_max: int = 256
    # Threads that make the gateway's response and notification signatures; 0: on the
    # event loop. RSA signing releases the GIL, so a thread lets one process use a
    # second core for it.
    signing_threads: int = 0
    body_bytes_max: int = 64 * 1024

    db_pool_size_min: int = 2
    db_pool_size_max: int = 16
    db_statement_timeout_ms: int = 5_000
    db_acquire_timeout_ms: int = 5_000

    # Robustness: every background loop retries a failed pass after a backoff doubling
    # from the initial to the max; a request body must arrive within body_read_timeout_s.
    loop_backoff_initial_ms: int = 100
    loop_backoff_max_ms: int = 5_000
    health_check_timeout_ms: int = 2_000
    body_read_timeout_s: float = 10.0

    outbox_workers: int = 2
    outbox_batch_max: int = 32
    outbox_poll_interval_ms: int = 200
    outbox_delivery_timeout_s: float = 5.0
    notify_retry_schedule_s: tuple[int, ...] = NOTIFY_RETRY_SCHEDULE_S

    unpaid_order_query_after_s: int = 60
    query_sync_after_s: int = 5
    # The unpaid-order check (not reconciliation, which matches the channel's bills).
    unpaid_check_interval_s: float = 10.0
    unpaid_check_batch_max: int = 100
    order_expire_after_s: int = 2 * 3600

    # Splitting: the channel refuses splits for about a minute after payment; orders are
    # finished (commission split, rest unfrozen) this long before its auto-unfreeze.
    split_first_try_after_s: int = 65
    finish_before_unfreeze_s: int = 24 * 3600
    split_retry_s: int = 20
    # The channel's own cap per store (merchant-configs) is asked again once this old.
    channel_cap_fresh_s: int = 300
    # With the emulator as the channel: how often the gateway reads its sandbox clock.
    sandbox_clock_poll_s: float = 1.0
    jobs_batch_max: int = 32
    jobs_poll_interval_ms: int = 500
    job_attempts_max: int = 20
    job_retry_base_s: int = 30

    # Coupons (SPEC 7): K coupons at most per payment; issuing gets this long after the
    # payment commits before its notification goes out without coupons.
    coupons_per_payment_max: int = 3
    coupon_issue_budget_ms: int = 300
    coupon_issue_inflight_max: int = 64
    coupon_holdout_bps: int = 1000
    coupon_shopper_history_max: int = 50
    coupon_model_refit_interval_s: float = 3600.0
    coupon_model_history_days: int = 90
    coupon_model_payments_max: int = 100_000
    coupon_report_window_days: int = 7
    # Issuing that did not finish in its process (crash, error, out of time) is taken over
    # by a worker of any process this long after the payment's notification hold ends;
    # claimed with a lease, retried with backoff, `dead` after the last attempt.
    coupon_issue_retry_after_ms: int = 5000
    coupon_issue_poll_interval_ms: int = 1000
    coupon_issue_batch_max: int = 32
    coupon_issue_lease_s: int = 30
    coupon_issue_attempts_max: int = 8
    coupon_issue_retry_base_s: int = 5
    # How stale a process's list of campaigns may be (a payment no campaign could reward
    # costs issuing nothing); this process's own campaign changes are seen at once.
    coupon_campaigns_refresh_s: float = 5.0
    # Coupons expired unused give their amount back to their campaign's budget.
    coupon_expiry_interval_s: float = 60.0
    coupon_expiry_batch_max: int = 1000
    # Points: per paid yuan unless the store has its own rule; synced to WeChat.
    points_per_yuan_default: int = 1
    points_sync_batch_max: int = 32
    points_sync_poll_interval_ms: int = 500
    points_sync_attempts_max: int = 12
    points_sync_retry_base_s: int = 5

    # Reconciliation (SPEC 6): the channel's bills of day D (China time) are ready from
    # 10:00 on D+1; the daily run starts this many minutes after midnight China time on
    # D+1, retrying (job_retry_base_s backoff) while a bill is not ready yet.
    reconcile_daily: bool = True
    reconcile_at_minute: int = 10 * 60 + 30
    reconcile_stores_concurrency: int = 4  # fund-flow bills downloaded at once

    log_level: str = "info"
    client_key_cache_s: float = 5.0

    public_url_follows_listen: bool = field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.public_url:
            object.__setattr__(self, "public_url", listen_url(self.host, self.port))
            object.__setattr__(self, "public_url_follows_listen", True)

    @property
    def channel_is_emulator(self) -> bool:
        return self.channel == CHANNEL_EMULATOR

    def with_(self, **changes) -> "Settings":
        if self.public_url_follows_listen and "public_url" not in changes:
            changes["public_url"] = ""  # follow the new host and port
        return replace(self, **changes)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "Settings":
        env = dict(os.environ if env is None else env)
        for old, new in RENAMED_ENV.items():
            if old in env and new not in env:
                env[new] = env[old]
        values: dict = {}
        if env.get("DATABASE_URL"):
            values["database_url"] = env["DATABASE_URL"]
        for name, f in cls.__dataclass_fields__.items():
            key = "MALLPAY_" + name.upper()
            if key not in env or name == "database_url" or not f.init:
                continue
            raw = env[key]
            values[name] = _convert(key, raw, f.type)
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        if self.channel not in (CHANNEL_EMULATOR, CHANNEL_WECHATPAY):
            raise SettingsError(f"MALLPAY_CHANNEL must be {CHANNEL_EMULATOR} or {CHANNEL_WECHATPAY}")
        if urlsplit(self.channel_url).scheme not in ("http", "https"):
            raise SettingsError("MALLPAY_CHANNEL_URL must be an http(s) URL")
        if self.channel == CHANNEL_WECHATPAY and urlsplit(self.channel_url).scheme != "https":
            raise SettingsError("the real WeChat Pay channel is reached over https only")
        for f in fields(self):
            if f.type in ("int", "float"):
                _check_number(f.name, getattr(self, f.name))
        if not isinstance(logging.getLevelName(self.log_level.upper()), int):
            raise SettingsError(f"MALLPAY_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}")
        if self.db_pool_size_min > self.db_pool_size_max:
            raise SettingsError("MALLPAY_DB_POOL_SIZE_MIN exceeds MALLPAY_DB_POOL_SIZE_MAX")
        if self.loop_backoff_initial_ms > self.loop_backoff_max_ms:
            raise SettingsError("MALLPAY_LOOP_BACKOFF_INITIAL_MS exceeds MALLPAY_LOOP_BACKOFF_MAX_MS")
        if not self.notify_retry_schedule_s or min(self.notify_retry_schedule_s) < 0:
            raise SettingsError("MALLPAY_NOTIFY_RETRY_SCHEDULE_S needs at least one delay, none negative")


# Numeric settings must be finite and above 0, except these, where 0 means "at once" or
# "none" (signing_threads 0: sign on the event loop), and those with a range of their own.
ZERO_ALLOWED = frozenset({
    "signing_threads", "coupons_per_payment_max", "points_per_yuan_default", "coupon_shopper_history_max",
    "split_first_try_after_s", "query_sync_after_s", "unpaid_order_query_after_s", "finish_before_unfreeze_s",
    "channel_cap_fresh_s", "client_key_cache_s", "coupon_issue_retry_after_ms",
    # retried at the next poll:
    "job_retry_base_s", "points_sync_retry_base_s", "coupon_issue_retry_base_s", "split_retry_s",
})
PORT_MAX = 65535
RANGES = {"port": (1, PORT_MAX), "emulator_port": (1, PORT_MAX), "coupon_holdout_bps": (0, 10_000),
          "reconcile_at_minute": (0, 24 * 60 - 1)}
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


def _check_number(name: str, value: float) -> None:
    key = "MALLPAY_" + name.upper()
    if not math.isfinite(value):
        raise SettingsError(f"{key} must be a finite number")
    if name in RANGES:
        low, high = RANGES[name]
        if not low <= value <= high:
            raise SettingsError(f"{key} must be from {low} to {high}")
    elif name in ZERO_ALLOWED:
        if value < 0:
            raise SettingsError(f"{key} must be 0 or more")
    elif value <= 0:
        raise SettingsError(f"{key} must be positive")


def listen_url(host: str, port: int) -> str:
    """The gateway's own URL when it listens on `host`:`port`; a wildcard host is reached
    over loopback from this machine."""
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _convert(key: str, raw: str, type_name) -> object:
    type_name = str(type_name)
    try:
        if type_name.startswith("tuple"):
            return tuple(int(part) for part in raw.split(",") if part.strip())
        if type_name == "bool":
            if raw.lower() not in ("1", "0", "true", "false", "yes", "no"):
                raise ValueError(raw)
            return raw.lower() in ("1", "true", "yes")
        if type_name == "int":
            return int(raw)
        if type_name == "float":
            return float(raw)
        if type_name in ("Path", "Path | None"):
            return Path(raw)
        return raw
    except ValueError as exc:
        raise SettingsError(f"{key}: cannot read {raw!r} as {type_name}") from exc
