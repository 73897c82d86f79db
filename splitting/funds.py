"""One paid order's money at the channel, and every move that may touch it (SPEC 5).

`OrderFunds` is the order's state: what is still frozen, what was split to whom and
what came back, what was refunded. Each operation checks the rules and returns the new
state; none does I/O. The service layer keeps the state in the database, one row per
order locked while an operation runs, so concurrent requests see each other.

Split amounts are reserved when requested and confirmed (or released) when the channel
reports the result, so two requests in flight can never overspend the cap together.

The splits the gateway makes on its own (the guide's reward, the contract's commission)
have their room inside the cap set aside at payment (`reward_set_aside_fen`,
`commission_set_aside_fen`): a split asked for by the mall may use only what is left, so
it can never leave them without room. Each set-aside ends when its split is reserved
(`purpose`) or when the gateway gives it up with a recorded reason (`give_up`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ledger import accounts
from splitting.rules import (
    DEFAULT_MAX_RATIO_BPS, RECEIVERS_PER_SPLIT_MAX, SPLITS_PER_ORDER_MAX, SplitRefused, cap_fen, share_fen,
    share_of_remaining,
)

# Who asks for a split: the mall's backend through the API, or the gateway on its own.
API, GUIDE_REWARD, COMMISSION = "api", "guide_reward", "commission"
SET_ASIDE_FIELD = {GUIDE_REWARD: "reward_set_aside_fen", COMMISSION: "commission_set_aside_fen"}


@dataclass(frozen=True, slots=True)
class Line:
    """What one receiver got from this order and what has come back since.

    `account` is the receiver's ledger account (`mall:commission`, `guide:G:rewards`,
    `receiver:M`). `returnable`: a merchant can return money through the channel; a
    person (a guide) cannot, so their share of a refund is recorded as owed instead.
    """

    account: str
    returnable: bool
    split_fen: int = 0
    back_fen: int = 0  # returned (merchant) or recorded as owed (person)
    reserved_fen: int = 0  # requested for this receiver, result not known yet


@dataclass(frozen=True, slots=True)
class OrderFunds:
    paid_fen: int
    fee_fen: int
    max_ratio_bps: int
    frozen_fen: int  # still frozen at the channel for this order
    reserved_fen: int = 0  # requested splits whose result is not known yet
    splits_requested: int = 0
    lines: tuple[Line, ...] = ()
    unfrozen: bool = False
    refunded_fen: int = 0  # refunds planned, confirmed or in flight
    fee_refunded_fen: int = 0
    reward_set_aside_fen: int = 0  # room in the cap kept for the guide's reward
    commission_set_aside_fen: int = 0  # room in the cap kept for the automatic commission

    @classmethod
    def paid(cls, paid_fen: int, fee_fen: int, max_ratio_bps: int, *, profit_sharing: bool = True,
             guide_reward_bps: int = 0, commission_bps: int = 0) -> "OrderFunds":
        """An order's funds as payment success opens them. With profit sharing the store's
        share (all but the channel's fee) stays frozen for splitting, and room in the cap is
        set aside for the gateway's own splits: `guide_reward_bps` when the order names a
        guide of the store, `commission_bps` when the contract splits the commission
        automatically. Without, the channel pays the store at once: nothing is frozen and
        nothing can be split."""
        assert 0 <= fee_fen <= paid_fen and paid_fen > 0
        if not profit_sharing:
            return cls(paid_fen=paid_fen, fee_fen=fee_fen, max_ratio_bps=max_ratio_bps, frozen_fen=0, unfrozen=True)
        reward, commission = set_asides_fen(paid_fen, max_ratio_bps, guide_reward_bps, commission_bps)
        return cls(paid_fen=paid_fen, fee_fen=fee_fen, max_ratio_bps=max_ratio_bps,
                   frozen_fen=paid_fen - fee_fen, reward_set_aside_fen=reward,
                   commission_set_aside_fen=commission)

    @property
    def cap_fen(self) -> int:
        return cap_fen(self.paid_fen, self.max_ratio_bps)

    @property
    def split_away_fen(self) -> int:
        """Counted against the cap: confirmed splits plus reservations."""
        return sum(line.split_fen for line in self.lines) + self.reserved_fen

    @property
    def set_aside_fen(self) -> int:
        return self.reward_set_aside_fen + self.commission_set_aside_fen

    def room_fen(self, purpose: str = API) -> int:
        """What a split for `purpose` may still take from the cap: the mall's splits
        leave the gateway's set-asides alone; the gateway's own split uses its own."""
        own = getattr(self, SET_ASIDE_FIELD[purpose]) if purpose in SET_ASIDE_FIELD else 0
        return max(0, self.cap_fen - self.split_away_fen - (self.set_aside_fen - own))

    @property
    def splittable_fen(self) -> int:
        """What a new split by the mall may still take: frozen money, within the cap less
        what is set aside for the gateway's own splits."""
        if self.unfrozen:
            return 0
        return max(0, min(self.frozen_fen - self.reserved_fen, self.room_fen(API)))

    @property
    def refundable_fen(self) -> int:
        return self.paid_fen - self.refunded_fen

    @property
    def uses_approval(self) -> bool:
        """Split away (or reserved) beyond WeChat's default cap: only a high-ratio
        approval allows it, so a split that brings the order here names the approval."""
        return self.split_away_fen > cap_fen(self.paid_fen, DEFAULT_MAX_RATIO_BPS)

    def line(self, account: str) -> Line | None:
        return next((line for line in self.lines if line.account == account), None)


def capped(funds: OrderFunds, max_ratio_bps: int | None) -> OrderFunds:
    """The order's funds under the channel's own cap when it is lower than the contract's
    (the channel would refuse more); unchanged otherwise or when it is not known."""
    if max_ratio_bps is None or max_ratio_bps >= funds.max_ratio_bps:
        return funds
    return replace(funds, max_ratio_bps=max_ratio_bps)


def set_asides_fen(paid_fen: int, max_ratio_bps: int, guide_reward_bps: int, commission_bps: int) -> tuple[int, int]:
    """(reward, commission) kept inside the cap at payment, the reward first; each is its
    ratio of the paid total, floored, and together they never exceed the cap."""
    cap = cap_fen(paid_fen, max_ratio_bps)
    reward = min(share_fen(paid_fen, guide_reward_bps), cap)
    return reward, min(share_fen(paid_fen, commission_bps), cap - reward)


def give_up(funds: OrderFunds, purpose: str) -> OrderFunds:
    """The gateway will not make its own split for `purpose`: free the room kept for it."""
    return replace(funds, **{SET_ASIDE_FIELD[purpose]: 0})


def reserve_split(funds: OrderFunds, amounts: list[tuple[str, bool, int]], purpose: str = API) -> OrderFunds:
    """Reserve a split of (account, returnable, fen) parts asked for `purpose`; refuse what
    breaks a rule. The gateway's own split ends the room set aside for it."""
    assert purpose in (API, GUIDE_REWARD, COMMISSION), purpose
    if funds.unfrozen:
        raise SplitRefused("order_unfrozen", "the rest of this order was already released to the store")
    if not 1 <= len(amounts) <= RECEIVERS_PER_SPLIT_MAX:
        raise SplitRefused("receivers_out_of_range", f"1 to {RECEIVERS_PER_SPLIT_MAX} receivers per split")
    if funds.splits_requested >= SPLITS_PER_ORDER_MAX:
        raise SplitRefused("too_many_splits", f"at most {SPLITS_PER_ORDER_MAX} splits per order")
    if any(fen <= 0 for _, _, fen in amounts):
        raise SplitRefused("amount_not_positive", "every receiver's amount must be positive")
    if len({account for account, _, _ in amounts}) != len(amounts):
        raise SplitRefused("receiver_twice", "a receiver appears twice in one split")
    for account, returnable, _ in amounts:
        if returnable == accounts.is_guide_rewards(account):
            # A person cannot return money through the channel; only a guide's debt can be
            # recovered (from the guide's next rewards), so persons are guides only.
            raise SplitRefused("personal_receiver_not_a_guide",
                               "persons receive splits only as guides, and a guide cannot return money")
    total = sum(fen for _, _, fen in amounts)
    if total > funds.frozen_fen - funds.reserved_fen:
        raise SplitRefused("amount_exceeds_splittable", "more than the order still holds frozen",
                           splittable=funds.frozen_fen - funds.reserved_fen)
    allowed = funds.room_fen(purpose)
    if total > allowed:
        own = getattr(funds, SET_ASIDE_FIELD[purpose]) if purpose in SET_ASIDE_FIELD else 0
        raise SplitRefused("ratio_exceeded", "the split would take more than the cap allows",
                           asked=total, allowed=allowed, reserved=funds.set_aside_fen - own,
                           cap=funds.cap_fen, already=funds.split_away_fen)
    lines = list(funds.lines)
    for account, returnable, fen in amounts:
        index = next((i for i, line in enumerate(lines) if line.account == account), None)
        if index is None:
            lines.append(Line(account=account, returnable=returnable, reserved_fen=fen))
        else:
            lines[index] = replace(lines[index], reserved_fen=lines[index].reserved_fen + fen)
    if purpose in SET_ASIDE_FIELD:
        funds = give_up(funds, purpose)
    return replace(funds, reserved_fen=funds.reserved_fen + total,
                   splits_requested=funds.splits_requested + 1, lines=tuple(lines))


def record_split_result(funds: OrderFunds, account: str, fen: int, *, succeeded: bool) -> OrderFunds:
    """The channel's result for one receiver of a reserved split."""
    line = funds.line(account)
    assert line is not None and 0 < fen <= line.reserved_fen, (account, fen, line)
    assert fen <= funds.reserved_fen, (fen, funds.reserved_fen)
    recorded = replace(line, reserved_fen=line.reserved_fen - fen,
                      split_fen=line.split_fen + (fen if succeeded else 0))
    lines = tuple(recorded if l.account == account else l for l in funds.lines)
    frozen = funds.frozen_fen - fen if succeeded else funds.frozen_fen
    return replace(funds, reserved_fen=funds.reserved_fen - fen, frozen_fen=frozen, lines=lines)


def unfreeze(funds: OrderFunds) -> tuple[int, OrderFunds]:
    """Release everything still frozen to the store; no split may be in flight."""
    if funds.unfrozen:
        raise SplitRefused("order_unfrozen", "already released")
    if funds.frozen_fen == 0 and not funds.reserved_fen:
        raise SplitRefused("nothing_frozen", "nothing of this order is frozen any more")
    if funds.reserved_fen:
        raise SplitRefused("split_in_flight", "a split of this order is still being processed")
    return funds.frozen_fen, replace(funds, unfrozen=True, frozen_fen=0)


def undo_unfreeze(funds: OrderFunds, amount_fen: int) -> OrderFunds:
    """The channel refused an unfreeze: what it would have released is frozen again."""
    return replace(funds, unfrozen=False, frozen_fen=amount_fen)


def release_rest(funds: OrderFunds) -> tuple[int, OrderFunds]:
    """The channel released what is left of the order to the store on its own (after a
    split that asked it to, or at its own deadline); nothing may be in flight. Returns
    (released, funds); an order with nothing left frozen is simply marked released."""
    if funds.frozen_fen:
        return unfreeze(funds)
    assert not funds.reserved_fen and not funds.unfrozen, funds
    return 0, replace(funds, unfrozen=True)


def record_return(funds: OrderFunds, account: str, fen: int) -> OrderFunds:
    """A merchant receiver gave `fen` of its split back to the store at the mall's own
    request (a return for a refund is in the refund's plan): its line counts it as
    returned, so later refunds ask it only for what it still holds."""
    return replace(funds, lines=tuple(replace(line, back_fen=line.back_fen + fen) if line.account == account
                                      else line for line in funds.lines))


@dataclass(frozen=True, slots=True)
class RefundPlan:
    """How a refund of `refund_fen` is funded, in the order it must happen."""

    refund_fen: int
    returns: tuple[tuple[str, int], ...]  # merchant receivers return first (split returns)
    owed: tuple[tuple[str, int], ...]  # persons' shares, recorded as owed
    fee_back_fen: int  # the channel gives its fee back in proportion
    from_frozen_fen: int  # the store's part, frozen money of this order first
    from_available_fen: int  # then the store's available balance

    @property
    def available_draw_fen(self) -> int:
        """What this refund takes from the store's available balance, net of the split
        returns it brings into it first (negative: it brings more than it takes)."""
        return self.from_available_fen - sum(fen for _, fen in self.returns)

    def to_json(self) -> dict:
        """The plan as the refund row stores it (JSON): this class's fields by name, the
        (account, fen) pairs as two-element lists. `from_json` reads it back; queries
        that sum a field in SQL name it as it is named here."""
        return {"refund_fen": self.refund_fen, "returns": [[account, fen] for account, fen in self.returns],
                "owed": [[account, fen] for account, fen in self.owed], "fee_back_fen": self.fee_back_fen,
                "from_frozen_fen": self.from_frozen_fen, "from_available_fen": self.from_available_fen}

    @classmethod
    def from_json(cls, stored: dict) -> "RefundPlan":
        return cls(refund_fen=stored["refund_fen"],
                   returns=tuple((account, fen) for account, fen in stored["returns"]),
                   owed=tuple((account, fen) for account, fen in stored["owed"]),
                   fee_back_fen=stored["fee_back_fen"], from_frozen_fen=stored["from_frozen_fen"],
                   from_available_fen=stored["from_available_fen"])


def plan_refund(funds: OrderFunds, refund_fen: int) -> tuple[RefundPlan, OrderFunds]:
    """Each receiver gives back the share of its outstanding split that this refund is of
    what is still refundable; the channel gives its fee back by its own cumulative rule.
    The last refund of an order brings every split and the whole fee back exactly."""
    if refund_fen <= 0:
        raise SplitRefused("amount_not_positive", "the refund must be positive")
    if refund_fen > funds.refundable_fen:
        raise SplitRefused("amount_exceeds_refundable", "more than what is left to refund",
                           refundable=funds.refundable_fen)
    if funds.reserved_fen:
        raise SplitRefused("split_in_flight", "a split of this order is still being processed")
    remaining = funds.refundable_fen
    returns, owed, lines = [], [], []
    for line in funds.lines:
        due = share_of_remaining(line.split_fen - line.back_fen, refund_fen, remaining)
        if due > 0:
            (returns if line.returnable else owed).append((line.account, due))
            line = replace(line, back_fen=line.back_fen + due)
        lines.append(line)
    refunded = funds.refunded_fen + refund_fen
    # The channel's own rule for its fee: the part of the fee that the refunded total is of
    # the order, floored, less what it gave back before (so the last refund returns it all).
    # Never below what was given back already: when a refund counted by a later plan is
    # refused, the fee given back can be ahead of the rule until the refunds catch up.
    fee_refunded = max(funds.fee_fen * refunded // funds.paid_fen, funds.fee_refunded_fen)
    fee_back = fee_refunded - funds.fee_refunded_fen
    store_part = refund_fen - fee_back
    from_frozen = min(store_part, funds.frozen_fen)
    plan = RefundPlan(refund_fen=refund_fen, returns=tuple(returns), owed=tuple(owed), fee_back_fen=fee_back,
                      from_frozen_fen=from_frozen, from_available_fen=store_part - from_frozen)
    new = replace(funds, refunded_fen=refunded, fee_refunded_fen=fee_refunded, lines=tuple(lines),
                  frozen_fen=funds.frozen_fen - from_frozen)
    return plan, new


def undo_refund(funds: OrderFunds, plan: RefundPlan,
                not_returned: tuple[tuple[str, int], ...] = ()) -> tuple[int, OrderFunds]:
    """The channel refused a planned refund (or a split return it needed failed) and no
    refund money moved: the order gets back its refundable amount, the fee given back and
    the guides' shares recorded as owed. Merchants' split returns already made stay made:
    that money is with the store, so their lines keep it as returned. The plan's returns
    that were not made (`not_returned`, (account, fen) pairs: the one that failed and those
    never sent) are still with their receivers, so their lines hold them again.

    The plan's frozen part goes back to the freeze, unless the order was unfrozen
    meanwhile: the channel then released that money to the store too. Returns (released,
    funds): `released` is what to post as unfrozen (0 when it went back to the freeze)."""
    given_back = dict(plan.owed)
    for account, fen in not_returned:
        given_back[account] = given_back.get(account, 0) + fen
    assert all(fen <= dict(plan.returns).get(account, 0) for account, fen in
               _summed(not_returned)), (not_returned, plan.returns)
    lines = tuple(replace(line, back_fen=line.back_fen - given_back.get(line.account, 0)) for line in funds.lines)
    released = plan.from_frozen_fen if funds.unfrozen else 0
    return released, replace(funds, refunded_fen=funds.refunded_fen - plan.refund_fen,
                             fee_refunded_fen=funds.fee_refunded_fen - plan.fee_back_fen,
                             frozen_fen=funds.frozen_fen + plan.from_frozen_fen - released, lines=lines)


def _summed(pairs: tuple[tuple[str, int], ...]) -> list[tuple[str, int]]:
    total: dict[str, int] = {}
    for account, fen in pairs:
        total[account] = total.get(account, 0) + fen
    return list(total.items())


def allocate_returns(returns: tuple[tuple[str, int], ...],
                     splits: list[tuple[str, list[tuple[str | None, str, int]]]],
                     returned: dict[tuple[str, str], int]) -> list[tuple[str, str, str, int]]:
    """Which splits each merchant receiver's share of a refund (`returns`, as the plan
    has them) comes back from: the splits that paid it, newest first, each for no more
    than the receiver still holds of it.

    `splits` are the order's finished splits in the order they were made, each
    (out_order_no, parts) with parts (ledger account, receiver's mchid, fen); `returned`
    is what already came back, by (out_order_no, ledger account). Returns the split
    returns to make, (out_order_no, ledger account, receiver's mchid, fen), in order."""
    returned = dict(returned)
    made = []
    for account, due in returns:
        for out_order_no, parts in reversed(splits):
            for part_account, mchid, fen in parts:
                if due == 0 or part_account != account:
                    continue
                take = min(fen - returned.get((out_order_no, account), 0), due)
                if take <= 0:
                    continue
                made.append((out_order_no, account, mchid, take))
                returned[(out_order_no, account)] = returned.get((out_order_no, account), 0) + take
                due -= take
        assert due == 0, f"split returns cannot cover {account}"
    return made
