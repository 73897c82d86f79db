"""Campaign rules: what a campaign offers, who pays for it, what triggers it, and the
checks every change must pass (money in int fen, budgets never below what is committed)."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from ledger.statements import DAY_MAX, DAY_MIN, within_days

NAME_CHARS_MAX = 64
TRIGGER_ITEMS_MAX = 64
TEXT_ITEM_CHARS_MAX = 32
AMOUNT_FEN_MAX = 10_000_000_00  # ten million yuan: far above any mall campaign
COUNT_MAX = 10_000_000
COUPON_VALID_S_MAX = 366 * 24 * 3600
SUB_MCHID_RE = re.compile(r"[0-9]{1,32}")


class CampaignInvalid(ValueError):
    """A campaign field breaks a rule; `field` and `issue` name it precisely."""

    def __init__(self, field: str, issue: str, message: str = ""):
        super().__init__(f"{field}: {issue}")
        self.field = field
        self.issue = issue
        self.message = message or f"{field}: {issue}"


class Funder(enum.Enum):
    STORE = "store"  # the redeeming store gives the discount: it simply receives less
    MALL = "mall"    # the mall owes the store the discount (mall:coupon_subsidy)


class DiscountKind(enum.Enum):
    AMOUNT_OFF = "amount_off"  # N fen off any order
    THRESHOLD = "threshold"    # N fen off an order of at least `threshold` fen ("20 off 100")


class CampaignState(enum.Enum):
    ACTIVE = "active"
    PAUSED = "paused"  # issues nothing; coupons already issued stay redeemable
    ENDED = "ended"    # final: issues nothing and its coupons are no longer redeemable


@dataclass(frozen=True)
class Trigger:
    """Which payments hand out this campaign's coupons; an empty list matches all."""

    stores: tuple[str, ...] = ()
    floors: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    min_spend_fen: int = 0

    def matches(self, *, sub_mchid: str, floor: str, category: str, amount_fen: int) -> bool:
        return ((not self.stores or sub_mchid in self.stores)
                and (not self.floors or floor in self.floors)
                and (not self.categories or category in self.categories)
                and amount_fen >= self.min_spend_fen)


@dataclass(frozen=True)
class CampaignSpec:
    """What a campaign's owner decides (everything but its counters)."""

    name: str
    sub_mchid: str  # the store where its coupons are redeemed
    funder: Funder
    discount_kind: DiscountKind
    discount_fen: int
    threshold_fen: int  # 0 for AMOUNT_OFF
    budget_fen: int
    budget_count: int
    daily_count_max: int | None
    per_shopper_max: int
    starts_at: datetime
    ends_at: datetime
    coupon_valid_s: int
    trigger: Trigger = field(default_factory=Trigger)

    def coupon_valid_until(self, issued_at: datetime) -> datetime:
        """A coupon is valid for `coupon_valid_s` but never past its campaign's end."""
        return min(issued_at + timedelta(seconds=self.coupon_valid_s), self.ends_at)


def min_spend_fen(kind: DiscountKind, discount_fen: int, threshold_fen: int) -> int:
    """The smallest original total a coupon applies to: the order must stay payable
    (at least 1 fen after the discount) and reach the threshold."""
    return max(discount_fen + 1, threshold_fen if kind is DiscountKind.THRESHOLD else 0)


def discounted_total_fen(discount_fen: int, coupon_min_spend_fen: int, original_total_fen: int) -> int | None:
    """What the shopper pays for `original_total_fen` with the coupon; None when it does
    not apply (below its minimum spend)."""
    assert discount_fen > 0 and original_total_fen > 0
    if original_total_fen < coupon_min_spend_fen:
        return None
    return original_total_fen - discount_fen


