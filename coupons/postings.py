"""What a mall-funded coupon posts when the order using it is paid (contracts): the mall
owes the store the discount until it pays it out."""

from __future__ import annotations

from ledger.accounts import CNY, MALL_COUPON_SUBSIDY, AccountSpec, Bound
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
