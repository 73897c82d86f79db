"""gateway/api/requests/mall: the bodies of /v3/mall (and the command line's flags, parsed
the same way). Every refusal names its field and issue exactly; a well-formed body comes
back as the command its service takes."""

from __future__ import annotations

from datetime import date, datetime, timezone

import pytest

from coupons.campaigns import CampaignState, DiscountKind, Funder
from gateway import signing
from gateway.api.middleware import wechat_answer
from gateway.api.requests.mall import (
    parse_approval, parse_campaign_change, parse_client_key, parse_contract_change, parse_guide, parse_job_reason,
    parse_job_state, parse_new_campaign, parse_new_client, parse_openid, parse_store_filter, parse_points_rule,
    parse_reconciliation_day, parse_subsidy_payout, parse_sync_state, parse_tenant, parse_window_days,
    parse_acted_by,
)
from gateway.api.requests.ledger import export_range, parse_day, parse_instant, statement_period
from gateway.domain_errors import InvalidField, Refused
from gateway.services.stuck_jobs import JobState
from gateway.services.onboarding import CONTRACT_DEFAULTS, serial_of
from splitting.rules import SplitRefused
from tests import support

MALL = "1900000100"


def refusal(parse, body, *args) -> tuple[str, str]:
    with pytest.raises(InvalidField) as caught:
        parse(body, *args)
    return caught.value.detail["field"], caught.value.detail["issue"]


def with_changes(body: dict, changes: dict) -> dict:
    return {name: value for name, value in {**body, **changes}.items() if value is not ...}


# -- stores ----------------------------------------------------------------------------------

TENANT = {"sub_mchid": "1900000201", "name": "Noodle Bar", "floor": "B1", "category": "food",
          "contract": {"commission_bps": 800, "guide_reward_bps": 200, "freeze_days": 7}}


def test_a_store_becomes_a_tenant_with_default_terms_filled_in():
    tenant = parse_tenant(MALL, TENANT)
    assert (tenant.mall_id, tenant.sub_mchid, tenant.name, tenant.floor, tenant.category, tenant.sub_appid) == (
        MALL, "1900000201", "Noodle Bar", "B1", "food", None)
    terms = tenant.contract
    assert (terms.commission_bps, terms.guide_reward_bps, terms.freeze_days) == (800, 200, 7)
    assert (terms.max_ratio_bps, terms.fee_rate_bps, terms.auto_split) == (
        CONTRACT_DEFAULTS["max_ratio_bps"], CONTRACT_DEFAULTS["fee_rate_bps"], True)


def test_a_store_needs_only_its_id_and_name():
    tenant = parse_tenant(MALL, {"sub_mchid": "1900000202", "name": "Tea"})
    assert (tenant.floor, tenant.category) == ("", "")
    assert {name: getattr(tenant.contract, name) for name in CONTRACT_DEFAULTS} == CONTRACT_DEFAULTS


@pytest.mark.parametrize("body, expected", [
    ([], ("body", "not_an_object")),
    ({**TENANT, "colour": "red"}, ("colour", "unknown_field")),
    (with_changes(TENANT, {"sub_mchid": ...}), ("sub_mchid", "bad_format")),
    ({**TENANT, "sub_mchid": "19-1"}, ("sub_mchid", "bad_format")),
    (with_changes(TENANT, {"name": ...}), ("name", "bad_length_or_characters")),
    ({**TENANT, "name": "  "}, ("name", "bad_length_or_characters")),
    ({**TENANT, "floor": "F" * 65}, ("floor", "bad_length_or_characters")),
    ({**TENANT, "category": 3}, ("category", "bad_length_or_characters")),
    ({**TENANT, "sub_appid": "wx app"}, ("sub_appid", "bad_format")),
    ({**TENANT, "contract": [1]}, ("contract", "not_an_object")),
    ({**TENANT, "contract": {"bonus_bps": 1}}, ("contract.bonus_bps", "unknown_field")),
    ({**TENANT, "contract": {"auto_split": "yes"}}, ("contract.auto_split", "not_a_boolean")),
    ({**TENANT, "contract": {"fee_rate_bps": True}}, ("contract.fee_rate_bps", "not_an_integer")),
    ({**TENANT, "contract": {"freeze_days": 0}}, ("contract.freeze_days", "out_of_range")),
    ({**TENANT, "contract": {"commission_bps": -1}}, ("contract.commission_bps", "out_of_range")),
])
def test_a_store_is_refused_naming_the_field(body, expected):
    assert refusal(lambda b: parse_tenant(MALL, b), body) == expected


