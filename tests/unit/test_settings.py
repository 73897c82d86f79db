"""Settings from the environment: every number is checked, so a mistyped value stops the
command with one line naming the variable instead of failing later (an assertion deep in
a start, a port the kernel cannot bind, a log level silently read as info)."""

from __future__ import annotations

import dataclasses

import pytest

from gateway.settings import RANGES, ZERO_ALLOWED, Settings, SettingsError

NUMBERS = [f.name for f in dataclasses.fields(Settings) if f.type in ("int", "float")]


def _env(**values) -> dict[str, str]:
    return {"MALLPAY_" + name.upper(): str(value) for name, value in values.items()}


def test_the_defaults_pass():
    Settings.from_env({})


@pytest.mark.parametrize("name", NUMBERS)
def test_no_number_may_be_negative_or_not_finite(name):
    for bad in ("-1", "nan", "inf"):
        with pytest.raises(SettingsError, match="MALLPAY_" + name.upper()):
            Settings.from_env(_env(**{name: bad}))


@pytest.mark.parametrize("name", [n for n in NUMBERS if n not in ZERO_ALLOWED and n not in RANGES])
def test_counts_intervals_and_timeouts_must_be_above_zero(name):
    with pytest.raises(SettingsError, match=f"MALLPAY_{name.upper()} must be positive"):
        Settings.from_env(_env(**{name: 0}))


@pytest.mark.parametrize("name", sorted(ZERO_ALLOWED))
def test_zero_means_at_once_or_none_where_allowed(name):
    assert getattr(Settings.from_env(_env(**{name: 0})), name) == 0


@pytest.mark.parametrize("name, low, high", [(name, *span) for name, span in RANGES.items()])
def test_ranges(name, low, high):
    assert getattr(Settings.from_env(_env(**{name: low})), name) == low
    assert getattr(Settings.from_env(_env(**{name: high})), name) == high
    for bad in (low - 1, high + 1):
        with pytest.raises(SettingsError, match=f"MALLPAY_{name.upper()} must be from {low} to {high}"):
            Settings.from_env(_env(**{name: bad}))


def test_a_channel_timeout_below_zero_is_refused_at_once():
    # It used to pass here and fail as a bare AssertionError when the gateway started.
    with pytest.raises(SettingsError, match="MALLPAY_CHANNEL_TIMEOUT_S must be positive"):
        Settings.from_env({"MALLPAY_CHANNEL_TIMEOUT_S": "-5"})


def test_log_level_is_one_of_the_levels():
    assert Settings.from_env({"MALLPAY_LOG_LEVEL": "WARNING"}).log_level == "WARNING"
    with pytest.raises(SettingsError, match="MALLPAY_LOG_LEVEL must be one of debug, info"):
        Settings.from_env({"MALLPAY_LOG_LEVEL": "loud"})


def test_notify_retry_schedule():
    assert Settings.from_env({"MALLPAY_NOTIFY_RETRY_SCHEDULE_S": "0,15,60"}).notify_retry_schedule_s == (0, 15, 60)
    for bad in ("", "15,-1"):
        with pytest.raises(SettingsError, match="MALLPAY_NOTIFY_RETRY_SCHEDULE_S"):
            Settings.from_env({"MALLPAY_NOTIFY_RETRY_SCHEDULE_S": bad})


def test_pairs_stay_ordered():
    with pytest.raises(SettingsError, match="MALLPAY_DB_POOL_SIZE_MIN exceeds"):
        Settings.from_env(_env(db_pool_size_min=8, db_pool_size_max=4))
    with pytest.raises(SettingsError, match="MALLPAY_LOOP_BACKOFF_INITIAL_MS exceeds"):
        Settings.from_env(_env(loop_backoff_initial_ms=9000, loop_backoff_max_ms=100))


def test_log_level_takes_what_logging_takes():
    for level in ("debug", "INFO", "warn", "Warning", "error", "critical"):
        Settings.from_env({"MALLPAY_LOG_LEVEL": level})
