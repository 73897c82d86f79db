"""Mall requests under /v3/mall: stores and their contracts, points rules, API clients and
their keys, guides, high-ratio approvals, coupon campaigns, subsidy payouts, job actions
and reconciliation runs, and the query strings and path values the listings and reports
read. The command line builds the same commands from its flags and parses them here too,
so a value is refused one way wherever it comes from.

Every refusal keeps the words the API has always answered with; `body_object` comes first.
"""

from __future__ import annotations

from datetime import date

from coupons.campaigns import CampaignChange, CampaignInvalid, CampaignSpec, parse_campaign, parse_change
from gateway import signing
from gateway.api.requests import body_object
from gateway.caller import VERIFICATION_MODES
from gateway.domain_errors import InvalidField, Refused
from gateway.formats import APPID_RE, GUIDE_ID_RE, MCHID_RE, OPENID_RE, OUT_TRADE_NO_RE
from gateway.services.coupon_redemption import PAYOUT_FIELDS, SubsidyPayout
from gateway.services.coupon_reports import WINDOW_DAYS_MAX
from gateway.services.points import SYNC_STATES
from gateway.services.onboarding import (
    CONTRACT_DEFAULTS, CONTRACT_LIMITS, NAME_CHARS_MAX, ROLES, ClientKey, ContractChange, NewClientRequest, Tenant,
    contract_of, serial_of,
)
from gateway.services.receivers import HighRatioApproval, NewGuide
from gateway.services.receivers import NAME_CHARS_MAX as GUIDE_NAME_CHARS_MAX
from gateway.services.receivers import REASON_CHARS_MAX as APPROVAL_REASON_CHARS_MAX
from gateway.services.stuck_jobs import ACTED_BY_CHARS_MAX as JOB_ACTED_BY_CHARS_MAX
from gateway.services.stuck_jobs import REASON_CHARS_MAX as JOB_REASON_CHARS_MAX
from gateway.services.stuck_jobs import JobState
from gateway.wire import ascii_int, iso_day
from ledger.accounts import SUB_MCHID_RE
from points.rules import POINTS_PER_YUAN_MAX
from splitting import rules
from splitting.rules import DEFAULT_MAX_RATIO_BPS

TENANT_FIELDS = frozenset({"sub_mchid", "name", "floor", "category", "sub_appid", "contract"})
HIGH_RATIO_BPS = (DEFAULT_MAX_RATIO_BPS + 1, rules.BPS_DENOMINATOR)
WINDOW_DIGITS_MAX = 9  # leading zeros are fine ("007"); the range check does the rest


# -- stores and their contracts (/v3/mall/tenants; mallpay tenant create) -------------------

def parse_tenant(mall_id: str, body) -> Tenant:
    """A store to onboard with its contract (API body or CLI flags). A cap above the default
    is refused here: it comes only with an approval record."""
    body = body_object(body)
    for name in body:
        if name not in TENANT_FIELDS:
            raise InvalidField(name, "unknown_field")
    sub_mchid = body.get("sub_mchid")
    if not isinstance(sub_mchid, str) or not MCHID_RE.fullmatch(sub_mchid):
        raise InvalidField("sub_mchid", "bad_format")
    texts = {}
    for name, required in (("name", True), ("floor", False), ("category", False)):
        value = body.get(name, "" if not required else None)
        if not isinstance(value, str) or len(value) > NAME_CHARS_MAX or (required and not value.strip()):
            raise InvalidField(name, "bad_length_or_characters")
        texts[name] = value
    sub_appid = body.get("sub_appid")
    if sub_appid is not None and (not isinstance(sub_appid, str) or not APPID_RE.fullmatch(sub_appid)):
        raise InvalidField("sub_appid", "bad_format")
    contract = contract_of(**_contract_terms(body.get("contract") or {}))
    rules.check_automatic_within_cap(contract.commission_bps, contract.guide_reward_bps, contract.max_ratio_bps)
    return Tenant(mall_id=mall_id, sub_mchid=sub_mchid, sub_appid=sub_appid, **texts, contract=contract)


def parse_contract_change(body) -> ContractChange:
    """New terms for a store: at least one, each known and in range. A new cap is carried as
    asked, for the service to refuse with the store's current one."""
    if not isinstance(body, dict) or not body:
        raise InvalidField("body", "not_an_object")
    asks_cap = "max_ratio_bps" in body
    terms = _contract_terms({name: value for name, value in body.items() if name != "max_ratio_bps"})
    return ContractChange(terms=terms, asks_cap=asks_cap, asked_max_ratio_bps=body.get("max_ratio_bps"))


