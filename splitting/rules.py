"""Contract rules and the one rounding rule that turns ratios into fen (SPEC 5).

Ratios are basis points (1/10000). Every share is floored; when an amount must be
divided completely (a refund spread over receivers), the fen left over by flooring are
handed out one at a time in the parts' fixed order. The store keeps whatever a ratio
leaves. No floating point anywhere: sums of parts always equal the whole.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

BPS_DENOMINATOR = 10_000
# WeChat Pay's default cap on what may be split away from a store.
DEFAULT_MAX_RATIO_BPS = 3_000
FEE_RATE_BPS_MAX = 1_000  # a channel fee above 10% is a typo, not a contract
FREEZE_DAYS_MIN = 1
FREEZE_DAYS_MAX = 180  # WeChat keeps split funds frozen at most 180 days
RECEIVERS_PER_SPLIT_MAX = 50
SPLITS_PER_ORDER_MAX = 50


class SplitRefused(Exception):
    """An expected refusal with a stable code (`ratio_exceeded`, ...)."""

    def __init__(self, code: str, message: str, **detail):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Approval:
    """Who allowed a store a cap above 30%, when, why, and up to what ratio."""

    approved_by: str
    approved_at: datetime
    reason: str
    max_ratio_bps: int


@dataclass(frozen=True, slots=True)
class Contract:
    commission_bps: int
    max_ratio_bps: int
    fee_rate_bps: int
    freeze_days: int
    guide_reward_bps: int
    auto_split: bool
    approval: Approval | None = None


def check_contract(contract: Contract) -> None:
    """Refuse a contract that could split more than its cap allows, or a high ratio
    without an approval covering it."""
    for name in ("commission_bps", "max_ratio_bps", "guide_reward_bps"):
        value = getattr(contract, name)
        if not 0 <= value <= BPS_DENOMINATOR:
            raise SplitRefused("out_of_range", f"{name} must be 0..{BPS_DENOMINATOR}", field=name)
    if contract.max_ratio_bps > DEFAULT_MAX_RATIO_BPS:
        approval = contract.approval
        if approval is None:
            raise SplitRefused("approval_required", "a cap above 30% needs a high-ratio approval",
                               asked=contract.max_ratio_bps, allowed=DEFAULT_MAX_RATIO_BPS)
        if approval.max_ratio_bps < contract.max_ratio_bps:
            # The same cause as no approval at all: none covers this cap.
            raise SplitRefused("approval_required", "the cap is above what the approval allows",
                               asked=contract.max_ratio_bps, allowed=approval.max_ratio_bps)
    if not 0 <= contract.fee_rate_bps <= FEE_RATE_BPS_MAX:
        raise SplitRefused("out_of_range", f"fee_rate_bps must be 0..{FEE_RATE_BPS_MAX}", field="fee_rate_bps")
    if not FREEZE_DAYS_MIN <= contract.freeze_days <= FREEZE_DAYS_MAX:
        raise SplitRefused("out_of_range", f"freeze_days must be {FREEZE_DAYS_MIN}..{FREEZE_DAYS_MAX}",
                           field="freeze_days")
    check_automatic_within_cap(contract.commission_bps, contract.guide_reward_bps, contract.max_ratio_bps)


def check_automatic_within_cap(commission_bps: int, guide_reward_bps: int, max_ratio_bps: int) -> None:
    """What the gateway splits on its own (commission, guide reward) must fit the cap."""
    automatic = commission_bps + guide_reward_bps
    if automatic > max_ratio_bps:
        raise SplitRefused("ratio_exceeded", "commission and guide reward together exceed the cap",
                           asked=automatic, allowed=max_ratio_bps)


def finish_by(paid_at: datetime, freeze_days: int, margin_s: int) -> datetime:
    """When the gateway must finish an order itself: `margin_s` before the channel
    unfreezes it automatically, `freeze_days` after payment."""
    return paid_at + timedelta(days=freeze_days, seconds=-margin_s)


def share_fen(base_fen: int, ratio_bps: int) -> int:
    """floor(base × ratio / 10000)."""
    assert base_fen >= 0 and 0 <= ratio_bps <= BPS_DENOMINATOR
    return base_fen * ratio_bps // BPS_DENOMINATOR


def cap_fen(paid_total_fen: int, max_ratio_bps: int) -> int:
    """The most that may be split away from the store for one order."""
    return share_fen(paid_total_fen, max_ratio_bps)


def divide_exactly(amount_fen: int, weights: list[int]) -> list[int]:
    """Divide `amount_fen` in proportion to `weights`, parts summing to the amount.

    Each part is floored; the leftover fen go one each to the parts in list order.
    """
    assert amount_fen >= 0 and weights and all(w >= 0 for w in weights)
    total_weight = sum(weights)
    if total_weight == 0:
        assert amount_fen == 0
        return [0] * len(weights)
    parts = [amount_fen * w // total_weight for w in weights]
    leftover = amount_fen - sum(parts)
    assert 0 <= leftover < len(weights)
    index = 0
    while leftover:
        if weights[index]:
            parts[index] += 1
            leftover -= 1
        index += 1
    return parts


def share_of_remaining(outstanding_fen: int, part_fen: int, remaining_fen: int) -> int:
    """The share of `outstanding_fen` that goes with `part_fen` out of `remaining_fen`, floored.

    A refund takes from each receiver in proportion to what is still refundable, so the
    last refund (part == remaining) takes exactly what is outstanding: no fen is lost or
    made by rounding over a sequence of partial refunds, and a split made after an earlier
    refund answers only for the refunds that come after it.
    """
    assert 0 <= part_fen <= remaining_fen and remaining_fen > 0 and outstanding_fen >= 0
    return outstanding_fen * part_fen // remaining_fen