def test_a_store_cap_above_the_default_needs_an_approval():
    with pytest.raises(Refused) as caught:
        parse_tenant(MALL, {**TENANT, "contract": {"max_ratio_bps": 4500}})
    assert caught.value.reason == "approval_required"
    assert caught.value.detail == {"reason": "approval_required", "asked": 4500, "allowed": 3000}


def test_a_store_whose_automatic_splits_exceed_its_cap_is_refused():
    with pytest.raises(SplitRefused) as caught:
        parse_tenant(MALL, {**TENANT, "contract": {"commission_bps": 2500, "guide_reward_bps": 600}})
    assert caught.value.code == "ratio_exceeded"


def test_a_contract_change_carries_only_the_terms_given():
    change = parse_contract_change({"commission_bps": 500, "auto_split": False})
    assert change.terms == {"commission_bps": 500, "auto_split": False}
    assert not change.asks_cap


def test_a_contract_change_naming_the_cap_carries_it_as_asked():
    change = parse_contract_change({"max_ratio_bps": "lots", "fee_rate_bps": 30})
    assert (change.asks_cap, change.asked_max_ratio_bps, change.terms) == (True, "lots", {"fee_rate_bps": 30})


@pytest.mark.parametrize("body, expected", [
    ({}, ("body", "not_an_object")),
    ("x", ("body", "not_an_object")),
    ({"bonus_bps": 1}, ("contract.bonus_bps", "unknown_field")),
    ({"freeze_days": 9999}, ("contract.freeze_days", "out_of_range")),
    ({"guide_reward_bps": 1.5}, ("contract.guide_reward_bps", "not_an_integer")),
])
def test_a_contract_change_is_refused_naming_the_field(body, expected):
    assert refusal(parse_contract_change, body) == expected


def test_a_points_rule_is_its_rate():
    assert parse_points_rule({"points_per_yuan": 0}) == 0
    assert parse_points_rule({"points_per_yuan": 5}) == 5


@pytest.mark.parametrize("body, expected", [
    (None, ("body", "not_an_object")),
    ({"points_per_yuan": 1, "bonus": 2}, ("bonus", "unknown_field")),
    ({}, ("points_per_yuan", "required")),
    ({"points_per_yuan": True}, ("points_per_yuan", "not_an_integer")),
    ({"points_per_yuan": "2"}, ("points_per_yuan", "not_an_integer")),
    ({"points_per_yuan": -1}, ("points_per_yuan", "out_of_range")),
    ({"points_per_yuan": 10**6}, ("points_per_yuan", "out_of_range")),
])
def test_a_points_rule_is_refused_naming_the_field(body, expected):
    assert refusal(parse_points_rule, body) == expected


APPROVAL = {"approved_by": "finance director", "reason": "franchise contract", "max_ratio_bps": 4500}


def test_an_approval_becomes_its_record():
    approval = parse_approval(APPROVAL)
    assert (approval.approved_by, approval.reason, approval.max_ratio_bps) == (
        "finance director", "franchise contract", 4500)


