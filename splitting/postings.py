"""The ledger transfers of every splitting step (SPEC 4 accounts, SPEC 5 rules)."""

from __future__ import annotations

from ledger import accounts
from ledger.transfers import Move, Transfer, transfer_of
from splitting.funds import RefundPlan

SPLIT = "split"
UNFREEZE = "unfreeze"
SPLIT_RETURN = "split_return"
OWED_BY_GUIDE = "owed_by_guide"
RECOVERY = "recovery"
REFUND = "refund"
REFUND_HELD = "refund_held"


def ref(sub_mchid: str, key: str) -> str:
    return f"{sub_mchid}/{key}"


def split_transfer(sub_mchid: str, out_order_no: str, parts: list[tuple[str, int]]) -> Transfer:
    """Frozen money of the store to each receiver that the channel confirmed."""
    frozen = accounts.tenant_frozen(sub_mchid)
    return transfer_of(SPLIT, ref(sub_mchid, out_order_no), accounts.CNY,
                       [Move(frozen, account, fen) for account, fen in parts])


def unfreeze_transfer(sub_mchid: str, out_order_no: str, amount_fen: int) -> Transfer:
    return transfer_of(UNFREEZE, ref(sub_mchid, out_order_no), accounts.CNY, [
        Move(accounts.tenant_frozen(sub_mchid), accounts.tenant_available(sub_mchid), amount_fen)])


def return_transfer(sub_mchid: str, out_return_no: str, account: str, amount_fen: int) -> Transfer:
    """A merchant receiver gives its share back to the store ahead of a refund."""
    return transfer_of(SPLIT_RETURN, ref(sub_mchid, out_return_no), accounts.CNY, [
        Move(account, accounts.tenant_available(sub_mchid), amount_fen)])


def owed_transfer(sub_mchid: str, out_refund_no: str, owed: list[tuple[str, int]]) -> Transfer:
    """Guides' shares of a refund, which the channel cannot take back from a person:
    the store pays them to the shopper and the guide owes them to the store."""
    moves = [Move(_clawback_of(account), accounts.tenant_owed_by_guides(sub_mchid), fen)
             for account, fen in owed]
    return transfer_of(OWED_BY_GUIDE, ref(sub_mchid, out_refund_no), accounts.CNY, moves)


def recovery_transfer(sub_mchid: str, out_order_no: str, guide_id: str, amount_fen: int) -> Transfer:
    """Part of a guide's new reward kept by the store against what the guide owes."""
    return transfer_of(RECOVERY, ref(sub_mchid, out_order_no), accounts.CNY, [
        Move(accounts.tenant_owed_by_guides(sub_mchid), accounts.guide_clawback(guide_id), amount_fen)])


def refund_transfer(sub_mchid: str, out_refund_no: str, plan: RefundPlan) -> Transfer:
    """The shopper gets the refund: from the order's frozen money, the store's available
    balance, and the channel's fee given back in proportion."""
    return transfer_of(REFUND, ref(sub_mchid, out_refund_no), accounts.CNY, [
        Move(accounts.tenant_frozen(sub_mchid), accounts.PAYER, plan.from_frozen_fen),
        Move(accounts.tenant_available(sub_mchid), accounts.PAYER, plan.from_available_fen),
        Move(accounts.CHANNEL_FEES, accounts.PAYER, plan.fee_back_fen),
    ])


def held_refund_transfer(sub_mchid: str, out_refund_no: str, plan: RefundPlan) -> Transfer:
    """A refund the channel took but could not pay: the same money leaves the store and
    the fee account, and waits at the channel instead of reaching the shopper."""
    return transfer_of(REFUND_HELD, ref(sub_mchid, out_refund_no), accounts.CNY, [
        Move(accounts.tenant_frozen(sub_mchid), accounts.CHANNEL_REFUNDS_HELD, plan.from_frozen_fen),
        Move(accounts.tenant_available(sub_mchid), accounts.CHANNEL_REFUNDS_HELD, plan.from_available_fen),
        Move(accounts.CHANNEL_FEES, accounts.CHANNEL_REFUNDS_HELD, plan.fee_back_fen),
    ])


def _clawback_of(rewards_account: str) -> str:
    prefix, guide_id, kind = rewards_account.split(":")
    assert prefix == "guide" and kind == "rewards", rewards_account
    return accounts.guide_clawback(guide_id)
