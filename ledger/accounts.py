"""Account names, currencies and the bound each account must respect (SPEC 4)."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Callable

CNY = "CNY"
PTS = "PTS"
CURRENCIES = frozenset({CNY, PTS})

PAYER = "payer"
CHANNEL_FEES = "channel:fees"
MALL_COMMISSION = "mall:commission"
MALL_COUPON_SUBSIDY = "mall:coupon_subsidy"
# Refunds the channel took from a store but could not pay out (WeChat's ABNORMAL refunds),
# waiting at the channel to be sent on by hand.
CHANNEL_REFUNDS_HELD = "channel:refunds_held"

# Every payment posts to these; they keep no balance row (their balance is the sum of
# their entries), so concurrent payments never queue behind one row lock.
HOT_ACCOUNTS = frozenset({PAYER, CHANNEL_FEES, MALL_COMMISSION})

SUB_MCHID_RE = re.compile(r"[0-9]{1,32}")


class Bound(enum.Enum):
    """Which side of zero an account's balance may stand on."""

    NON_NEGATIVE = "non_negative"
    NON_POSITIVE = "non_positive"
    ANY = "any"


@dataclass(frozen=True, slots=True)
class AccountSpec:
    name: str
    currency: str
    bound: Bound

    @property
    def hot(self) -> bool:
        return self.name in HOT_ACCOUNTS


def _owned(owner: str, purpose: str) -> Callable[[str], str]:
    """What names one kind of account every store (or guide) has: `owner:<its id>:purpose`."""

    def name(owner_id: str) -> str:
        return f"{owner}:{owner_id}:{purpose}"

    return name


tenant_frozen = _owned("tenant", "frozen")
tenant_available = _owned("tenant", "available")
tenant_settled = _owned("tenant", "settled")
tenant_owed_by_guides = _owned("tenant", "owed_by_guides")
guide_rewards = _owned("guide", "rewards")
guide_clawback = _owned("guide", "clawback")


def is_guide_rewards(account: str) -> bool:
    parts = account.split(":")
    return len(parts) == 3 and parts[0] == "guide" and parts[2] == "rewards"


def receiver(mchid: str) -> str:
    return f"receiver:{mchid}"


def mall_accounts() -> list[AccountSpec]:
    """The accounts every mall has from its first day."""
    return [
        # The outside world: shoppers' money comes in (balance goes negative) and refunds
        # go back out; it can never hold more than it received.
        AccountSpec(PAYER, CNY, Bound.NON_POSITIVE),
        AccountSpec(CHANNEL_FEES, CNY, Bound.NON_NEGATIVE),
        AccountSpec(MALL_COMMISSION, CNY, Bound.NON_NEGATIVE),
        AccountSpec(MALL_COUPON_SUBSIDY, CNY, Bound.ANY),
        AccountSpec(CHANNEL_REFUNDS_HELD, CNY, Bound.NON_NEGATIVE),
    ]


def tenant_accounts(sub_mchid: str) -> list[AccountSpec]:
    assert SUB_MCHID_RE.fullmatch(sub_mchid), sub_mchid
    return [
        AccountSpec(tenant_frozen(sub_mchid), CNY, Bound.NON_NEGATIVE),
        AccountSpec(tenant_available(sub_mchid), CNY, Bound.NON_NEGATIVE),
        AccountSpec(tenant_settled(sub_mchid), CNY, Bound.NON_NEGATIVE),
        # What the store's guides owe it after refunds of orders whose guide reward
        # could not be returned through the channel (SPEC 5).
        AccountSpec(tenant_owed_by_guides(sub_mchid), CNY, Bound.NON_NEGATIVE),
    ]


def guide_accounts(guide_id: str) -> list[AccountSpec]:
    return [
        # Rewards paid out to the guide's own WeChat balance: they never come back.
        AccountSpec(guide_rewards(guide_id), CNY, Bound.NON_NEGATIVE),
        # Negative while the guide owes rewards of refunded orders.
        AccountSpec(guide_clawback(guide_id), CNY, Bound.NON_POSITIVE),
    ]


def receiver_accounts(mchid: str) -> list[AccountSpec]:
    return [AccountSpec(receiver(mchid), CNY, Bound.NON_NEGATIVE)]


def balance_respects(bound: Bound, balance: int) -> bool:
    if bound is Bound.NON_NEGATIVE:
        return balance >= 0
    if bound is Bound.NON_POSITIVE:
        return balance <= 0
    return True
