"""gateway/api/requests/orders.py: every refusal names its field and issue exactly,
because a mall's engineers fix their request from that detail and nothing else."""

from __future__ import annotations

import copy
from datetime import datetime, timedelta, timezone

import pytest

from gateway.api.middleware import wechat_answer
from gateway.domain_errors import InvalidField, NotPermitted
from gateway.repo.clients import Caller
from gateway.api.requests.orders import ORDER_TOTAL_FEN_MAX, parse_order_request
from gateway.signing import Secret
from gateway.wire import CHINA_TZ

MALL = "1900000100"
APPID = "wxmallpay00000001"
NOW = datetime(2025, 3, 1, 4, 0, 0, tzinfo=timezone.utc)
MALL_APP = Caller(client_id=MALL, mall_id=MALL, sp_appid=APPID, role="mall_app", sub_mchid=None,
                  apiv3_key=Secret(b"k" * 32))


def body(**changes) -> dict:
    base = {
        "sp_appid": APPID, "sp_mchid": MALL, "sub_mchid": "1900000201",
        "description": "Coffee beans 250g", "out_trade_no": "ORDER-0001",
        "notify_url": "https://mall.example.com/pay/notify",
        "amount": {"total": 2599, "currency": "CNY"},
        "payer": {"sp_openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"},
    }
    base.update(changes)
    return base


def parse(value, caller: Caller = MALL_APP, allow_loopback_http: bool = False):
    return parse_order_request(value, caller, now=NOW, allow_loopback_http=allow_loopback_http)


def refused(value, **kw) -> tuple[str, str]:
    with pytest.raises(InvalidField) as caught:
        parse(value, **kw)
    error = caught.value
    assert (wechat_answer(error).status, wechat_answer(error).code) == (400, "PARAM_ERROR")
    assert set(error.detail) == {"field", "issue"}
    return error.detail["field"], error.detail["issue"]


def test_valid_request_is_parsed():
    parsed = parse(body(attach="table 7", settle_info={"profit_sharing": True},
                        mall_info={"guide_id": "G-001", "original_total": 3000}))
    assert (parsed.sp_mchid, parsed.sub_mchid, parsed.out_trade_no) == (MALL, "1900000201", "ORDER-0001")
    assert (parsed.total_fen, parsed.currency, parsed.profit_sharing) == (2599, "CNY", True)
    assert parsed.payer_sp_openid == "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o" and parsed.payer_sub_openid is None
    assert parsed.mall_info == {"guide_id": "G-001", "original_total": 3000}
    assert parsed.time_expire is None and parsed.attach == "table 7"


def test_currency_defaults_to_cny():
    assert parse(body(amount={"total": 1})).currency == "CNY"


# -- amounts -------------------------------------------------------------------------------

@pytest.mark.parametrize("total, issue", [
    (1.5, "not_an_integer"),
    (100.0, "not_an_integer"),
    ("100", "not_an_integer"),
    (True, "not_an_integer"),
    (False, "not_an_integer"),
    (0, "out_of_range"),
    (-1, "out_of_range"),
    (ORDER_TOTAL_FEN_MAX + 1, "out_of_range"),
    (10**30, "out_of_range"),
    (None, "required"),
])
def test_bad_amount_total(total, issue):
    assert refused(body(amount={"total": total, "currency": "CNY"})) == ("amount.total", issue)


def test_amount_bounds_are_inclusive():
    assert parse(body(amount={"total": 1})).total_fen == 1
    assert parse(body(amount={"total": ORDER_TOTAL_FEN_MAX})).total_fen == ORDER_TOTAL_FEN_MAX


@pytest.mark.parametrize("currency", ["USD", "cny", "", None])
def test_currency_other_than_cny(currency):
    assert refused(body(amount={"total": 100, "currency": currency})) == ("amount.currency", "unsupported_currency")


def test_amount_unknown_field():
    assert refused(body(amount={"total": 100, "payer_total": 100})) == ("amount.payer_total", "unknown_field")


@pytest.mark.parametrize("amount, issue", [(None, "required"), (100, "not_an_object"), ([100], "not_an_object")])
def test_amount_not_an_object(amount, issue):
    assert refused(body(amount=amount)) == ("amount", issue)


# -- out_trade_no ------------------------------------------------------------------------------