@pytest.mark.parametrize("changes, expected", [
    ({"approved_by": ""}, ("approved_by", "required")),
    ({"approved_by": "x" * 65}, ("approved_by", "required")),
    ({"reason": "   "}, ("reason", "required")),
    ({"reason": None}, ("reason", "required")),
    ({"max_ratio_bps": 3000}, ("max_ratio_bps", "out_of_range")),
    ({"max_ratio_bps": 10001}, ("max_ratio_bps", "out_of_range")),
    ({"max_ratio_bps": True}, ("max_ratio_bps", "out_of_range")),
])
def test_an_approval_is_refused_naming_the_field(changes, expected):
    assert refusal(parse_approval, {**APPROVAL, **changes}) == expected


def test_an_approval_range_is_said_in_its_message():
    with pytest.raises(InvalidField) as caught:
        parse_approval({**APPROVAL, "max_ratio_bps": 2000})
    assert caught.value.message == "a high ratio is 3001 to 10000 bps"


# -- API clients ---------------------------------------------------------------------------------

def pem(key=None) -> str:
    return signing.public_key_pem((key or support.test_key()).public_key()).decode()


def test_a_client_becomes_its_request_with_the_key_serial():
    client = parse_new_client({"role": "tenant", "sub_mchid": "1900000201", "name": "till", "public_key": pem()})
    assert (client.role, client.sub_mchid, client.name) == ("tenant", "1900000201", "till")
    assert client.key.public_key_pem == pem()
    assert client.key.serial_no == serial_of(support.test_key().public_key())


def test_a_client_without_a_name_is_named_after_its_role():
    assert parse_new_client({"role": "finance", "public_key": pem()}).name == "finance"


def test_a_client_verifies_by_public_key_unless_it_asks_for_the_certificate():
    assert parse_new_client({"role": "finance", "public_key": pem()}).verification == "public_key"
    assert parse_new_client({"role": "finance", "public_key": pem(), "verification": None}).verification == "public_key"
    for mode in ("public_key", "certificate"):
        assert parse_new_client({"role": "finance", "public_key": pem(), "verification": mode}).verification == mode


@pytest.mark.parametrize("body, expected", [
    ([], ("body", "not_an_object")),
    ({"public_key": "k"}, ("name", "bad_length_or_characters")),
    ({"role": "admin", "name": "n" * 65}, ("name", "bad_length_or_characters")),
    ({"role": "owner"}, ("role", "unknown_role")),
    ({"role": "tenant"}, ("sub_mchid", "required_for_tenant_only")),
    ({"role": "admin", "sub_mchid": "1900000201"}, ("sub_mchid", "required_for_tenant_only")),
    ({"role": "tenant", "sub_mchid": "19x"}, ("sub_mchid", "bad_format")),
    ({"role": "admin"}, ("public_key", "required")),
    ({"role": "admin", "public_key": "not a key"}, ("public_key", "not_an_rsa_public_key")),
    ({"role": "admin", "public_key": pem(), "verification": "platform"}, ("verification", "unknown_verification")),
    ({"role": "admin", "public_key": pem(), "verification": "CERTIFICATE"}, ("verification", "unknown_verification")),
    ({"role": "admin", "public_key": pem(), "verification": ""}, ("verification", "unknown_verification")),
    ({"role": "admin", "public_key": pem(), "verification": ["certificate"]}, ("verification", "unknown_verification")),
    ({"role": "admin", "public_key": pem(), "verification": 1}, ("verification", "unknown_verification")),
])
def test_a_client_is_refused_naming_the_field(body, expected):
    assert refusal(parse_new_client, body) == expected


def test_a_small_key_is_refused():
    from cryptography.hazmat.primitives.asymmetric import rsa
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    assert refusal(parse_client_key, {"public_key": pem(small)}) == ("public_key", "key_too_small")


def test_another_key_is_its_pem_and_serial():
    key = parse_client_key({"public_key": pem(support.test_key(1))})
    assert (key.public_key_pem, key.serial_no) == (pem(support.test_key(1)), serial_of(support.test_key(1).public_key()))
    assert refusal(parse_client_key, "k") == ("body", "not_an_object")
    assert refusal(parse_client_key, {}) == ("public_key", "required")


