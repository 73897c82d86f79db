"""Balanced transfers: the only way money moves in the ledger."""

from __future__ import annotations

from dataclasses import dataclass

from ledger.accounts import CURRENCIES

POSTINGS_PER_TRANSFER_MAX = 64
REF_CHARS_MAX = 128


class UnbalancedTransfer(AssertionError):
    """A transfer whose postings do not sum to zero: a programming error, never input."""


@dataclass(frozen=True, slots=True)
class Posting:
    account: str
    amount_fen: int  # credit positive, debit negative


@dataclass(frozen=True, slots=True)
class Transfer:
    """A set of postings in one currency that sum to zero.

    `kind` and `ref` name the business event (`payment`, `sub_mchid/out_trade_no`); the
    database keeps (kind, ref) unique, so one event can never be posted twice.
    """

    kind: str
    ref: str
    currency: str
    postings: tuple[Posting, ...]

    def __post_init__(self) -> None:
        assert self.currency in CURRENCIES, self.currency
        assert self.kind and self.ref and len(self.ref) <= REF_CHARS_MAX
        assert 2 <= len(self.postings) <= POSTINGS_PER_TRANSFER_MAX, self.postings
        accounts = [p.account for p in self.postings]
        assert len(set(accounts)) == len(accounts), f"account twice in one transfer: {accounts}"
        for posting in self.postings:
            assert isinstance(posting.amount_fen, int) and not isinstance(posting.amount_fen, bool)
            assert posting.amount_fen != 0, posting
        if sum(p.amount_fen for p in self.postings) != 0:
            raise UnbalancedTransfer(f"{self.kind} {self.ref}: {self.postings}")

    @property
    def accounts(self) -> list[str]:
        return [p.account for p in self.postings]

    @property
    def amounts_fen(self) -> list[int]:
        return [p.amount_fen for p in self.postings]


@dataclass(frozen=True, slots=True)
class Move:
    """`amount_fen` from `source` to `destination`; zero moves are dropped."""

    source: str
    destination: str
    amount_fen: int


def transfer_of(kind: str, ref: str, currency: str, moves: list[Move]) -> Transfer:
    """Net a list of moves into one balanced transfer, accounts in first-seen order."""
    net: dict[str, int] = {}
    for move in moves:
        assert move.amount_fen >= 0, move
        if move.amount_fen == 0:
            continue
        net[move.source] = net.get(move.source, 0) - move.amount_fen
        net[move.destination] = net.get(move.destination, 0) + move.amount_fen
    postings = tuple(Posting(account, amount) for account, amount in net.items() if amount != 0)
    return Transfer(kind=kind, ref=ref, currency=currency, postings=postings)
