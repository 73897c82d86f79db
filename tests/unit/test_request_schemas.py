"""gateway/api/requests: refunds, split returns and profit-sharing bodies. Every refusal
names its field and issue exactly; a well-formed body comes back as the service's command."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import make_mocked_request

from gateway.api.requests import request_hash, store_query
from gateway.api.requests.orders import close_scope, query_scope
from gateway.api.requests.profitsharing import (
    parse_receiver_add, parse_receiver_delete, parse_split, parse_unfreeze,
)
from gateway.api.requests.refunds import parse_refund, parse_return
from gateway.caller import Caller
from gateway.domain_errors import InvalidField
from gateway.services.refunds import RefundRequest
from gateway.signing import Secret

APP = Caller(client_id="1900000100", mall_id="1900000100", sp_appid="wx8888888888888888", role="mall_app",
             sub_mchid=None, apiv3_key=Secret(b"k" * 32))


def refusal(parse, body, *args) -> tuple[str, str]:
    with pytest.raises(InvalidField) as caught:
        parse(body, *args)
    return caught.value.detail["field"], caught.value.detail["issue"]


def split_body(**changes) -> dict:
    body = {"sub_mchid": "1900000201", "transaction_id": "4200000001", "out_order_no": "P-1",
            "unfreeze_unsplit": False,
            "receivers": [{"type": "MERCHANT_ID", "account": "1900000100", "amount": 100, "description": "佣金"}]}
    body.update(changes)
    return body


def test_a_split_becomes_its_command():
    body = split_body()
    req = parse_split(body, APP)
    assert (req.sub_mchid, req.transaction_id, req.out_order_no, req.unfreeze_unsplit) == (
        "1900000201", "4200000001", "P-1", False)
    assert req.receivers == ({"type": "MERCHANT_ID", "account": "1900000100", "amount": 100, "description": "佣金"},)
    assert req.request_hash == request_hash(body)


@pytest.mark.parametrize("changes, expected", [
    ({"sub_mchid": None}, ("sub_mchid", "required")),
    ({"sub_mchid": 1900000201}, ("sub_mchid", "bad_format")),
    ({"transaction_id": "42x"}, ("transaction_id", "bad_format")),
    ({"out_order_no": "P 1"}, ("out_order_no", "bad_format")),
    ({"unfreeze_unsplit": "no"}, ("unfreeze_unsplit", "required")),
    ({"appid": "wxOther"}, ("appid", "appid_mchid_not_match")),
    ({"receivers": []}, ("receivers", "required")),
    ({"receivers": [{"type": "BANK", "account": "1", "amount": 1, "description": "x"}]},
     ("receivers[0].type", "unknown_receiver_type")),
    ({"receivers": [{"type": "MERCHANT_ID", "account": "1900000100", "amount": 1, "description": "x"},
                    {"type": "PERSONAL_OPENID", "account": "o!", "amount": 1, "description": "x"}]},
     ("receivers[1].account", "bad_format")),
    ({"receivers": [{"type": "MERCHANT_ID", "account": "1900000100", "amount": True, "description": "x"}]},
     ("receivers[0].amount", "not_a_positive_integer")),
    ({"receivers": [{"type": "MERCHANT_ID", "account": "1900000100", "amount": 1, "description": "x" * 81}]},
     ("receivers[0].description", "bad_length_or_characters")),
])
def test_a_split_refusal_names_its_field(changes, expected):
    assert refusal(parse_split, split_body(**changes), APP) == expected


def test_a_split_body_must_be_an_object():
    assert refusal(parse_split, [split_body()], APP) == ("body", "not_an_object")


def test_an_unfreeze_needs_a_description():
    body = {"sub_mchid": "1900000201", "transaction_id": "4200000001", "out_order_no": "UF-1"}
    assert refusal(parse_unfreeze, body) == ("description", "required")
    req = parse_unfreeze({**body, "description": "解冻"})
    assert (req.sub_mchid, req.transaction_id, req.out_order_no) == ("1900000201", "4200000001", "UF-1")


def refund_body(**changes) -> dict:
    body = {"sub_mchid": "1900000201", "out_refund_no": "R-1", "out_trade_no": "ORDER-0001",
            "amount": {"refund": 500, "total": 1000, "currency": "CNY"}}
    body.update(changes)
    return {name: value for name, value in body.items() if value is not None}


def test_a_refund_becomes_its_command():
    asked = parse_refund(refund_body(reason="size"), False)
    assert asked == RefundRequest(sub_mchid="1900000201", out_refund_no="R-1", transaction_id=None,
                                  out_trade_no="ORDER-0001", reason="size", notify_url=None, amount_fen=500,
                                  total_fen=1000, request_hash=request_hash(refund_body(reason="size")))
    by_transaction = parse_refund(refund_body(out_trade_no=None, transaction_id="4200000001",
                                              notify_url="https://mall.example.com/n"), False)
    assert (by_transaction.transaction_id, by_transaction.out_trade_no, by_transaction.notify_url) == (
        "4200000001", None, "https://mall.example.com/n")


@pytest.mark.parametrize("changes, expected", [
    ({"transaction_id": "4200000001"}, ("transaction_id", "one_of_transaction_id_out_trade_no")),
    ({"reason": "x" * 81}, ("reason", "bad_length_or_characters")),
    ({"notify_url": "http://example.com/n"}, ("notify_url", "https_required")),
    ({"funds_account": "ELSEWHERE"}, ("funds_account", "unknown_funds_account")),
    ({"amount": {"refund": 0, "total": 1000}}, ("amount.refund", "not_a_positive_integer")),
    ({"amount": {"refund": 1, "total": 1000, "currency": "USD"}}, ("amount.currency", "unsupported_currency")),
])
def test_a_refund_refusal_names_its_field(changes, expected):
    assert refusal(parse_refund, refund_body(**changes), False) == expected


def test_a_return_names_its_split_by_out_order_no():
    body = {"sub_mchid": "1900000201", "order_id": "3000000001", "out_return_no": "RT-1",
            "return_mchid": "1900009999", "amount": 10, "description": "回退"}
    assert refusal(parse_return, body) == ("out_order_no", "required")
    asked = parse_return({**body, "out_order_no": "P-1"})
    assert (asked.out_order_no, asked.amount_fen, asked.description) == ("P-1", 10, "回退")
    assert refusal(parse_return, {**body, "out_order_no": "P-1", "amount": -1}) == ("amount", "not_a_positive_integer")


def test_a_receiver_to_delete():
    body = {"sub_mchid": "1900000201", "type": "MERCHANT_ID", "account": "1900009999"}
    assert parse_receiver_delete(body) == ("1900000201", "MERCHANT_ID", "1900009999")
    assert refusal(parse_receiver_delete, {**body, "type": "BANK"}) == ("type", "unknown_receiver_type")


@pytest.mark.parametrize("query, expected", [
    ("", ("sp_mchid", "required")),
    ("?sp_mchid=1900000100", ("sub_mchid", "required")),
    ("?sp_mchid=1900000100&sub_mchid=19x", ("sub_mchid", "bad_format")),
])
def test_an_order_query_names_the_mall_and_store(query, expected):
    request = make_mocked_request("GET", "/v3/pay/partner/transactions/out-trade-no/ORDER-0001" + query)
    assert refusal(lambda r: query_scope(r), request) == expected


def test_a_store_query_and_a_close_body():
    assert store_query(make_mocked_request("GET", "/x?sub_mchid=1900000201")) == "1900000201"
    assert refusal(lambda r: store_query(r), make_mocked_request("GET", "/x")) == ("sub_mchid", "required")
    assert close_scope({"sp_mchid": "1900000100", "sub_mchid": "1900000201"}) == ("1900000100", "1900000201")
    assert refusal(close_scope, {"sub_mchid": "1900000201", "extra": 1}) == ("extra", "unknown_field")


def test_a_receiver_to_add_is_a_merchant_with_a_known_relation():
    body = {"sub_mchid": "1900000201", "type": "MERCHANT_ID", "account": "1900009999", "relation_type": "HEADQUARTER",
            "name": "cipher"}
    opened = {"cipher": "Brand HQ"}
    assert parse_receiver_add(body, opened.get) == ("1900000201", "MERCHANT_ID", "1900009999", "Brand HQ",
                                                    "HEADQUARTER")
    assert refusal(parse_receiver_add, {**body, "name": "not ours"}, opened.get) == ("name", "not_decryptable")
    assert refusal(parse_receiver_add, {**body, "type": "PERSONAL_OPENID"}, opened.get) == (
        "type", "use_guides_for_persons")
    assert refusal(parse_receiver_add, {**body, "account": "o123"}, opened.get) == ("account", "bad_format")
    assert refusal(parse_receiver_add, {**body, "relation_type": "FRIEND"}, opened.get) == (
        "relation_type", "unknown_relation_type")
