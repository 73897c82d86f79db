"""A payout: the channel paid a store's available balance to its bank (SPEC 6)."""

from __future__ import annotations

from ledger import accounts
from ledger.transfers import Move, Transfer, transfer_of

PAYOUT = "payout"


def payout_ref(sub_mchid: str, payout_id: str) -> str:
    """One per fund-flow bill line: (kind, ref) unique makes the booking exactly once."""
    return f"{sub_mchid}/{payout_id}"


def payout_transfer(sub_mchid: str, payout_id: str, amount_fen: int) -> Transfer:
    assert amount_fen > 0, "a payout moves money"
    return transfer_of(PAYOUT, payout_ref(sub_mchid, payout_id), accounts.CNY, [
        Move(accounts.tenant_available(sub_mchid), accounts.tenant_settled(sub_mchid), amount_fen)])
