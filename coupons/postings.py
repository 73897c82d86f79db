"""What a mall-funded coupon posts when the order using it is paid (contracts): the mall
owes the store the discount until it pays it out."""

from __future__ import annotations

from ledger.accounts import CNY, MALL_COUPON_SUBSIDY, AccountSpec, Bound, tenant_available
from ledger.transfers import Move, Transfer, transfer_of

COUPON_SUBSIDY = "coupon_subsidy"


def coupon_receivable(sub_mchid: str) -> str:
    return f"tenant:{sub_mchid}:coupon_receivable"


def receivable_accounts(sub_mchid: str) -> list[AccountSpec]:
    # What the mall owes the store for its coupons; paid out to `available` later.
    return [AccountSpec(coupon_receivable(sub_mchid), CNY, Bound.NON_NEGATIVE)]


def subsidy_transfer(sub_mchid: str, out_trade_no: str, discount_fen: int) -> Transfer:
    assert discount_fen > 0
    return transfer_of(COUPON_SUBSIDY, f"{sub_mchid}/{out_trade_no}", CNY,
                       [Move(MALL_COUPON_SUBSIDY, coupon_receivable(sub_mchid), discount_fen)])


COUPON_SUBSIDY_PAYOUT = "coupon_subsidy_payout"
COUPON_SUBSIDY_REVERSE = "coupon_subsidy_reverse"


def payout_transfer(sub_mchid: str, out_payout_no: str, amount_fen: int) -> Transfer:
    """The mall pays the store what its coupons' subsidies owe: receivable → available."""
    assert amount_fen > 0
    return transfer_of(COUPON_SUBSIDY_PAYOUT, out_payout_no, CNY,
                       [Move(coupon_receivable(sub_mchid), tenant_available(sub_mchid), amount_fen)])


def subsidy_to_reverse(*, discount_fen: int, paid_fen: int, refunded_fen: int, reversed_already: int,
                       receivable_fen: int) -> int:
    """What a refund takes back of a mall-funded discount: the discount's share of what
    has been refunded so far (floor, so repeated partial refunds never take back more
    than the discount and a full refund takes it all), less what earlier refunds took,
    and never more than the store's receivable still unpaid (what the mall already paid
    out stays the store's)."""
    assert 0 <= refunded_fen <= paid_fen and paid_fen > 0 and 0 <= reversed_already <= discount_fen
    due = discount_fen * refunded_fen // paid_fen - reversed_already
    return max(0, min(due, receivable_fen))


def reverse_transfer(sub_mchid: str, out_refund_no: str, amount_fen: int) -> Transfer:
    assert amount_fen > 0
    return transfer_of(COUPON_SUBSIDY_REVERSE, f"{sub_mchid}/{out_refund_no}", CNY,
                       [Move(coupon_receivable(sub_mchid), MALL_COUPON_SUBSIDY, amount_fen)])
