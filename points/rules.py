"""How many points a payment earns and a refund takes back, and their ledger transfers."""

from __future__ import annotations

import hashlib

from ledger.accounts import PTS, AccountSpec, Bound
from ledger.transfers import Move, Transfer, transfer_of

FEN_PER_YUAN = 100
POINTS_ISSUED = "points:issued"
POINTS_EARN = "points_earn"
POINTS_REVERSE = "points_reverse"
OPENID_HASH_CHARS = 16


def member_account(mall_id: str, openid: str) -> str:
    """The member's PTS account; the openid itself never appears in the ledger."""
    digest = hashlib.sha256(f"{mall_id}:{openid}".encode()).hexdigest()[:OPENID_HASH_CHARS]
    return f"points:member:{digest}"


def points_accounts(mall_id: str, openid: str) -> list[AccountSpec]:
    return [
        # The mall's side: every point a member holds was issued from here (goes negative).
        AccountSpec(POINTS_ISSUED, PTS, Bound.ANY),
        AccountSpec(member_account(mall_id, openid), PTS, Bound.NON_NEGATIVE),
    ]


POINTS_PER_YUAN_MAX = 1000  # a store's rule: 0 (earns nothing) to this many points per paid yuan


def points_earned(paid_fen: int, points_per_yuan: int) -> int:
    """Whole paid yuan times the store's rate; fen below a yuan earn nothing."""
    assert paid_fen >= 0 and points_per_yuan >= 0
    return paid_fen // FEN_PER_YUAN * points_per_yuan


def points_to_reverse(*, paid_fen: int, refunded_fen: int, points_per_yuan: int, reversed_already: int) -> int:
    """What a refund takes back now: the points earned on the part no longer paid, less
    what earlier refunds of the same order took. Repeated partial refunds never take
    back more than was earned; a full refund takes back exactly all of it."""
    assert 0 <= refunded_fen <= paid_fen and reversed_already >= 0
    earned = points_earned(paid_fen, points_per_yuan)
    kept = points_earned(paid_fen - refunded_fen, points_per_yuan)
    due = earned - kept - reversed_already
    assert due >= 0, (earned, kept, reversed_already)
    return due


def earn_transfer(mall_id: str, openid: str, ref: str, points: int) -> Transfer:
    assert points > 0
    return transfer_of(POINTS_EARN, ref, PTS, [Move(POINTS_ISSUED, member_account(mall_id, openid), points)])


def reverse_transfer(mall_id: str, openid: str, ref: str, points: int) -> Transfer:
    assert points > 0
    return transfer_of(POINTS_REVERSE, ref, PTS, [Move(member_account(mall_id, openid), POINTS_ISSUED, points)])
