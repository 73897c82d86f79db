"""Unset, the public URL follows the address the gateway listens on; set, it stays."""

from __future__ import annotations

from gateway.settings import Settings


def test_unset_public_url_follows_host_and_port():
    settings = Settings.from_env({})
    assert settings.public_url == "http://127.0.0.1:8080"
    assert settings.with_(port=9000).public_url == "http://127.0.0.1:9000"
    assert settings.with_(host="0.0.0.0", port=9001).public_url == "http://127.0.0.1:9001"
    assert settings.with_(host="::", port=9002).public_url == "http://[::1]:9002"


def test_set_public_url_is_kept_whatever_the_port():
    settings = Settings.from_env({"MALLPAY_PUBLIC_URL": "https://pay.mall.example.com"})
    assert settings.with_(port=9000).public_url == "https://pay.mall.example.com"
    assert Settings().with_(public_url="https://relay.example").with_(port=1).public_url == "https://relay.example"


def test_the_unpaid_order_check_reads_its_new_and_its_former_names():
    assert Settings.from_env({"MALLPAY_UNPAID_CHECK_INTERVAL_S": "3"}).unpaid_check_interval_s == 3.0
    assert Settings.from_env({"MALLPAY_RECONCILE_BATCH_MAX": "7"}).unpaid_check_batch_max == 7
