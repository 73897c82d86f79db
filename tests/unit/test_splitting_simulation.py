"""Seeded random histories of a small mall through the pure splitting core (SPEC 4, 5).

Each history pays orders at three stores (with profit sharing or not, some naming a
guide), splits guide rewards, commissions and brand shares, lets the channel's results
arrive out of order or fail, unfreezes, refunds partly or fully, repeats requests and
notifications, and jumps the clock past freeze deadlines, where the gateway must split the
commission by contract and unfreeze. Every step's transfers from splitting/postings.py are
applied to a model ledger, and after every step the SPEC 4 invariants are checked on it,
together with the ties between the ledger and each order's `OrderFunds`.

The `Mall` class plays the service layer as SPEC 2.4 and 5 ask of it: an idempotency map of
request keys (a repeated key with the same request is answered from the map with no effect,
with another request refused as reused; refused requests store nothing), jobs run in the
order they fall due (the guide's reward 65 s after payment, the finish a day before the
channel's auto-unfreeze), room in the cap set aside at payment for the guide's reward and
the automatic commission, the reward less the guide's debt and the commission decided by
`splitting.own_splits` as the scheduler decides them (the reward made at the finish when
its job has not run yet, the rest released by the channel after the commission), a refund
refused when the store's available balance cannot fund it (the channel's NOT_ENOUGH). A
failure names its seed; replay one history with `run_history(seed)`.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone

from ledger import accounts
from ledger.accounts import Bound, balance_respects
from ledger.payments import channel_fee_fen, payment_transfer
from ledger.transfers import Transfer
from splitting import postings
from splitting import own_splits
from splitting.funds import (
    API, COMMISSION, GUIDE_REWARD, OrderFunds, give_up, plan_refund, release_rest, reserve_split,
    record_split_result, unfreeze,
)
from splitting.rules import (
    BPS_DENOMINATOR, DEFAULT_MAX_RATIO_BPS, RECEIVERS_PER_SPLIT_MAX, Approval, Contract, SplitRefused, cap_fen,
    check_contract, share_fen,
)

SEEDS = 3000
STEPS_PER_HISTORY = 40
STORES = ("1900000201", "1900000202", "1900000203")
GUIDES_PER_STORE = 1
BRANDS = ("1900000901", "1900000902")
DAY_S = 86_400
FINISH_MARGIN_S = DAY_S  # the gateway finishes a frozen order a day before the channel would
REWARD_AFTER_S = 65  # the guide's reward job: the channel refuses splits in the first minute
SPLIT_SUCCESS_PERCENT = 80
PURPOSES = {"guide_reward": GUIDE_REWARD, "commission": COMMISSION}  # anything else is the mall's (API)
APPROVED_AT = datetime(2026, 3, 1, 9, 0, tzinfo=timezone.utc)


class Refused(Exception):
    """The service's refusal: a SplitRefused code, `not_enough` or `*_reused`."""

    def __init__(self, code: str):
        super().__init__(code)
        self.code = code


def guides_of(store: str) -> list[str]:
    return [f"g{store[-1]}{n}" for n in range(GUIDES_PER_STORE)]