@pytest.mark.parametrize("out_trade_no", [
    "ABC12",                # 5 characters: too short
    "A" * 33,               # too long
    "ORDER 0001",           # space
    "ORDER/0001",           # slash would escape the query path
    "ORDER-0001\n",         # trailing newline
    "订单00000001",          # not ASCII
    "ORDER.0001",
    "",
])
def test_bad_out_trade_no(out_trade_no):
    assert refused(body(out_trade_no=out_trade_no)) == ("out_trade_no", "bad_format")


@pytest.mark.parametrize("out_trade_no", ["ABC123", "A" * 32, "a_b-c*1234", "2025030112345678901234567890abcd", "T|2025|0001"])
def test_good_out_trade_no(out_trade_no):
    assert parse(body(out_trade_no=out_trade_no)).out_trade_no == out_trade_no


def test_out_trade_no_not_a_string():
    assert refused(body(out_trade_no=123456)) == ("out_trade_no", "not_a_string")


# -- notify_url ------------------------------------------------------------------------------------

@pytest.mark.parametrize("url", [
    "http://mall.example.com/notify",
    "http://10.0.0.5:8080/notify",          # private network over http
    "http://169.254.169.254:80/latest",     # cloud metadata
    "http://127.0.0.1.evil.example:9000/n",
    "ftp://mall.example.com/notify",
])
def test_notify_url_http_to_non_loopback(url):
    assert refused(body(notify_url=url), allow_loopback_http=True) == ("notify_url", "https_required")


@pytest.mark.parametrize("url", ["http://127.0.0.1:9000/notify", "http://localhost:9000/notify",
                                 "http://[::1]:9000/notify", "http://127.0.0.2:9000/notify"])
def test_notify_url_http_loopback_only_when_allowed(url):
    assert refused(body(notify_url=url), allow_loopback_http=False) == ("notify_url", "https_required")
    assert parse(body(notify_url=url), allow_loopback_http=True).notify_url == url


@pytest.mark.parametrize("url", [
    "https://mall.example.com/notify?order=1",
    "https://user:secret@mall.example.com/notify",
    "https://user@mall.example.com/notify",
    "https://mall.example.com/notify#frag",
    "https:///notify",
    "notify",
    "https://mall.example.com:99999/notify",
    "https://mall.example.com/" + "n" * 255,
])
def test_notify_url_bad_format(url):
    assert refused(body(notify_url=url), allow_loopback_http=True) == ("notify_url", "bad_format")


def test_notify_url_required():
    without = body()
    del without["notify_url"]
    assert refused(without) == ("notify_url", "required")


# -- fields ----------------------------------------------------------------------------------------------

def test_unknown_top_level_field():
    assert refused(body(total_fee=100)) == ("total_fee", "unknown_field")


@pytest.mark.parametrize("payer, expected", [
    ({"sp_openid": "o1", "sub_openid": "o2"}, ("payer", "one_of_sp_openid_sub_openid")),
    ({}, ("payer", "one_of_sp_openid_sub_openid")),
    ({"openid": "o1"}, ("payer.openid", "unknown_field")),
    ({"sp_openid": "o 1"}, ("payer.sp_openid", "bad_format")),
    ({"sp_openid": 7}, ("payer.sp_openid", "not_a_string")),
])
def test_bad_payer(payer, expected):
    assert refused(body(payer=payer)) == expected


def test_sub_openid_needs_sub_appid():
    assert refused(body(payer={"sub_openid": "o2"})) == ("sub_appid", "required_with_sub_openid")
    parsed = parse(body(payer={"sub_openid": "o2"}, sub_appid="wxstore000000001"))
    assert (parsed.payer_sub_openid, parsed.sub_appid) == ("o2", "wxstore000000001")


@pytest.mark.parametrize("time_expire, issue", [
    ((NOW - timedelta(minutes=5)).astimezone(CHINA_TZ).isoformat(), "out_of_range"),
    ((NOW + timedelta(seconds=30)).astimezone(CHINA_TZ).isoformat(), "out_of_range"),
    ((NOW + timedelta(days=8)).astimezone(CHINA_TZ).isoformat(), "out_of_range"),
    ("2025-03-01 12:30:00+08:00", "bad_format"),   # no T
    ("2025-03-01T12:30:00", "bad_format"),         # no offset
    ("tomorrow", "bad_format"),
    ("", "bad_format"),
    (1740800000, "not_a_string"),
])
def test_bad_time_expire(time_expire, issue):
    assert refused(body(time_expire=time_expire)) == ("time_expire", issue)


def test_time_expire_in_china_time_is_understood():
    parsed = parse(body(time_expire="2025-03-01T13:00:00+08:00"))  # NOW + 1 hour
    assert parsed.time_expire == NOW + timedelta(hours=1)