def parse_campaign(body: dict) -> CampaignSpec:
    """A new campaign from its JSON fields; CampaignInvalid names the first bad field."""
    _known(body, {"name", "sub_mchid", "funded_by", "discount", "budget", "daily_count_max",
                  "per_shopper_max", "starts_at", "ends_at", "coupon_valid_seconds", "trigger"}, "")
    discount = _object(body, "discount")
    _known(discount, {"type", "amount", "threshold"}, "discount.")
    kind = _enum(DiscountKind, discount, "type", "discount.type")
    discount_fen = _money(discount, "amount", "discount.amount")
    threshold_fen = 0
    if kind is DiscountKind.THRESHOLD:
        threshold_fen = _money(discount, "threshold", "discount.threshold")
        if threshold_fen <= discount_fen:
            raise CampaignInvalid("discount.threshold", "not_above_amount", "the threshold must exceed the discount")
    elif "threshold" in discount:
        raise CampaignInvalid("discount.threshold", "only_for_threshold_discounts")
    budget = _object(body, "budget")
    _known(budget, {"amount", "count"}, "budget.")
    spec = CampaignSpec(
        name=_text(body, "name", NAME_CHARS_MAX),
        sub_mchid=_store(body.get("sub_mchid"), "sub_mchid"),
        funder=_enum(Funder, body, "funded_by", "funded_by"),
        discount_kind=kind, discount_fen=discount_fen, threshold_fen=threshold_fen,
        budget_fen=_money(budget, "amount", "budget.amount"),
        budget_count=_count(budget, "count", "budget.count"),
        daily_count_max=_count(body, "daily_count_max", "daily_count_max") if "daily_count_max" in body else None,
        per_shopper_max=_count(body, "per_shopper_max", "per_shopper_max"),
        starts_at=_time(body, "starts_at"), ends_at=_time(body, "ends_at"),
        coupon_valid_s=_count(body, "coupon_valid_seconds", "coupon_valid_seconds", COUPON_VALID_S_MAX),
        trigger=_trigger(body.get("trigger", {})),
    )
    if spec.ends_at <= spec.starts_at:
        raise CampaignInvalid("ends_at", "not_after_starts_at")
    if spec.budget_fen < spec.discount_fen:
        raise CampaignInvalid("budget.amount", "below_one_coupon", "the budget cannot pay for a single coupon")
    return spec


@dataclass(frozen=True)
class CampaignChange:
    """A change to a running campaign: new budget totals, caps, end, or state."""

    budget_fen: int | None = None
    budget_count: int | None = None
    daily_count_max: int | None = None
    per_shopper_max: int | None = None
    ends_at: datetime | None = None
    state: CampaignState | None = None


def parse_change(body: dict) -> CampaignChange:
    _known(body, {"budget", "daily_count_max", "per_shopper_max", "ends_at", "state"}, "")
    if not body:
        raise CampaignInvalid("body", "nothing_to_change")
    budget = _object(body, "budget") if "budget" in body else {}
    _known(budget, {"amount", "count"}, "budget.")
    return CampaignChange(
        budget_fen=_money(budget, "amount", "budget.amount") if "amount" in budget else None,
        budget_count=_count(budget, "count", "budget.count") if "count" in budget else None,
        daily_count_max=_count(body, "daily_count_max", "daily_count_max") if "daily_count_max" in body else None,
        per_shopper_max=_count(body, "per_shopper_max", "per_shopper_max") if "per_shopper_max" in body else None,
        ends_at=_time(body, "ends_at") if "ends_at" in body else None,
        state=_enum(CampaignState, body, "state", "state") if "state" in body else None,
    )


def check_change(current_state: CampaignState, spec: CampaignSpec, change: CampaignChange,
                 committed_fen: int, committed_count: int) -> CampaignSpec:
    """The campaign after `change`, or CampaignInvalid. The database repeats the budget
    checks in the UPDATE itself, since issuance may commit more meanwhile."""
    if current_state is CampaignState.ENDED:
        raise CampaignInvalid("state", "campaign_ended", "an ended campaign cannot change")
    if change.budget_fen is not None and change.budget_fen < committed_fen:
        raise CampaignInvalid("budget.amount", "below_committed",
                              f"{committed_fen} fen are already committed to issued coupons")
    if change.budget_count is not None and change.budget_count < committed_count:
        raise CampaignInvalid("budget.count", "below_committed",
                              f"{committed_count} coupons are already issued")
    if change.ends_at is not None and change.ends_at <= spec.starts_at:
        raise CampaignInvalid("ends_at", "not_after_starts_at")
    return replace(
        spec,
        budget_fen=spec.budget_fen if change.budget_fen is None else change.budget_fen,
        budget_count=spec.budget_count if change.budget_count is None else change.budget_count,
        daily_count_max=spec.daily_count_max if change.daily_count_max is None else change.daily_count_max,
        per_shopper_max=spec.per_shopper_max if change.per_shopper_max is None else change.per_shopper_max,
        ends_at=spec.ends_at if change.ends_at is None else change.ends_at,
    )