class ModelLedger:
    """Account balances, the accounts' bounds, and the (kind, ref) pairs posted so far
    (the database keeps them unique, so one event can never be posted twice)."""

    def __init__(self):
        specs = accounts.mall_accounts()
        for store in STORES:
            specs += accounts.tenant_accounts(store)
            for guide in guides_of(store):
                specs += accounts.guide_accounts(guide)
        for brand in BRANDS:
            specs += accounts.receiver_accounts(brand)
        self.bounds: dict[str, Bound] = {spec.name: spec.bound for spec in specs}
        self.balances: Counter[str] = Counter()
        self.posted: set[tuple[str, str]] = set()

    def post(self, transfer: Transfer) -> None:
        assert transfer.currency == accounts.CNY
        assert (transfer.kind, transfer.ref) not in self.posted, f"posted twice: {transfer.kind} {transfer.ref}"
        unknown = [account for account in transfer.accounts if account not in self.bounds]
        assert not unknown, f"transfer to accounts no mall has: {unknown}"
        self.posted.add((transfer.kind, transfer.ref))
        for account, fen in zip(transfer.accounts, transfer.amounts_fen):
            self.balances[account] += fen

    def nonzero(self) -> dict[str, int]:
        return {account: fen for account, fen in self.balances.items() if fen}

    def snapshot(self) -> tuple:
        return tuple(sorted(self.nonzero().items())), len(self.posted)

    def check(self) -> None:
        assert sum(self.balances.values()) == 0, "balances do not sum to zero"
        for account, balance in self.balances.items():
            assert balance_respects(self.bounds[account], balance), f"{account} = {balance} breaks its bound"


@dataclass
class Order:
    store: str
    out_trade_no: str
    paid_at_s: int
    profit_sharing: bool
    guide: str | None
    funds: OrderFunds
    finish_by_s: int | None  # when the gateway finishes it, a margin before the channel would
    unfreeze_by_s: int | None  # when the channel would release it by itself
    in_flight: dict[str, tuple[str, list[tuple[str, bool, int]]]] = field(default_factory=dict)
    commission_done: bool = False
    reward_done: bool = False
    unfrozen_fen: int = 0  # released by unfreeze (or settled straight to available)
    from_frozen_fen: int = 0
    from_available_fen: int = 0
    returned_fen: int = 0  # split returns from merchant receivers into available
    checked_funds: OrderFunds | None = None  # the state last checked, and what it adds to the ledger
    ledger_share: dict[str, int] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        f = self.funds
        return f.unfrozen or (f.frozen_fen == 0 and not f.reserved_fen)


