"""The splits the gateway makes on its own (SPEC 5): the guide's reward, less what the
guide owes, and the contract's commission at the finish. Pure: each function reads an
order's funds (and the guide's debt) and decides; the scheduler does what it says.

Both use the room set aside for them at payment (`OrderFunds.paid`). A split the rules
would refuse is given up with the refusal's code as its reason: nothing moves, and the
room kept for it goes back to the mall (`funds.give_up`).
"""

from __future__ import annotations

from dataclasses import dataclass

from splitting.funds import COMMISSION, GUIDE_REWARD, OrderFunds, reserve_split
from splitting.rules import SplitRefused, share_fen


def refusal(funds: OrderFunds, amounts: list[tuple[str, bool, int]], purpose: str) -> str | None:
    """Why the rules would refuse this split of the gateway's own, or None. Parts of 0 fen
    are left out (nothing to split is not a refusal)."""
    amounts = [(account, returnable, fen) for account, returnable, fen in amounts if fen > 0]
    if not amounts:
        return None
    try:
        reserve_split(funds, amounts, purpose)
    except SplitRefused as exc:
        return exc.code
    return None


@dataclass(frozen=True, slots=True)
class GuideReward:
    """The guide's reward of one order, decided.

    `reward_fen` is the room set aside for it at payment. When it can be made, the store
    keeps `recovered_fen` of it against what the guide owes (it stays in the order's
    frozen money) and `paid_fen` is split to the guide: together exactly the reward. When
    it cannot, `refusal` says why, and nothing is recovered or paid."""

    reward_fen: int
    recovered_fen: int
    paid_fen: int
    refusal: str | None = None


def guide_reward(funds: OrderFunds, rewards_account: str, owed_fen: int) -> GuideReward:
    """The reward set aside for this order, less what the guide owes the store
    (`owed_fen`, recovered first, never more than the reward). A debt below zero (the
    store recovered more than was owed) is paid back with the reward, as before."""
    reward = funds.reward_set_aside_fen
    recovered = min(owed_fen, reward)
    paid = reward - recovered
    refused = refusal(funds, [(rewards_account, False, paid)], GUIDE_REWARD)
    if refused is not None:
        return GuideReward(reward_fen=reward, recovered_fen=0, paid_fen=0, refusal=refused)
    return GuideReward(reward_fen=reward, recovered_fen=recovered, paid_fen=paid)


@dataclass(frozen=True, slots=True)
class Commission:
    """The automatic commission of one order at its finish, decided.

    `due_fen` is the contract's share of what the shopper kept. `amount_fen` is what is
    split: the due within the room kept for it and the money still frozen. `refusal`
    says why a commission that is due cannot be made (then it is given up)."""

    due_fen: int
    amount_fen: int
    refusal: str | None = None


def commission(funds: OrderFunds, commission_bps: int, account: str) -> Commission:
    """The commission on what the shopper kept (a refund before the finish takes its
    part). After it the channel unfreezes the rest, so commission and release together
    are what was still frozen."""
    due = share_fen(funds.paid_fen - funds.refunded_fen, commission_bps)
    if due <= 0:
        return Commission(due_fen=0, amount_fen=0)
    room = funds.room_fen(COMMISSION)
    amount = min(due, room, funds.frozen_fen - funds.reserved_fen)
    if amount > 0:
        refused = refusal(funds, [(account, True, amount)], COMMISSION)
    else:
        refused = "no_room_in_cap" if room <= 0 else "nothing_frozen"
    return Commission(due_fen=due, amount_fen=amount if refused is None else 0, refusal=refused)
