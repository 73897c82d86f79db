"""Unit tests of the emulator's bounded memory, ids, replay cache and knobs."""

from __future__ import annotations

import random
import re
from datetime import datetime, timezone

import pytest

from emulator.auth import NonceCache
from emulator.config import (
    WECHAT_NOTIFY_RETRY_SCHEDULE_S,
    EmulatorConfig,
    EmulatorConfigError,
    emulator_config_from_env,
)
from emulator.state import Order, OrderBook, new_event_id, new_prepay_id, new_transaction_id

NOW = datetime(2026, 3, 1, 16, 30, tzinfo=timezone.utc)  # 2026-03-02 00:30 in China


def emulator_order(out_trade_no: str) -> Order:
    return Order(
        sp_appid="wx8888888888888888", sp_mchid="1900000100", sub_appid=None, sub_mchid="1900000109",
        out_trade_no=out_trade_no, description="coffee", attach=None, notify_url="https://x/n",
        total_fen=100, currency="CNY", payer_sp_openid="o-sp", payer_sub_openid=None, profit_sharing=False,
        expire_at=None, created_at=NOW, request_fingerprint="{}", prepay_id="wx1",
    )


def test_ids_look_like_wechat_ones_and_are_seedable():
    transaction_id = new_transaction_id(random.Random(7), NOW)
    assert re.fullmatch(r"4200\d{24}", transaction_id)
    assert transaction_id[10:18] == "20260302"  # WeChat dates its ids in China time
    assert transaction_id == new_transaction_id(random.Random(7), NOW)
    prepay_id = new_prepay_id(random.Random(7), NOW)
    assert re.fullmatch(r"wx20260302003000[0-9a-f]{22}", prepay_id)
    assert new_event_id(random.Random(1)) != new_event_id(random.Random(2))


def test_order_book_forgets_the_oldest_order_beyond_its_bound():
    book = OrderBook(orders_max=2)
    first, second, third = (emulator_order(out_trade_no=f"ORDER{i:04d}") for i in range(3))
    book.add(first)
    book.pay(first, "4200000000202603010000000001", NOW)
    book.add(second)
    book.add(third)
    assert len(book) == 2 and book.evicted_count == 1
    assert book.get("1900000109", "ORDER0000") is None
    assert book.by_transaction_id("4200000000202603010000000001") is None
    assert book.get("1900000109", "ORDER0002") is third


def test_nonce_cache_refuses_replays_inside_the_window_and_stays_bounded():
    cache = NonceCache(entries_max=3, window_s=300)
    assert cache.check_and_add("m", "n1", 1000.0)
    assert not cache.check_and_add("m", "n1", 1001.0)  # replay
    assert cache.check_and_add("other", "n1", 1001.0)  # nonces are per merchant
    assert cache.check_and_add("m", "n2", 1400.0)  # window passed: old entries dropped
    assert cache.check_and_add("m", "n1", 1400.0)
    for i in range(10):
        cache.check_and_add("m", f"x{i}", 1401.0)
    assert len(cache._seen) <= 3


def test_default_retry_schedule_is_wechats():
    assert WECHAT_NOTIFY_RETRY_SCHEDULE_S == (
        15, 15, 30, 180, 600, 1200, 1800, 1800, 1800, 3600, 10800, 10800, 10800, 21600, 21600,
    )


@pytest.mark.parametrize("change", [
    {"notify_failure_rate": 1.5}, {"error_rate": -0.1}, {"orders_max": 0}, {"notify_delay_ms": -1},
    {"notify_concurrency_max": 0}, {"retry_time_scale": -1.0}, {"notify_retry_schedule_s": (15, -1)},
])
def test_out_of_range_knobs_refuse_to_start(change, emulator_credentials_stub):
    with pytest.raises(EmulatorConfigError):
        EmulatorConfig(credentials=emulator_credentials_stub, **change)


def test_knobs_from_environment(emulator_credentials_stub):
    config = emulator_config_from_env(emulator_credentials_stub, {
        "MALLPAY_EMULATOR_ERROR_RATE": "0.25", "MALLPAY_EMULATOR_NOTIFY_DUPLICATE_COUNT": "2",
        "MALLPAY_EMULATOR_RETRY_TIME_SCALE": "0.01", "MALLPAY_EMULATOR_SEED": "42",
        "MALLPAY_EMULATOR_NOTIFY_RETRY_SCHEDULE_S": "1,2,3",
    })
    assert (config.error_rate, config.notify_duplicate_count, config.retry_time_scale) == (0.25, 2, 0.01)
    assert config.notify_retry_schedule_s == (1.0, 2.0, 3.0)
    assert config.rng.random() == random.Random("42").random()
    with pytest.raises(EmulatorConfigError):
        emulator_config_from_env(emulator_credentials_stub, {"MALLPAY_EMULATOR_ORDERS_MAX": "lots"})


def test_money_knobs_from_environment_and_their_ranges(emulator_credentials_stub):
    config = emulator_config_from_env(emulator_credentials_stub, {
        "MALLPAY_EMULATOR_FEE_RATE_BPS": "38", "MALLPAY_EMULATOR_FREEZE_DAYS": "180",
        "MALLPAY_EMULATOR_PROFITSHARING_NOTIFY_URL": "http://127.0.0.1:8080/channel/wechatpay/notify",
        "MALLPAY_EMULATOR_SPLIT_FAILURE_RATE": "0.1",
    })
    assert (config.fee_rate_bps, config.freeze_days, config.split_failure_rate) == (38, 180, 0.1)
    assert config.profitsharing_notify_url == "http://127.0.0.1:8080/channel/wechatpay/notify"
    defaults = EmulatorConfig(credentials=emulator_credentials_stub)
    assert (defaults.fee_rate_bps, defaults.split_after_payment_s, defaults.freeze_days,
            defaults.max_ratio_bps_default, defaults.split_return_window_days,
            defaults.profitsharing_notify_url) == (60, 60, 30, 3000, 180, None)
    for change in ({"fee_rate_bps": 10_001}, {"split_failure_rate": 2.0}, {"refunds_max": 0},
                   {"profitsharing_notify_url": "ftp://x"}, {"max_ratio_bps_default": -1}):
        with pytest.raises(EmulatorConfigError):
            EmulatorConfig(credentials=emulator_credentials_stub, **change)


@pytest.fixture(scope="module")
def emulator_credentials_stub(tmp_path_factory):
    from gateway.channel.credentials import ensure_local_credentials

    _, emulator = ensure_local_credentials(tmp_path_factory.mktemp("keys"), "1900000100")
    return emulator