def random_contract(rng: random.Random) -> Contract:
    max_ratio_bps = rng.choice([0, 1000, DEFAULT_MAX_RATIO_BPS, DEFAULT_MAX_RATIO_BPS,
                                rng.randint(0, BPS_DENOMINATOR), BPS_DENOMINATOR])
    commission_bps = rng.randint(0, max_ratio_bps // 2)
    guide_reward_bps = rng.randint(0, max_ratio_bps - commission_bps)
    approval = None
    if max_ratio_bps > DEFAULT_MAX_RATIO_BPS:
        approval = Approval("finance:lin", APPROVED_AT, "franchise brand", rng.randint(max_ratio_bps, BPS_DENOMINATOR))
    contract = Contract(commission_bps=commission_bps, max_ratio_bps=max_ratio_bps,
                        fee_rate_bps=rng.choice([0, 60, 60, 38, rng.randint(0, 1000)]),
                        freeze_days=rng.choice([1, 7, 30, 30]), guide_reward_bps=guide_reward_bps,
                        auto_split=rng.random() < 0.8, approval=approval)
    check_contract(contract)
    return contract


class Mall:
    def __init__(self, rng: random.Random, stats: Counter):
        self.rng = rng
        self.stats = stats
        self.contracts = {store: random_contract(rng) for store in STORES}
        self.ledger = ModelLedger()
        self.orders: list[Order] = []
        self.done: dict[tuple, tuple[tuple, object]] = {}  # idempotency key -> (request, response)
        self.owed: Counter[tuple[str, str]] = Counter()  # (store, guide) -> what the guide owes the store
        self.now_s = 0
        self.serial = 0
        self.orders_share: Counter[str] = Counter()  # Σ ledger_share over the orders

    def number(self, prefix: str) -> str:
        self.serial += 1
        return f"{prefix}{self.serial:06d}"

    # -- the idempotency map ------------------------------------------------------------

    def handle(self, key: tuple, request: tuple, effect) -> object:
        """Run `effect` once per key. A refused request stores nothing (it may be retried)."""
        if key in self.done:
            stored_request, response = self.done[key]
            if stored_request != request:
                raise Refused(f"{key[0]}_no_reused")
            return response
        try:
            response = effect()
        except SplitRefused as refused:
            self.stats[f"refused {key[0]}: {refused.code}"] += 1
            raise Refused(refused.code) from None
        self.done[key] = (request, response)
        return response

    # -- commands -----------------------------------------------------------------------

    def pay(self, store: str, total_fen: int, profit_sharing: bool, guide: str | None) -> Order:
        contract = self.contracts[store]
        out_trade_no = self.number("T")
        fee_fen = channel_fee_fen(total_fen, contract.fee_rate_bps)

        def effect():
            self.ledger.post(payment_transfer(sub_mchid=store, out_trade_no=out_trade_no, total_fen=total_fen,
                                              fee_fen=fee_fen, profit_sharing=profit_sharing))
            # Without profit sharing the channel pays the store at once: nothing to split.
            funds = OrderFunds.paid(total_fen, fee_fen, contract.max_ratio_bps, profit_sharing=profit_sharing,
                                    guide_reward_bps=contract.guide_reward_bps if guide else 0,
                                    commission_bps=contract.commission_bps if contract.auto_split else 0)
            if profit_sharing:
                unfreeze_by_s = self.now_s + contract.freeze_days * DAY_S
                finish_by_s = unfreeze_by_s - FINISH_MARGIN_S
            else:
                finish_by_s = unfreeze_by_s = None
            order = Order(store, out_trade_no, self.now_s, profit_sharing, guide, funds, finish_by_s, unfreeze_by_s,
                          unfrozen_fen=0 if profit_sharing else total_fen - fee_fen)
            self.orders.append(order)
            return order

        return self.handle(("pay", store, out_trade_no), (total_fen, profit_sharing, guide), effect)

    def request_split(self, order: Order, purpose: str, parts: list[tuple[str, bool, int]],
                      out_order_no: str | None = None) -> str:
        out_order_no = out_order_no or self.number("P")

        def effect():
            order.funds = reserve_split(order.funds, parts, PURPOSES.get(purpose, API))
            order.in_flight[out_order_no] = (purpose, parts)
            return out_order_no

        return self.handle(("split", order.store, out_order_no), (order.out_trade_no, purpose, tuple(parts)), effect)

    def split_result(self, order: Order, out_order_no: str, results: tuple[bool, ...]) -> None:
        """The channel's result of one split order (a notification: it may come twice)."""

        def effect():
            _, parts = order.in_flight.pop(out_order_no)
            confirmed = []
            for (account, _, fen), succeeded in zip(parts, results):
                order.funds = record_split_result(order.funds, account, fen, succeeded=succeeded)
                if succeeded:
                    confirmed.append((account, fen))
            if confirmed:  # one transfer per split order: its (kind, ref) is unique
                self.ledger.post(postings.split_transfer(order.store, out_order_no, confirmed))
            self.stats["split results"] += 1
            return tuple(confirmed)

        self.handle(("split_result", order.store, out_order_no), results, effect)

    def unfreeze(self, order: Order, out_order_no: str | None = None) -> int:
        out_order_no = out_order_no or self.number("U")

        def effect():
            released, order.funds = unfreeze(order.funds)
            self.ledger.post(postings.unfreeze_transfer(order.store, out_order_no, released))
            order.unfrozen_fen += released
            return released

        return self.handle(("unfreeze", order.store, out_order_no), (order.out_trade_no,), effect)

    def refund(self, order: Order, refund_fen: int, out_refund_no: str | None = None) -> object:
        out_refund_no = out_refund_no or self.number("R")
        store = order.store

        def effect():
            plan, funds = plan_refund(order.funds, refund_fen)
            returned = sum(fen for _, fen in plan.returns)
            available = self.ledger.balances[accounts.tenant_available(store)]
            if available + returned < plan.from_available_fen:
                # The channel answers NOT_ENOUGH; the service makes no returns for it.
                self.stats["refused refund: not_enough"] += 1
                raise Refused("not_enough")
            for number, (account, fen) in enumerate(plan.returns):
                self.ledger.post(postings.return_transfer(store, f"{out_refund_no}-{number}", account, fen))
            if plan.owed:
                self.ledger.post(postings.owed_transfer(store, out_refund_no, list(plan.owed)))
                for account, fen in plan.owed:
                    self.owed[store, account.split(":")[1]] += fen
                self.stats["refunds with a guide's share owed"] += 1
            self.ledger.post(postings.refund_transfer(store, out_refund_no, plan))
            order.funds = funds
            order.returned_fen += returned
            order.from_frozen_fen += plan.from_frozen_fen
            order.from_available_fen += plan.from_available_fen
            self.stats["refunds"] += 1
            return plan

        return self.handle(("refund", store, out_refund_no), (order.out_trade_no, refund_fen), effect)

    # -- what the gateway does by itself ----------------------------------------------

    def guide_reward(self, order: Order) -> str | None:
        """The reward set aside at payment, less what the guide owes this store (recovered
        first), as the scheduler makes it; given up when the rules refuse it."""
        owed = self.owed[order.store, order.guide]
        decided = own_splits.guide_reward(order.funds, accounts.guide_rewards(order.guide), owed)
        out_order_no = f"GR{order.out_trade_no}"
        order.reward_done = True
        # Never more than earned, never more recovered than owed.
        assert decided.paid_fen + decided.recovered_fen <= decided.reward_fen and 0 <= decided.recovered_fen <= owed
        if decided.refusal is not None:
            order.funds = give_up(order.funds, GUIDE_REWARD)
            self.stats[f"guide rewards given up: {decided.refusal}"] += 1
            return None
        if decided.recovered_fen:  # kept by the store; it stays in the order's frozen money
            self.ledger.post(postings.recovery_transfer(order.store, out_order_no, order.guide,
                                                        decided.recovered_fen))
            self.owed[order.store, order.guide] -= decided.recovered_fen
            self.stats["guide rewards recovered from"] += 1
        if decided.paid_fen <= 0:
            order.funds = give_up(order.funds, GUIDE_REWARD)
            return None
        self.stats["guide rewards requested"] += 1
        return self.request_split(order, "guide_reward", [(accounts.guide_rewards(order.guide), False,
                                                           decided.paid_fen)], out_order_no)

    def mall_commission(self, order: Order) -> str | None:
        """The mall's backend splits itself a commission through the API, at any time."""
        contract = self.contracts[order.store]
        amount = min(share_fen(order.funds.paid_fen, contract.commission_bps), order.funds.splittable_fen)
        if amount <= 0:
            return None
        return self.request_split(order, "mall commission", [(accounts.MALL_COMMISSION, True, amount)])

    def finish(self, order: Order) -> None:
        """Before the channel's auto-unfreeze, as the scheduler finishes an order: the
        results still out arrive, the guide's reward is made if its job has not run, the
        commission is split by contract with the rest released after it (whatever the
        channel's result), else the rest is unfrozen."""
        for out_order_no in list(order.in_flight):
            self.split_result(order, out_order_no, self.results(len(order.in_flight[out_order_no][1])))
        if order.guide and not order.reward_done:
            out_order_no = self.guide_reward(order)
            if out_order_no is not None:
                self.split_result(order, out_order_no, self.results(1))
                self.stats["guide rewards made at the finish"] += 1
        contract = self.contracts[order.store]
        if contract.auto_split and not order.commission_done and not order.finished:
            self.commission(order, contract)
        if not order.finished:
            self.unfreeze(order)
        self.stats["orders finished at the deadline"] += 1

    def commission(self, order: Order, contract: Contract) -> None:
        order.commission_done = True
        decided = own_splits.commission(order.funds, contract.commission_bps, accounts.MALL_COMMISSION)
        if decided.due_fen <= 0 or decided.refusal is not None:
            order.funds = give_up(order.funds, COMMISSION)
            self.stats[f"commissions given up: {decided.refusal or 'nothing due'}"] += 1
            return
        frozen = order.funds.frozen_fen
        out_order_no = self.request_split(order, "commission", [(accounts.MALL_COMMISSION, True,
                                                                 decided.amount_fen)])
        results = self.results(1)
        self.split_result(order, out_order_no, results)
        # The channel releases the rest once the commission is done, paid or not.
        released, order.funds = release_rest(order.funds)
        if released:
            self.ledger.post(postings.unfreeze_transfer(order.store, out_order_no, released))
            order.unfrozen_fen += released
        assert (decided.amount_fen if results[0] else 0) + released == frozen, "commission + release != frozen"
        self.stats["commissions split at the deadline"] += results[0]

    def results(self, count: int) -> tuple[bool, ...]:
        return tuple(self.rng.randrange(100) < SPLIT_SUCCESS_PERCENT for _ in range(count))

    def advance(self, seconds: int) -> None:
        """Move the clock and run the jobs that fell due, in the order they fell due."""
        self.now_s += seconds
        due = []
        for number, order in enumerate(self.orders):
            if order.guide and not order.reward_done:
                due.append((order.paid_at_s + REWARD_AFTER_S, number, "reward"))
            if order.finish_by_s is not None and not order.finished:
                due.append((order.finish_by_s, number, "finish"))
        for due_s, number, job in sorted(due):
            if due_s > self.now_s:
                break
            order = self.orders[number]
            if job == "finish":
                self.finish(order)
            elif order.reward_done:
                continue  # made (or given up) at the finish already
            else:
                try:
                    self.guide_reward(order)
                except Refused:
                    pass

    # -- invariants ---------------------------------------------------------------------

    def check(self) -> None:
        """SPEC 4 on the model ledger, each order's rules, and the ledger equal, account by
        account, to what the orders and the guides' debts say it should hold."""
        self.ledger.check()
        orders_share = self.orders_share
        for order in self.orders:
            if order.checked_funds is not order.funds:  # OrderFunds is replaced on every change
                check_order(order)
                for account, fen in order.ledger_share.items():
                    orders_share[account] -= fen
                order.ledger_share = ledger_share(order)
                for account, fen in order.ledger_share.items():
                    orders_share[account] += fen
                order.checked_funds = order.funds
            if order.unfreeze_by_s is not None and order.unfreeze_by_s <= self.now_s:
                assert order.finished, f"{order.out_trade_no} still frozen when the channel would release it"
        expected = orders_share.copy()
        for (store, guide), fen in self.owed.items():
            assert fen >= 0
            expected[accounts.tenant_owed_by_guides(store)] += fen
            expected[accounts.guide_clawback(guide)] -= fen
        expected = {account: fen for account, fen in expected.items() if fen}
        assert self.ledger.nonzero() == expected, f"ledger {self.ledger.nonzero()} != model {expected}"


def ledger_share(order: Order) -> dict[str, int]:
    """What this order puts in each account."""
    f = order.funds
    share = Counter({
        accounts.PAYER: -(f.paid_fen - f.refunded_fen),
        accounts.CHANNEL_FEES: f.fee_fen - f.fee_refunded_fen,
        accounts.tenant_frozen(order.store): f.frozen_fen,
        accounts.tenant_available(order.store): order.unfrozen_fen + order.returned_fen - order.from_available_fen,
    })
    for line in f.lines:
        # A merchant holds what it did not return; a guide keeps the whole reward and owes.
        share[line.account] += line.split_fen - line.back_fen if line.returnable else line.split_fen
    return share


def check_order(order: Order) -> None:
    """One payment's rules and conservation to the fen:

        paid - fee = frozen + Σsplit + unfrozen + from_frozen
        refunded   = from_frozen + from_available + fee_refunded

    (an order without profit sharing counts its net as unfrozen at payment)."""
    f = order.funds
    split_fen = sum(line.split_fen for line in f.lines)
    assert 0 <= f.reserved_fen <= f.frozen_fen <= f.paid_fen - f.fee_fen
    assert split_fen + f.reserved_fen <= cap_fen(f.paid_fen, f.max_ratio_bps) <= f.paid_fen, "splits above the cap"
    assert 0 <= f.refunded_fen <= f.paid_fen, "refunded more than paid"
    assert 0 <= f.fee_refunded_fen <= f.fee_fen
    assert all(0 <= line.back_fen <= line.split_fen for line in f.lines)
    assert f.paid_fen - f.fee_fen == f.frozen_fen + split_fen + order.unfrozen_fen + order.from_frozen_fen
    assert f.refunded_fen == order.from_frozen_fen + order.from_available_fen + f.fee_refunded_fen
    if f.refunded_fen == f.paid_fen:
        assert f.frozen_fen == 0 and f.fee_refunded_fen == f.fee_fen
        assert all(line.back_fen == line.split_fen for line in f.lines), "clawback not exact"


# -- one history ---------------------------------------------------------------------------

def step_pay(mall: Mall) -> None:
    rng = mall.rng
    store = rng.choice(STORES)
    profit_sharing = rng.random() < 0.8
    guide = rng.choice(guides_of(store)) if profit_sharing and rng.random() < 0.6 else None
    total_fen = rng.choice([1, rng.randint(1, 100), rng.randint(100, 100_000), rng.randint(1, 10**8)])
    mall.pay(store, total_fen, profit_sharing, guide)


def step_commission(mall: Mall) -> None:
    open_orders = [o for o in mall.orders if o.profit_sharing and not o.finished]
    if open_orders:
        mall.mall_commission(mall.rng.choice(open_orders))


def step_brand_split(mall: Mall) -> None:
    rng = mall.rng
    order = rng.choice(mall.orders)
    brands = rng.sample(BRANDS, rng.choice([1, 1, 2]))
    room = max(1, order.funds.splittable_fen // len(brands))
    parts = [(accounts.receiver(brand), True, rng.choice([room, rng.randint(1, room), room + 1, 0]))
             for brand in brands]
    if rng.random() < 0.03:
        too_many = [(accounts.receiver(f"19{i:08d}"), True, 1) for i in range(RECEIVERS_PER_SPLIT_MAX + 1)]
        parts = rng.choice([[], too_many])
    mall.request_split(order, "brand", parts)


def step_split_result(mall: Mall) -> None:
    """Any split still out, not necessarily the oldest: results arrive out of order."""
    out = [(o, no) for o in mall.orders for no in o.in_flight]
    if out:
        order, out_order_no = mall.rng.choice(out)
        mall.split_result(order, out_order_no, mall.results(len(order.in_flight[out_order_no][1])))


def step_unfreeze(mall: Mall) -> None:
    mall.unfreeze(mall.rng.choice(mall.orders))


def step_refund(mall: Mall) -> None:
    rng = mall.rng
    split_orders = [o for o in mall.orders if o.funds.lines]  # half the time, an order split before
    order = rng.choice(split_orders if split_orders and rng.random() < 0.5 else mall.orders)
    refundable = order.funds.refundable_fen
    amount = rng.choice([refundable, refundable, rng.randint(1, max(1, refundable)), 1, refundable + 1, 0])
    mall.refund(order, amount)


def step_repeat(mall: Mall) -> None:
    """A request or notification seen before, sent again: same answer, no effect; the same
    key with another request is refused as reused, also with no effect."""
    if not mall.done:
        return
    rng = mall.rng
    key = rng.choice(list(mall.done))
    request, response = mall.done[key]
    before = (mall.ledger.snapshot(), [o.funds for o in mall.orders], len(mall.done))
    if rng.random() < 0.8:
        assert mall.handle(key, request, _must_not_run) == response
        mall.stats["repeats answered from the map"] += 1
    else:
        try:
            mall.handle(key, request + ("changed",), _must_not_run)
        except Refused as refused:
            assert refused.code.endswith("_no_reused")
            mall.stats["reused keys refused"] += 1
        else:
            raise AssertionError("a reused key with another request was accepted")
    assert before == (mall.ledger.snapshot(), [o.funds for o in mall.orders], len(mall.done))


def _must_not_run():
    raise AssertionError("a repeated request ran its effect again")


def step_clock(mall: Mall) -> None:
    rng = mall.rng
    mall.advance(rng.choice([60, REWARD_AFTER_S, 600, 3600, 3600, DAY_S, 3 * DAY_S, rng.randint(1, 40) * DAY_S]))


STEPS = [
    (step_pay, 6), (step_commission, 2), (step_brand_split, 4), (step_split_result, 7),
    (step_unfreeze, 2), (step_refund, 5), (step_repeat, 4), (step_clock, 5),
]
STEP_FUNCTIONS = [function for function, _ in STEPS]
STEP_WEIGHTS = [weight for _, weight in STEPS]


def run_history(seed: int, stats: Counter | None = None) -> Mall:
    stats = Counter() if stats is None else stats
    rng = random.Random(seed)
    mall = Mall(rng, stats)
    step_pay(mall)
    for number in range(STEPS_PER_HISTORY):
        step = rng.choices(STEP_FUNCTIONS, STEP_WEIGHTS)[0]
        try:
            step(mall)
        except Refused:
            pass
        except AssertionError as error:
            raise AssertionError(f"seed {seed}, step {number} ({step.__name__}): {error}") from error
        try:
            mall.check()
        except AssertionError as error:
            raise AssertionError(f"seed {seed}, after step {number} ({step.__name__}): {error}") from error
    # Every history ends past every deadline: all frozen money has left the freeze.
    try:
        mall.advance(200 * DAY_S)
        mall.check()
        assert all(o.finished for o in mall.orders)
        assert sum(mall.ledger.balances[accounts.tenant_frozen(store)] for store in STORES) == 0
    except AssertionError as error:
        raise AssertionError(f"seed {seed}, at the end: {error}") from error
    return mall


def test_thousands_of_random_histories_keep_the_ledger_invariants():
    stats: Counter = Counter()
    for seed in range(SEEDS):
        run_history(seed, stats)
    # The histories went where they should: each path below ran many times.
    for path in ["split results", "refunds", "refunds with a guide's share owed", "guide rewards recovered from",
                 "guide rewards made at the finish", "guide rewards given up: order_unfrozen",
                 "guide rewards given up: amount_exceeds_splittable", "commissions given up: nothing due",
                 "orders finished at the deadline", "commissions split at the deadline",
                 "repeats answered from the map", "reused keys refused",
                 "refused refund: not_enough", "refused refund: amount_exceeds_refundable",
                 "refused refund: amount_not_positive", "refused refund: split_in_flight",
                 "refused split: ratio_exceeded", "refused split: amount_exceeds_splittable",
                 "refused split: order_unfrozen", "refused split: amount_not_positive",
                 "refused split: receivers_out_of_range", "refused unfreeze: order_unfrozen",
                 "refused unfreeze: split_in_flight", "refused unfreeze: nothing_frozen"]:
        assert stats[path] >= 20, (path, stats[path], stats)


def test_a_history_replays_identically_from_its_seed():
    first, second = run_history(7), run_history(7)
    assert first.ledger.balances == second.ledger.balances and first.ledger.posted == second.ledger.posted
    assert [o.funds for o in first.orders] == [o.funds for o in second.orders]