def _contract_terms(given) -> dict:
    """The contract terms given, each checked; the ones not given are left out."""
    if not isinstance(given, dict):
        raise InvalidField("contract", "not_an_object")
    terms = {}
    for name, value in given.items():
        if name not in CONTRACT_DEFAULTS:
            raise InvalidField(f"contract.{name}", "unknown_field")
        if name == "auto_split":
            if not isinstance(value, bool):
                raise InvalidField("contract.auto_split", "not_a_boolean")
        elif not isinstance(value, int) or isinstance(value, bool):
            raise InvalidField(f"contract.{name}", "not_an_integer")
        elif name == "max_ratio_bps" and value > DEFAULT_MAX_RATIO_BPS:
            raise Refused("approval_required", "a cap above 30% needs a high-ratio approval record",
                          asked=value, allowed=DEFAULT_MAX_RATIO_BPS)
        else:
            low, high = CONTRACT_LIMITS[name]
            if not low <= value <= high:
                raise InvalidField(f"contract.{name}", "out_of_range", f"contract.{name}: {low} to {high}")
        terms[name] = value
    return terms


def parse_points_rule(body) -> int:
    """A store's points per paid yuan."""
    body = body_object(body)
    for name in body:
        if name != "points_per_yuan":
            raise InvalidField(name, "unknown_field")
    if "points_per_yuan" not in body:
        raise InvalidField("points_per_yuan", "required")
    rate = body["points_per_yuan"]
    if isinstance(rate, bool) or not isinstance(rate, int):
        raise InvalidField("points_per_yuan", "not_an_integer")
    if not 0 <= rate <= POINTS_PER_YUAN_MAX:
        raise InvalidField("points_per_yuan", "out_of_range", f"points_per_yuan: 0 to {POINTS_PER_YUAN_MAX}")
    return rate


def parse_approval(body) -> HighRatioApproval:
    """Who allowed a store to split more than 30% away, how much and why."""
    body = body_object(body)
    approved_by, reason, ratio = body.get("approved_by"), body.get("reason"), body.get("max_ratio_bps")
    if not isinstance(approved_by, str) or not 1 <= len(approved_by) <= GUIDE_NAME_CHARS_MAX:
        raise InvalidField("approved_by", "required")
    if not isinstance(reason, str) or not 1 <= len(reason.strip()) <= APPROVAL_REASON_CHARS_MAX:
        raise InvalidField("reason", "required")
    low, high = HIGH_RATIO_BPS
    if not isinstance(ratio, int) or isinstance(ratio, bool) or not low <= ratio <= high:
        raise InvalidField("max_ratio_bps", "out_of_range", f"a high ratio is {low} to {high} bps")
    return HighRatioApproval(approved_by=approved_by, reason=reason, max_ratio_bps=ratio)


# -- API clients and their keys (/v3/mall/clients; mallpay client create) -------------------

def parse_new_client(body) -> NewClientRequest:
    """A client to register: its role, its store (a `tenant` only), a name (the role when
    none is given), its first key and how it verifies the gateway's signatures
    (`verification`: public_key when none is given)."""
    body = body_object(body)
    name = body.get("name") or body.get("role")
    if not isinstance(name, str) or len(name) > NAME_CHARS_MAX:
        raise InvalidField("name", "bad_length_or_characters")
    role, sub_mchid = body.get("role"), body.get("sub_mchid")
    if not isinstance(role, str) or role not in ROLES:
        raise InvalidField("role", "unknown_role", f"role is one of {', '.join(ROLES)}")
    if (role == "tenant") != (sub_mchid is not None):
        raise InvalidField("sub_mchid", "required_for_tenant_only")
    if sub_mchid is not None and (not isinstance(sub_mchid, str) or not MCHID_RE.fullmatch(sub_mchid)):
        raise InvalidField("sub_mchid", "bad_format")
    verification = body.get("verification")
    if verification is None:
        verification = "public_key"
    if not isinstance(verification, str) or verification not in VERIFICATION_MODES:
        raise InvalidField("verification", "unknown_verification",
                           f"verification is one of {', '.join(VERIFICATION_MODES)}")
    return NewClientRequest(role=role, sub_mchid=sub_mchid, name=name, key=_client_key(body.get("public_key")),
                            verification=verification)


def parse_client_key(body) -> ClientKey:
    """Another key for a client (rotation)."""
    return _client_key(body_object(body).get("public_key"))


def _client_key(pem) -> ClientKey:
    if not isinstance(pem, str):
        raise InvalidField("public_key", "required")
    try:
        key = signing.load_public_key(pem)
    except (ValueError, AssertionError, TypeError):
        raise InvalidField("public_key", "not_an_rsa_public_key") from None
    if key.key_size < 2048:
        raise InvalidField("public_key", "key_too_small")
    return ClientKey(public_key_pem=pem, serial_no=serial_of(key))


# -- guides (/v3/mall/guides; mallpay guide create) -------------------------------------------

def parse_guide(body) -> NewGuide:
    body = body_object(body)
    guide_id, sub_mchid = body.get("guide_id"), body.get("sub_mchid")
    openid, name = body.get("openid"), body.get("name")
    if not isinstance(guide_id, str) or not GUIDE_ID_RE.fullmatch(guide_id):
        raise InvalidField("guide_id", "bad_format")
    if not isinstance(sub_mchid, str) or not MCHID_RE.fullmatch(sub_mchid):
        raise InvalidField("sub_mchid", "bad_format")
    if not isinstance(openid, str) or not OPENID_RE.fullmatch(openid):
        raise InvalidField("openid", "bad_format")
    if not isinstance(name, str) or not 1 <= len(name) <= GUIDE_NAME_CHARS_MAX:
        raise InvalidField("name", "bad_length_or_characters")
    return NewGuide(guide_id=guide_id, sub_mchid=sub_mchid, openid=openid, name=name)