@pytest.mark.parametrize("description, issue", [
    ("", "bad_length_or_characters"),
    ("   ", "bad_length_or_characters"),
    ("x" * 128, "bad_length_or_characters"),
    ("line\nbreak", "bad_length_or_characters"),
    (None, "required"),
    (["x"], "not_a_string"),
])
def test_bad_description(description, issue):
    assert refused(body(description=description)) == ("description", issue)


def test_description_at_its_limit():
    assert parse(body(description="咖" * 127)).description == "咖" * 127


@pytest.mark.parametrize("mall_info, expected", [
    ({"points": 10}, ("mall_info.points", "unknown_field")),
    ({"coupon_id": "C-1", "original_total": 99999}, ("mall_info.coupon_id", "bad_format")),
    ({"coupon_id": "CPN1"}, ("mall_info.original_total", "required_with_coupon_id")),
    ({"guide_id": "g 1"}, ("mall_info.guide_id", "bad_format")),
    ({"original_total": 2000}, ("mall_info.original_total", "less_than_total")),
    ({"original_total": 1.5}, ("mall_info.original_total", "out_of_range")),
    ("G-001", ("mall_info", "not_an_object")),
])
def test_bad_mall_info(mall_info, expected):
    assert refused(body(mall_info=mall_info)) == expected


@pytest.mark.parametrize("settle_info, expected", [
    ({"profit_sharing": "true"}, ("settle_info.profit_sharing", "not_a_boolean")),
    ({"profit_sharing": True, "x": 1}, ("settle_info.x", "unknown_field")),
])
def test_bad_settle_info(settle_info, expected):
    assert refused(body(settle_info=settle_info)) == expected


def test_sp_appid_of_another_app():
    assert refused(body(sp_appid="wxother0000000001")) == ("sp_appid", "appid_mchid_not_match")


@pytest.mark.parametrize("value", [None, [], "x", 1])
def test_body_not_an_object(value):
    assert refused(value) == ("body", "not_an_object")


# -- who may create ----------------------------------------------------------------------------------------

def test_sp_mchid_of_another_mall_is_no_auth():
    with pytest.raises(NotPermitted) as caught:
        parse(body(sp_mchid="1900000999"))
    answer = wechat_answer(caught.value)
    assert (answer.status, answer.code, answer.detail["reason"]) == (403, "NO_AUTH", "sp_mchid_not_yours")


@pytest.mark.parametrize("role, sub_mchid", [("tenant", "1900000201"), ("finance", None), ("admin", None)])
def test_only_mall_apps_create_orders(role, sub_mchid):
    caller = Caller(client_id="1600000001", mall_id=MALL, sp_appid=APPID, role=role, sub_mchid=sub_mchid,
                    apiv3_key=Secret(b"k" * 32))
    with pytest.raises(NotPermitted) as caught:
        parse(body(), caller=caller)
    answer = wechat_answer(caught.value)
    assert (answer.status, answer.code, answer.detail["reason"]) == (403, "NO_AUTH", "role_cannot_create_orders")


# -- the idempotency hash ----------------------------------------------------------------------------------------

def test_request_hash_ignores_key_order():
    original = body(mall_info={"guide_id": "G-001", "original_total": 3000}, settle_info={"profit_sharing": False})
    reordered = {key: copy.deepcopy(original[key]) for key in reversed(list(original))}
    reordered["amount"] = {"currency": "CNY", "total": 2599}
    reordered["mall_info"] = {"original_total": 3000, "guide_id": "G-001"}
    assert list(reordered) != list(original)
    assert parse(reordered).request_hash == parse(original).request_hash


@pytest.mark.parametrize("change", [
    {"amount": {"total": 2600, "currency": "CNY"}},
    {"description": "Coffee beans 500g"},
    {"payer": {"sp_openid": "oOtherShopper"}},
    {"attach": "x"},
])
def test_request_hash_changes_with_any_field(change):
    assert parse(body(**change)).request_hash != parse(body()).request_hash


@pytest.mark.parametrize("url", [
    "https://127.0.0.1:5432/notify", "https://10.0.0.5/notify", "https://192.168.1.10/notify",
    "https://169.254.169.254/latest/meta-data", "https://[::1]/notify", "https://[fd00::1]/notify",
])
def test_notify_url_https_into_a_private_network(url):
    field, _ = refused(body(notify_url=url), allow_loopback_http=False)
    assert field == "notify_url"