# -- guides ----------------------------------------------------------------------------------

GUIDE = {"guide_id": "G-001", "sub_mchid": "1900000201", "openid": "o_guide_1", "name": "Li Na"}


def test_a_guide_becomes_its_registration():
    guide = parse_guide(GUIDE)
    assert (guide.guide_id, guide.sub_mchid, guide.openid, guide.name) == ("G-001", "1900000201", "o_guide_1", "Li Na")


@pytest.mark.parametrize("changes, expected", [
    ({"guide_id": "G 1"}, ("guide_id", "bad_format")),
    ({"sub_mchid": None}, ("sub_mchid", "bad_format")),
    ({"openid": "o!"}, ("openid", "bad_format")),
    ({"name": ""}, ("name", "bad_length_or_characters")),
    ({"name": "n" * 65}, ("name", "bad_length_or_characters")),
])
def test_a_guide_is_refused_naming_the_field(changes, expected):
    assert refusal(parse_guide, {**GUIDE, **changes}) == expected
    assert refusal(parse_guide, 7) == ("body", "not_an_object")


# -- coupon campaigns and subsidies ----------------------------------------------------------

CAMPAIGN = {"name": "20 off 100", "sub_mchid": "1900000201", "funded_by": "mall",
            "discount": {"type": "threshold", "amount": 2000, "threshold": 10000},
            "budget": {"amount": 200000, "count": 100}, "per_shopper_max": 1,
            "starts_at": "2026-12-01T10:00:00+08:00", "ends_at": "2026-12-31T22:00:00+08:00",
            "coupon_valid_seconds": 86400}