# -- coupon campaigns and their subsidies ------------------------------------------------------

def parse_new_campaign(body) -> CampaignSpec:
    """A campaign as its rules define it (`coupons.campaigns`); which stores exist and who
    may fund it are the service's to decide."""
    return _by_campaign_rules(parse_campaign, body)


def parse_campaign_change(body) -> CampaignChange:
    """What a campaign change asks for; whether the campaign can take it is the service's."""
    return _by_campaign_rules(parse_change, body)


def _by_campaign_rules(parse, body):
    try:
        return parse(body_object(body))
    except CampaignInvalid as exc:
        raise InvalidField(exc.field, exc.issue, exc.message) from None


def parse_subsidy_payout(body) -> SubsidyPayout:
    body = body_object(body)
    for name in body:
        if name not in PAYOUT_FIELDS:
            raise InvalidField(name, "unknown_field")
    for name in PAYOUT_FIELDS:
        if name not in body:
            raise InvalidField(name, "required")
    sub_mchid, amount, out_payout_no = (body[name] for name in PAYOUT_FIELDS)
    _payout_store(sub_mchid)
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise InvalidField("amount", "not_integer_fen")
    if amount <= 0:
        raise InvalidField("amount", "out_of_range", "amount: at least 1 fen")
    if not isinstance(out_payout_no, str) or not OUT_TRADE_NO_RE.fullmatch(out_payout_no):
        raise InvalidField("out_payout_no", "bad_format", "out_payout_no: 6 to 32 of [0-9A-Za-z_-|*]")
    return SubsidyPayout(sub_mchid=sub_mchid, amount_fen=amount, out_payout_no=out_payout_no)


def parse_store_filter(value: str | None) -> str | None:
    """The one store a listing or a bill is limited to (`?sub_mchid`, `--sub-mchid`):
    payouts, coupon-subsidy payouts, the bills; every store's when none is named."""
    return None if value is None else _payout_store(value)


def _payout_store(value) -> str:
    if not isinstance(value, str) or not SUB_MCHID_RE.fullmatch(value):
        raise InvalidField("sub_mchid", "bad_format")
    return value


def parse_window_days(value: str | None, default_days: int) -> int:
    """How many days after each decision a coupon report counts visits (`?window_days`,
    `--window-days`); the mall's setting when none is given."""
    if value is None:
        return default_days
    days = ascii_int(value, WINDOW_DIGITS_MAX)
    if days is None or not 1 <= days <= WINDOW_DAYS_MAX:
        raise InvalidField("window_days", "out_of_range", f"window_days must be 1 to {WINDOW_DAYS_MAX}")
    return days


# -- members (/v3/mall/members/{openid}/...) -------------------------------------------------

def parse_openid(value: str) -> str:
    """The shopper a member path names."""
    if not OPENID_RE.fullmatch(value):
        raise InvalidField("openid", "invalid_openid")
    return value


# -- operators' actions --------------------------------------------------------------------

def parse_job_reason(body) -> str:
    """Why an admin retries or resolves a job that gave up (kept in the record)."""
    reason = body_object(body).get("reason")
    if not isinstance(reason, str) or not 1 <= len(reason.strip()) <= JOB_REASON_CHARS_MAX:
        raise InvalidField("reason", "required", f"say why, in 1 to {JOB_REASON_CHARS_MAX} characters")
    return reason


def parse_acted_by(value: str) -> str:
    """Who retries or resolves a job from the command line (`--by`, kept in the record);
    through the API it is the admin client's own id."""
    if not 1 <= len(value.strip()) <= JOB_ACTED_BY_CHARS_MAX:
        raise InvalidField("acted_by", "out_of_range", f"say who, in 1 to {JOB_ACTED_BY_CHARS_MAX} characters")
    return value.strip()


def parse_sync_state(value: str | None) -> str:
    """The state a points-sync listing asks for (`?state`, `--state`); the changes WeChat
    never took (`dead`) when none is named."""
    if value is None:
        return "dead"
    if value not in SYNC_STATES:
        raise InvalidField("state", "out_of_range", f"state: one of {', '.join(SYNC_STATES)}")
    return value


def parse_job_state(value: str | None) -> JobState:
    """The state a job listing asks for (`?state`, `--state`); the jobs that gave up when
    none is named."""
    if value is None:
        return JobState.DEAD
    try:
        return JobState(value)
    except ValueError:
        raise InvalidField("state", "out_of_range",
                           f"state is one of {', '.join(state.value for state in JobState)}") from None


def parse_reconciliation_day(body, today: date) -> date:
    """The China-time day to reconcile: a past one (its bills exist from the next day)."""
    bill_on = iso_day(body.get("date")) if isinstance(body, dict) else None
    if bill_on is None or bill_on >= today:
        raise InvalidField("date", "bad_format", "date must be a past day, yyyy-MM-DD (China time)")
    return bill_on
