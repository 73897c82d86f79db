"""A corpus of hostile requests, each answered with a 4xx (never a 5xx), as a signed
WeChat-style error body with a precise code, and writing nothing to any state table.

The classes: NUL and lone surrogates in path ids, query values, JSON strings and field
names; times and offsets out of range; wrong JSON types; deep nesting; bad encodings;
non-JSON content types; notify_url schemes; Authorization and Request-ID abuse.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from yarl import URL

from tests.support import Reply, all_table_counts, order_body

CREATE = "/v3/pay/partner/transactions/jsapi"
S = "1900000201"  # a store of the e2e mall
NUL_JSON = "\\u0000"  # JSON escapes as they appear inside a JSON text
SURROGATE_JSON = "\\ud800"


@dataclass(frozen=True)
class Case:
    name: str
    method: str
    target: str
    body: bytes = b""
    as_admin: bool = False
    content_type: str | None = "application/json"
    status: int = 400
    code: str = "PARAM_ERROR"
    issue: str | None = None  # detail.issue or detail.reason expected


def _order_text(mall_like: dict, **replace_raw: str) -> bytes:
    """An order body as JSON text with some values swapped for raw JSON fragments (so
    escapes such as \\ud800 reach the gateway exactly as written)."""
    body = dict(mall_like)
    marks = {}
    for index, (name, raw) in enumerate(replace_raw.items()):
        marks[f"@@{index}@@"] = raw
        body[name] = f"@@{index}@@"
    text = json.dumps(body)
    for mark, raw in marks.items():
        text = text.replace(f'"{mark}"', raw)
    return text.encode()


def order_cases(base: dict) -> list[Case]:
    o = lambda name, issue=None, **raw: Case(name, "POST", CREATE, _order_text(base, **raw), issue=issue)  # noqa: E731
    return [
        o("nul_in_description", "bad_characters", description=f'"coffee{NUL_JSON}"'),
        o("surrogate_in_description", "bad_characters", description=f'"{SURROGATE_JSON}"'),
        o("surrogate_in_attach", "bad_characters", attach=f'"a{SURROGATE_JSON}b"'),
        o("time_expire_year_1", "bad_format", time_expire='"0001-01-01T00:00:00+01:00"'),
        o("time_expire_year_9999", "bad_format", time_expire='"9999-12-31T23:59:59-01:00"'),
        o("notify_url_gopher", "https_required", notify_url='"gopher://127.0.0.1:6379/_"'),
        o("notify_url_ftp_loopback", "https_required", notify_url='"ftp://127.0.0.1:21/x"'),
        o("deep_nesting_in_detail", "nested_too_deep", detail="[" * 200 + "]" * 200),
        o("deep_nesting_past_the_parser", "not_json", detail="[" * 30_000 + "]" * 30_000),
        Case("unknown_field_named_surrogate", "POST", CREATE,
             json.dumps(base)[:-1].encode() + b', "\\ud800": 1}', issue="bad_characters"),
        Case("unknown_field_named_nul", "POST", CREATE,
             json.dumps(base)[:-1].encode() + b', "a\\u0000": 1}', issue="bad_characters"),
        Case("text_plain_order", "POST", CREATE, json.dumps(base).encode(), content_type="text/plain",
             issue="content_type_not_json"),
        Case("no_content_type", "POST", CREATE, json.dumps(base).encode(), content_type=None,
             issue="content_type_not_json"),
        Case("form_encoded", "POST", CREATE, b"a=1", content_type="application/x-www-form-urlencoded",
             issue="content_type_not_json"),
        Case("latin1_body", "POST", CREATE, b'{"description": "caf\xe9"}', issue="not_json"),
        Case("oversize_body", "POST", CREATE, b'{"a": "' + b"x" * 70_000 + b'"}', status=413,
             issue="body_too_large"),
    ]


def path_and_query_cases() -> list[Case]:
    g = lambda name, target, admin=False: Case(name, "GET", target, as_admin=admin, issue="bad_characters")  # noqa: E731
    return [
        g("nul_refund_id", f"/v3/refund/domestic/refunds/RF%00X?sub_mchid={S}"),
        g("nul_split_order", f"/v3/profitsharing/orders/SO%00?sub_mchid={S}&transaction_id=1"),
        g("nul_return_order", f"/v3/profitsharing/return-orders/RO%00?sub_mchid={S}&out_order_no=1"),
        g("nul_amounts", "/v3/profitsharing/transactions/42%00/amounts"),
        g("nul_merchant_config", f"/v3/profitsharing/merchant-configs/{S}%00"),
        g("nul_tenant", f"/v3/mall/tenants/{S}%00", admin=True),
        g("nul_approvals", f"/v3/mall/tenants/{S}%00/approvals", admin=True),
        g("nul_order_query", f"/v3/pay/partner/transactions/out-trade-no/AB%00CDEF?sp_mchid=1900000100&sub_mchid={S}"),
        g("nul_in_query_value", f"/v3/pay/partner/transactions/out-trade-no/ABCDEF?sp_mchid=1900000100&sub_mchid={S}%00"),
        # Invalid UTF-8 in a percent-escape stays escaped (yarl): an id that names nothing.
        Case("bad_utf8_escape_in_path", "GET", f"/v3/refund/domestic/refunds/%ED%A0%80?sub_mchid={S}",
             status=404, code="RESOURCE_NOT_EXISTS"),
        Case("nul_key_delete", "DELETE", "/v3/mall/clients/1900000100/keys/AB%00", as_admin=True,
             issue="bad_characters"),
        Case("nul_contract_patch", "PATCH", f"/v3/mall/tenants/{S}%00/contract", b'{"commission_bps": 100}',
             as_admin=True, issue="bad_characters"),
        Case("offset_huge_tenants", "GET", "/v3/mall/tenants?offset=99999999999999999999", as_admin=True,
             issue="out_of_range"),
        Case("offset_huge_guides", "GET", "/v3/mall/guides?offset=99999999999999999999", as_admin=True,
             issue="out_of_range"),
        Case("limit_unicode_digit", "GET", "/v3/mall/guides?limit=%C2%B2", as_admin=True, issue="not_an_integer"),
        # Days and instants at the calendar's ends: a day's China-time window would leave it.
        Case("reconcile_year_one", "POST", "/v3/mall/reconciliations", b'{"date": "0001-01-01"}', as_admin=True,
             issue="bad_format"),
        Case("statement_year_one", "GET", f"/v3/mall/statements?sub_mchid={S}&date=0001-01-01", as_admin=True,
             issue="bad_format"),
        Case("statement_last_day", "GET", f"/v3/mall/statements?sub_mchid={S}&date=9999-12-31", as_admin=True,
             issue="bad_format"),
        Case("export_instant_year_one", "GET", "/v3/mall/ledger/export?from=0001-01-01T00:00:00%2B08:00"
             "&to=2026-01-01T00:00:00Z", as_admin=True, issue="out_of_range"),
        Case("export_day_year_one", "GET", "/v3/mall/ledger/export?from=0001-01-01&to=0001-01-02", as_admin=True,
             issue="bad_format"),
        Case("payouts_year_one", "GET", "/v3/mall/payouts?from=0001-01-01&to=0001-01-01", as_admin=True,
             issue="bad_format"),
        Case("tradebill_year_one", "GET", "/v3/bill/tradebill?bill_date=0001-01-01", issue="bad_format"),
        Case("balances_at_year_one", "GET", "/v3/mall/ledger/trial-balance?at=0001-01-01T00:00:00%2B08:00",
             as_admin=True, issue="out_of_range"),
        Case("bill_token_non_ascii", "GET", "/v3/billdownload/file?token=abc.%E4%B8%AD", status=404,
             code="RESOURCE_NOT_EXISTS"),
        Case("limit_arabic_indic_digit", "GET", "/v3/mall/guides?limit=%D9%A1", as_admin=True, issue="not_an_integer"),
        Case("job_id_arabic_indic_digits", "GET", "/v3/mall/jobs/%D9%A1", as_admin=True, status=404,
             code="RESOURCE_NOT_EXISTS"),
    ]


def body_cases() -> list[Case]:
    p = lambda name, target, payload, issue, admin=False: Case(  # noqa: E731
        name, "POST", target, payload.encode(), as_admin=admin, issue=issue)
    add, delete = "/v3/profitsharing/receivers/add", "/v3/profitsharing/receivers/delete"
    return [
        p("receiver_add_account_int", add, f'{{"sub_mchid":"{S}","type":"MERCHANT_ID","account":123,'
          '"relation_type":"BRAND"}', "bad_format"),
        p("receiver_add_account_null", add, f'{{"sub_mchid":"{S}","type":"MERCHANT_ID","account":null,'
          '"relation_type":"BRAND"}', "bad_format"),
        p("receiver_add_relation_list", add, f'{{"sub_mchid":"{S}","type":"MERCHANT_ID","account":"1900000999",'
          '"relation_type":["BRAND"]}', "unknown_relation_type"),
        p("receiver_delete_type_int", delete, f'{{"sub_mchid":"{S}","type":1,"account":"1900000999"}}',
          "unknown_receiver_type"),
        p("receiver_delete_account_list", delete, f'{{"sub_mchid":"{S}","type":"MERCHANT_ID","account":[]}}',
          "bad_format"),
        p("receiver_delete_account_nul", delete, f'{{"sub_mchid":"{S}","type":"MERCHANT_ID",'
          f'"account":"19{NUL_JSON}"}}', "bad_characters"),
        p("refund_reason_surrogate", "/v3/refund/domestic/refunds", f'{{"sub_mchid":"{S}","out_trade_no":"ABCDEF",'
          f'"out_refund_no":"RF0001","reason":"{SURROGATE_JSON}","amount":{{"refund":1,"total":1,"currency":"CNY"}}}}',
          "bad_characters"),
        p("split_description_nul", "/v3/profitsharing/orders", f'{{"sub_mchid":"{S}","transaction_id":"1",'
          f'"out_order_no":"SO1","unfreeze_unsplit":true,"receivers":[{{"type":"MERCHANT_ID",'
          f'"account":"1900000100","amount":1,"description":"a{NUL_JSON}"}}]}}', "bad_characters"),
        p("return_description_surrogate", "/v3/profitsharing/return-orders", f'{{"sub_mchid":"{S}",'
          f'"out_order_no":"SO1","out_return_no":"RT1","return_mchid":"1900000100","amount":1,'
          f'"description":"{SURROGATE_JSON}"}}', "bad_characters"),
        p("client_sub_mchid_list", "/v3/mall/clients", '{"role":"tenant","sub_mchid":[1],"public_key":"x"}',
          "bad_format", admin=True),
        p("client_role_object", "/v3/mall/clients", '{"role":{"a":1},"public_key":"x","name":"n"}',
          "unknown_role", admin=True),
        p("tenant_name_nul", "/v3/mall/tenants", f'{{"sub_mchid":"1900000299","name":"Tea{NUL_JSON}"}}',
          "bad_characters", admin=True),
        p("tenant_name_surrogate", "/v3/mall/tenants", f'{{"sub_mchid":"1900000299","name":"{SURROGATE_JSON}"}}',
          "bad_characters", admin=True),
        p("guide_name_nul", "/v3/mall/guides", f'{{"guide_id":"G1","sub_mchid":"{S}","openid":"o1",'
          f'"name":"Lin{NUL_JSON}"}}', "bad_characters", admin=True),
        p("approval_by_nul", f"/v3/mall/tenants/{S}/approvals", f'{{"approved_by":"cfo{NUL_JSON}",'
          '"reason":"r","max_ratio_bps":5000}', "bad_characters", admin=True),
    ]


def all_cases(mall) -> list[Case]:
    base = order_body(mall, S, "HOSTILE01")
    return order_cases(base) + path_and_query_cases() + body_cases()


async def send(mall, case: Case) -> Reply:
    client = mall.admin if case.as_admin else mall.app
    headers = {"Accept": "application/json",
               "Authorization": client.authorization(case.method, case.target, case.body)}
    if case.content_type:
        headers["Content-Type"] = case.content_type
    url = URL(client.base_url + case.target, encoded=True)
    async with client.session.request(case.method, url, data=case.body, headers=headers,
                                      skip_auto_headers=("Content-Type",)) as resp:
        reply = Reply(resp.status, await resp.read(), dict(resp.headers))
    return reply


def assert_signed_error(mall, reply: Reply, status: int, code: str) -> dict:
    assert reply.status == status, (reply.status, reply.body[:300])
    mall.app.assert_signed(reply)
    assert reply.headers["Content-Type"] == "application/json; charset=utf-8"
    body = reply.json
    assert body["code"] == code and isinstance(body["message"], str) and body["message"], body
    assert isinstance(body["detail"], dict), body
    for leak in ("Traceback", "asyncpg", "SELECT", 'File "'):
        assert leak not in reply.body.decode("utf-8", "replace")
    return body


async def test_every_hostile_request_is_refused_precisely_and_changes_nothing(mall):
    """One mall for the whole corpus (building one per case would cost seconds each);
    every case is checked and all failures are reported together."""
    failures = []
    cases = all_cases(mall)
    assert len({c.name for c in cases}) == len(cases)
    for case in cases:
        before = await all_table_counts(mall.pool)
        reply = await send(mall, case)
        try:
            body = assert_signed_error(mall, reply, case.status, case.code)
            if case.issue:
                assert case.issue in (body["detail"].get("issue"), body["detail"].get("reason")), body
            assert await all_table_counts(mall.pool) == before, "rows changed"
        except AssertionError as exc:
            failures.append(f"{case.name}: {exc}")
    assert failures == [], "\n".join(failures)