def test_a_campaign_becomes_its_spec():
    spec = parse_new_campaign(CAMPAIGN)
    assert (spec.sub_mchid, spec.funder, spec.discount_kind, spec.discount_fen, spec.threshold_fen) == (
        "1900000201", Funder.MALL, DiscountKind.THRESHOLD, 2000, 10000)
    assert spec.starts_at == datetime(2026, 12, 1, 2, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize("body, expected", [
    ([], ("body", "not_an_object")),
    ({**CAMPAIGN, "colour": 1}, ("colour", "unknown_field")),
    ({**CAMPAIGN, "discount": {"type": "threshold", "amount": 2000, "threshold": 1000}},
     ("discount.threshold", "not_above_amount")),
    ({**CAMPAIGN, "budget": {"amount": 1000, "count": 1}}, ("budget.amount", "below_one_coupon")),
    ({**CAMPAIGN, "ends_at": "2026-11-30T10:00:00+08:00"}, ("ends_at", "not_after_starts_at")),
    ({**CAMPAIGN, "starts_at": "2026-12-01T10:00:00"}, ("starts_at", "time_without_offset")),
])
def test_a_campaign_is_refused_naming_the_field(body, expected):
    assert refusal(parse_new_campaign, body) == expected


def test_a_campaign_refusal_keeps_the_rules_message():
    with pytest.raises(InvalidField) as caught:
        parse_new_campaign({**CAMPAIGN, "budget": {"amount": 1000, "count": 1}})
    assert caught.value.message == "the budget cannot pay for a single coupon"


def test_a_campaign_change_carries_what_it_asks_for():
    change = parse_campaign_change({"state": "paused", "budget": {"count": 50}})
    assert (change.state, change.budget_count, change.budget_fen) == (CampaignState.PAUSED, 50, None)


@pytest.mark.parametrize("body, expected", [
    ("x", ("body", "not_an_object")),
    ({}, ("body", "nothing_to_change")),
    ({"name": "new"}, ("name", "unknown_field")),
    ({"state": "gone"}, ("state", "unknown_value")),
    ({"per_shopper_max": 0}, ("per_shopper_max", "out_of_range")),
])
def test_a_campaign_change_is_refused_naming_the_field(body, expected):
    assert refusal(parse_campaign_change, body) == expected


PAYOUT = {"sub_mchid": "1900000201", "amount": 1500, "out_payout_no": "SUB-2026-12-01"}


def test_a_subsidy_payout_becomes_its_command():
    payout = parse_subsidy_payout(PAYOUT)
    assert (payout.sub_mchid, payout.amount_fen, payout.out_payout_no) == ("1900000201", 1500, "SUB-2026-12-01")


@pytest.mark.parametrize("body, expected", [
    (None, ("body", "not_an_object")),
    ({**PAYOUT, "note": "x"}, ("note", "unknown_field")),
    (with_changes(PAYOUT, {"amount": ...}), ("amount", "required")),
    ({**PAYOUT, "sub_mchid": "19x"}, ("sub_mchid", "bad_format")),
    ({**PAYOUT, "amount": "15"}, ("amount", "not_integer_fen")),
    ({**PAYOUT, "amount": 0}, ("amount", "out_of_range")),
    ({**PAYOUT, "out_payout_no": "S1"}, ("out_payout_no", "bad_format")),
])
def test_a_subsidy_payout_is_refused_naming_the_field(body, expected):
    assert refusal(parse_subsidy_payout, body) == expected


# -- operators' actions --------------------------------------------------------------------

def test_a_job_action_needs_a_reason():
    assert parse_job_reason({"reason": "settled by hand"}) == "settled by hand"
    assert refusal(parse_job_reason, []) == ("body", "not_an_object")
    assert refusal(parse_job_reason, {}) == ("reason", "required")
    assert refusal(parse_job_reason, {"reason": "  "}) == ("reason", "required")
    assert refusal(parse_job_reason, {"reason": "x" * 501}) == ("reason", "required")


def test_a_reconciliation_runs_a_past_day():
    today = date(2026, 12, 1)
    assert parse_reconciliation_day({"date": "2026-11-30"}, today) == date(2026, 11, 30)
    for body in ({"date": "2026-12-01"}, {"date": "2026-13-01"}, {"date": 20261130}, {}, "2026-11-30"):
        assert refusal(parse_reconciliation_day, body, today) == ("date", "bad_format")


# -- query strings and path values of listings and reports -------------------------------
# Each refusal is pinned as the client receives it: these were answered from the services
# before they were read here, and the answers stay what they were.

def answered(parse, *args) -> tuple[int, str, str, dict]:
    with pytest.raises(InvalidField) as caught:
        parse(*args)
    answer = wechat_answer(caught.value)
    return answer.status, answer.code, answer.message, answer.detail


def test_listing_and_report_queries_become_their_values():
    assert (parse_job_state(None), parse_job_state("resolved")) == (JobState.DEAD, JobState.RESOLVED)
    assert (parse_store_filter(None), parse_store_filter("1900000201")) == (None, "1900000201")
    assert (parse_window_days(None, 7), parse_window_days("1", 7), parse_window_days("90", 7)) == (7, 1, 90)
    assert parse_openid("oShopper_01-x") == "oShopper_01-x"


@pytest.mark.parametrize("parse, args, expected", [
    (parse_job_state, ("stuck",), (400, "PARAM_ERROR", "state is one of pending, done, dead, resolved",
                                   {"field": "state", "issue": "out_of_range"})),
    (parse_store_filter, ("shop-1",), (400, "PARAM_ERROR", "sub_mchid: bad_format",
                                       {"field": "sub_mchid", "issue": "bad_format"})),
    (parse_window_days, ("91", 7), (400, "PARAM_ERROR", "window_days must be 1 to 90",
                                    {"field": "window_days", "issue": "out_of_range"})),
    (parse_openid, ("o!shopper",), (400, "PARAM_ERROR", "openid: invalid_openid",
                                    {"field": "openid", "issue": "invalid_openid"})),
], ids=["job_state", "payout_store", "window_days", "openid"])
def test_a_listing_or_report_query_is_refused_as_it_always_was(parse, args, expected):
    assert answered(parse, *args) == expected


@pytest.mark.parametrize("value", ["", "0", "-1", "7d", " 7", "²", "\u0667", "1_0"])
def test_a_report_window_is_a_whole_number_of_days(value):
    assert answered(parse_window_days, value, 7)[3] == {"field": "window_days", "issue": "out_of_range"}


def test_an_empty_store_or_state_is_refused_not_taken_for_none():
    assert answered(parse_store_filter, "")[3] == {"field": "sub_mchid", "issue": "bad_format"}
    assert answered(parse_job_state, "")[3] == {"field": "state", "issue": "out_of_range"}
    assert answered(parse_sync_state, "")[3] == {"field": "state", "issue": "out_of_range"}


def test_a_points_sync_listing_names_one_of_its_states():
    assert [parse_sync_state(v) for v in (None, "dead", "pending", "synced")] == ["dead", "dead", "pending", "synced"]
    assert answered(parse_sync_state, "stuck") == (400, "PARAM_ERROR", "state: one of dead, pending, synced",
                                                   {"field": "state", "issue": "out_of_range"})


def test_who_acts_on_a_job_from_the_command_line_is_named_in_a_few_words():
    assert parse_acted_by(" ops lead ") == "ops lead"
    for value in ("", "   ", "x" * 65):
        assert answered(parse_acted_by, value) == (400, "PARAM_ERROR", "say who, in 1 to 64 characters",
                                                   {"field": "acted_by", "issue": "out_of_range"}), value


# -- finance queries (gateway/api/requests/ledger) -------------------------------------------

def test_a_day_an_instant_and_a_range_are_read():
    assert parse_day("2026-11-30", "date") == date(2026, 11, 30)
    assert parse_instant("2026-11-30T16:00:00+08:00") == datetime(2026, 11, 30, 8, 0, tzinfo=timezone.utc)
    assert parse_instant(None) is None
    # China-time days: `to` inclusive, so the range ends at the next day's China midnight
    assert export_range("2026-11-30", "2026-11-30") == (datetime(2026, 11, 29, 16, tzinfo=timezone.utc),
                                                       datetime(2026, 11, 30, 16, tzinfo=timezone.utc))


@pytest.mark.parametrize("parse, args, expected", [
    (parse_day, (None, "date"), ("date", "required")),
    (parse_day, ("2026-1-30", "date"), ("date", "bad_format")),
    (parse_day, ("2026-02-30", "to"), ("to", "bad_format")),
    (parse_instant, ("yesterday",), ("at", "bad_format")),
    (parse_instant, ("2026-11-30T16:00:00", "from"), ("from", "offset_required")),
    (export_range, (None, "2026-11-30"), ("from", "required")),
    (export_range, ("2026-11-30", None), ("to", "required")),
    (export_range, ("2026-11-30", "2026-11-29"), ("to", "to_before_from")),
    (export_range, ("2026-11-30T00:00:00Z", "2026-11-29T00:00:00Z"), ("to", "to_before_from")),
])
def test_a_finance_query_is_refused_naming_the_field(parse, args, expected):
    assert refusal(parse, *args) == expected


def test_a_statement_covers_one_to_thirty_one_days_from_its_date():
    first = date(2026, 11, 1)
    assert statement_period(first, first) == (first, first)
    assert statement_period(first, date(2026, 12, 1)) == (first, date(2026, 12, 1))
    for to_on, issue in ((date(2026, 10, 31), "to_before_date"), (date(2026, 12, 2), "period_too_long")):
        assert answered(statement_period, first, to_on) == (
            400, "PARAM_ERROR", "to is on or after date, at most 31 days on", {"field": "to", "issue": issue})