def _trigger(raw) -> Trigger:
    if not isinstance(raw, dict):
        raise CampaignInvalid("trigger", "not_an_object")
    _known(raw, {"stores", "floors", "categories", "min_spend"}, "trigger.")
    stores = tuple(_store(s, "trigger.stores") for s in _list(raw, "stores"))
    return Trigger(
        stores=stores, floors=tuple(_short(v, "trigger.floors") for v in _list(raw, "floors")),
        categories=tuple(_short(v, "trigger.categories") for v in _list(raw, "categories")),
        min_spend_fen=_money(raw, "min_spend", "trigger.min_spend", allow_zero=True) if "min_spend" in raw else 0,
    )


def _known(body: dict, names: set[str], prefix: str) -> None:
    for name in body:
        if name not in names:
            raise CampaignInvalid(prefix + name, "unknown_field")


def _object(body: dict, name: str) -> dict:
    value = body.get(name)
    if not isinstance(value, dict):
        raise CampaignInvalid(name, "required" if value is None else "not_an_object")
    return value


def _list(body: dict, name: str) -> list:
    value = body.get(name, [])
    if not isinstance(value, list) or len(value) > TRIGGER_ITEMS_MAX:
        raise CampaignInvalid(f"trigger.{name}", "not_a_list")
    return value


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _money(body: dict, name: str, field_name: str, *, allow_zero: bool = False) -> int:
    value = body.get(name)
    if value is None:
        raise CampaignInvalid(field_name, "required")
    if not _is_int(value):
        raise CampaignInvalid(field_name, "not_integer_fen", "money is an integer number of fen")
    if value < 0 or (value == 0 and not allow_zero):
        raise CampaignInvalid(field_name, "negative" if value < 0 else "zero")
    if value > AMOUNT_FEN_MAX:
        raise CampaignInvalid(field_name, "too_large")
    return value


def _count(body: dict, name: str, field_name: str, maximum: int = COUNT_MAX) -> int:
    value = body.get(name)
    if value is None:
        raise CampaignInvalid(field_name, "required")
    if not _is_int(value):
        raise CampaignInvalid(field_name, "not_an_integer")
    if not 1 <= value <= maximum:
        raise CampaignInvalid(field_name, "out_of_range", f"{field_name} must be 1 to {maximum}")
    return value


def _text(body: dict, name: str, chars_max: int) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value.strip() or len(value) > chars_max:
        raise CampaignInvalid(name, "required" if value is None else "invalid_text")
    return value


def _short(value, field_name: str) -> str:
    if not isinstance(value, str) or not value or len(value) > TEXT_ITEM_CHARS_MAX:
        raise CampaignInvalid(field_name, "invalid_text")
    return value


def _store(value, field_name: str) -> str:
    if not isinstance(value, str) or not SUB_MCHID_RE.fullmatch(value):
        raise CampaignInvalid(field_name, "required" if value is None else "invalid_sub_mchid")
    return value


def _enum(kind, body: dict, name: str, field_name: str):
    value = body.get(name)
    try:
        return kind(value)
    except ValueError:
        raise CampaignInvalid(field_name, "required" if value is None else "unknown_value") from None


def _time(body: dict, name: str) -> datetime:
    value = body.get(name)
    if not isinstance(value, str):
        raise CampaignInvalid(name, "required" if value is None else "not_a_time")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise CampaignInvalid(name, "not_a_time") from None
    if parsed.tzinfo is None:
        raise CampaignInvalid(name, "time_without_offset", "times carry their offset (+08:00)")
    if not within_days(parsed):
        raise CampaignInvalid(name, "out_of_range", f"times are from {DAY_MIN} to {DAY_MAX}")
    return parsed


@dataclass(frozen=True)
class Campaign:
    campaign_id: int
    spec: CampaignSpec
    state: CampaignState

    def issues_at(self, at: datetime) -> bool:
        return self.state is CampaignState.ACTIVE and self.spec.starts_at <= at < self.spec.ends_at
