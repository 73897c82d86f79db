"""Reconciliation matching: our books against the channel's bill, line by line (SPEC 6).

Pure: both sides arrive as `Line`s keyed by a ref both can name (`sub_mchid/out_trade_no`,
`sub_mchid/refund/out_refund_no`, ...). Each ref is matched, or yields one item per way it
differs: missing on our side, missing on the channel's side, a different state, amount or
fee. Each item says what happened and what finance should do; nothing here changes money.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass


class Bill(enum.Enum):
    TRADE = "trade"
    SPLITS = "profitsharing"
    FUND_FLOW = "fundflow"


class Finding(enum.Enum):
    MATCHED = "matched"
    MISSING_OURS = "missing_ours"
    MISSING_CHANNEL = "missing_channel"
    AMOUNT_MISMATCH = "amount_mismatch"
    STATUS_MISMATCH = "status_mismatch"
    FEE_MISMATCH = "fee_mismatch"


DISCREPANCIES = tuple(f for f in Finding if f is not Finding.MATCHED)


@dataclass(frozen=True, slots=True)
class Line:
    """One business event as one side records it. None: that side does not say."""

    ref: str
    sub_mchid: str
    what: str  # "payment", "refund", "split", "return", "unfreeze", "payout"
    amount_fen: int | None
    fee_fen: int | None
    state: str

    def as_json(self) -> dict:
        return {"what": self.what, "amount": self.amount_fen, "fee": self.fee_fen, "state": self.state}


@dataclass(frozen=True, slots=True)
class Item:
    bill: Bill
    finding: Finding
    ref: str
    sub_mchid: str
    ours: Line | None
    channel: Line | None
    what: str
    action: str


@dataclass(frozen=True, slots=True)
class Outcome:
    matched: int
    items: tuple[Item, ...]

    def counts(self) -> dict[str, int]:
        counts = {finding.value: 0 for finding in Finding}
        counts[Finding.MATCHED.value] = self.matched
        for item in self.items:
            counts[item.finding.value] += 1
        return counts


def _yuan(fen: int | None) -> str:
    if fen is None:
        return "?"
    sign = "-" if fen < 0 else ""
    return f"{sign}{abs(fen) // 100}.{abs(fen) % 100:02d}"


def explain(finding: Finding, ours: Line | None, channel: Line | None) -> tuple[str, str]:
    """(what happened, what to do) in finance's words."""
    line = channel or ours
    assert line is not None
    name = f"{line.what} {line.ref}"
    if finding is Finding.MISSING_OURS:
        return (f"the channel's bill has {name} of {_yuan(line.amount_fen)} yuan that our books do not have",
                "a payment is healed by the gateway when its order exists and the channel confirms it; "
                "otherwise find the store's record, and book or refund it by hand")
    if finding is Finding.MISSING_CHANNEL:
        return (f"our books have {name} of {_yuan(line.amount_fen)} yuan that the channel's bill does not list",
                "query the channel for it; if the channel really has nothing, reverse it in our books by hand "
                "and tell the store")
    assert ours is not None and channel is not None
    if finding is Finding.STATUS_MISMATCH:
        return (f"{name} is {channel.state} at the channel but {ours.state} in our books",
                "query the channel for its final state; the gateway applies a final state through its normal path")
    if finding is Finding.AMOUNT_MISMATCH:
        return (f"{name} is {_yuan(channel.amount_fen)} yuan at the channel but {_yuan(ours.amount_fen)} in our books",
                "never corrected automatically: raise it with the channel with both records; book a correction "
                "by hand only once the channel confirms the right amount")
    assert finding is Finding.FEE_MISMATCH
    return (f"the channel charged {_yuan(channel.fee_fen)} yuan of fee on {name}, our books expect "
            f"{_yuan(ours.fee_fen)}",
            "never corrected automatically: check the store's fee rate at the channel against its contract")


def match(bill: Bill, ours: Mapping[str, Line], channel: Iterable[Line]) -> Outcome:
    """Every ref on either side: matched, or the ways it differs. Lines the channel lists
    twice under one ref count as one of their summed amount (and fee)."""
    theirs: dict[str, Line] = {}
    for line in channel:
        seen = theirs.get(line.ref)
        if seen is not None:
            line = Line(line.ref, line.sub_mchid, line.what, _add(seen.amount_fen, line.amount_fen),
                        _add(seen.fee_fen, line.fee_fen), line.state)
        theirs[line.ref] = line
    matched, items = 0, []
    # The bill's order, then what only our books have (no sort: a busy day has 100,000+ refs).
    for ref in [*theirs, *(ref for ref in ours if ref not in theirs)]:
        mine, their = ours.get(ref), theirs.get(ref)
        found = []
        if mine is None:
            found.append(Finding.MISSING_OURS)
        elif their is None:
            found.append(Finding.MISSING_CHANNEL)
        else:
            if mine.state != their.state:
                found.append(Finding.STATUS_MISMATCH)
            if None not in (mine.amount_fen, their.amount_fen) and mine.amount_fen != their.amount_fen:
                found.append(Finding.AMOUNT_MISMATCH)
            if None not in (mine.fee_fen, their.fee_fen) and mine.fee_fen != their.fee_fen:
                found.append(Finding.FEE_MISMATCH)
        if not found:
            matched += 1
        for finding in found:
            what, action = explain(finding, mine, their)
            items.append(Item(bill, finding, ref, (their or mine).sub_mchid, mine, their, what, action))
    return Outcome(matched, tuple(items))


def _add(a: int | None, b: int | None) -> int | None:
    return None if a is None or b is None else a + b
