"""A store's statement (SPEC 6): every ledger transfer that touched the store's accounts
in a period of China-time days, each read into gross, fee, commission, guide rewards,
other splits, coupon subsidy, payout and net; opening and closing balances of each of the
store's accounts; and whether the statement ties to the ledger to the fen.

How a transfer is read: every transfer balances, so what the store's own accounts gained
is exactly what its counterparties gave up. Each counterparty entry lands in one column
(`payer` → gross, `channel:fees` → fee, `mall:commission` → commission, ...), and
`net = gross − fee − commission − guide_rewards − other_splits + coupon_subsidy − payout
− other` equals the change of the store's proceeds accounts (all but `settled`). That
identity is asserted per line; the tie is checked per account against balances the
ledger reports at both instants, read independently of the lines.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from operator import itemgetter
from typing import NamedTuple

CHINA = timezone(timedelta(hours=8), "Asia/Shanghai")
DAYS_PER_STATEMENT_MAX = 31
# The days the books hold: far from the calendar's ends, so that a day's China-time window
# and its UTC instants always exist (midnight of year 1 in China is before year 1 in UTC).
DAY_MIN, DAY_MAX = date(2000, 1, 1), date(9000, 12, 31)

COLUMNS = ("gross", "fee", "commission", "guide_rewards", "other_splits", "coupon_subsidy", "payout",
           "other", "net")

# What a transfer of each kind is, in the store's words (and the CSV's, as WeChat writes bills).
LABELS = {
    "payment": "支付 payment",
    "refund": "退款 refund",
    "refund_held": "退款挂起 refund held at the channel",
    "split": "分账 split",
    "split_return": "分账回退 split return",
    "unfreeze": "解冻 unfreeze",
    "owed_by_guide": "导购欠款 owed by guide",
    "recovery": "导购欠款扣回 recovered from guide",
    "payout": "结算出款 payout",
    "coupon_subsidy": "券补贴 coupon subsidy",
}
SPLIT_PURPOSE_LABELS = {"guide_reward": "导购奖励 guide reward", "commission": "佣金 commission"}


class PeriodError(ValueError):
    """A period the statement cannot cover (reversed, or longer than the limit)."""


def within_days(moment: datetime) -> bool:
    """Whether an aware instant falls on a day from DAY_MIN to DAY_MAX (China time)."""
    return datetime.combine(DAY_MIN, time(0), CHINA) <= moment < datetime.combine(
        DAY_MAX + timedelta(days=1), time(0), CHINA)


def period_bounds(from_on: date, to_on: date) -> tuple[datetime, datetime]:
    """China-time days from_on..to_on inclusive as a half-open UTC interval [from_at, to_at)."""
    if to_on < from_on:
        raise PeriodError("to_before_date")
    if (to_on - from_on).days + 1 > DAYS_PER_STATEMENT_MAX:
        raise PeriodError("period_too_long")
    start = datetime.combine(from_on, time(0), CHINA)
    end = datetime.combine(to_on + timedelta(days=1), time(0), CHINA)
    return start.astimezone(timezone.utc), end.astimezone(timezone.utc)


def store_prefix(sub_mchid: str) -> str:
    return f"tenant:{sub_mchid}:"


def settled_account(sub_mchid: str) -> str:
    return f"tenant:{sub_mchid}:settled"


class LedgerTransfer(NamedTuple):
    """One ledger transfer with all its entries, and the business ids it belongs to.
    (Tuples, as Line: a busy day has a quarter of a million, made and read once.)"""

    transfer_id: int
    kind: str
    ref: str
    created_at: datetime
    entries: tuple[tuple[str, int], ...]   # (account, amount_fen)
    out_trade_no: str | None = None
    transaction_id: str | None = None
    split_purpose: str | None = None


class Line(NamedTuple):
    transfer_id: int
    created_at: datetime
    kind: str
    label: str
    reference: str           # the business key inside the ledger ref (out_refund_no, ...)
    out_trade_no: str | None
    transaction_id: str | None
    amounts_fen: dict[str, int]                  # COLUMNS → fen
    movements_fen: dict[str, int]                # the store's account → change


@dataclass(frozen=True, slots=True)
class AccountTie:
    account: str
    opening_fen: int
    movements_fen: int
    closing_fen: int            # what the ledger reports at the end instant
    ties: bool                  # opening + movements == closing


@dataclass(frozen=True, slots=True)
class Statement:
    sub_mchid: str
    from_on: date
    to_on: date
    from_at: datetime
    to_at: datetime
    lines: tuple[Line, ...]
    totals_fen: dict[str, int]
    accounts: tuple[AccountTie, ...]
    ties: bool
    tie_text: str = field(default="")


# Which column a counterparty account's entry lands in: by exact name, else by prefix, else
# "other" (a store's own accounts, and another store's, included). One table, read by
# `_column_of` here and by the database where it shapes lines (ledger/repo.py).
COLUMN_OF_ACCOUNT = {
    "payer": "gross", "channel:refunds_held": "gross", "channel:fees": "fee", "mall:commission": "commission",
    "mall:coupon_subsidy": "coupon_subsidy",
}
COLUMN_OF_PREFIX = {"guide:": "guide_rewards", "receiver:": "other_splits"}


def _column_of(account: str, sub_mchid: str) -> str:
    column = COLUMN_OF_ACCOUNT.get(account)
    if column is not None:
        return column
    for prefix, column in COLUMN_OF_PREFIX.items():
        if account.startswith(prefix):
            return column
    return "other"


# Counterparty accounts repeat across a statement's lines (payer, channel:fees, ...): read
# each name's column once. Bounded, since guide and receiver names are open-ended.
_COLUMN_CACHE: dict[str, str] = {}
_COLUMN_CACHE_MAX = 100_000


def _column_cached(account: str) -> str:
    column = _column_of(account, "")
    if len(_COLUMN_CACHE) >= _COLUMN_CACHE_MAX:
        _COLUMN_CACHE.clear()
    _COLUMN_CACHE[account] = column
    return column


# Columns whose counterparty entry is what the store gave (a positive entry there means the
# store's proceeds went down); gross and coupon subsidy are what the store received.
RECEIVED_COLUMNS = frozenset({"gross", "coupon_subsidy"})
_RECEIVED = RECEIVED_COLUMNS


def read_line(transfer: LedgerTransfer, sub_mchid: str) -> Line:
    return _read_line(transfer, store_prefix(sub_mchid), settled_account(sub_mchid))


def _read_line(transfer: LedgerTransfer, prefix: str, settled: str) -> Line:
    amounts = dict.fromkeys(COLUMNS, 0)
    movements: dict[str, int] = {}
    for account, amount in transfer.entries:
        if account.startswith(prefix):
            movements[account] = movements.get(account, 0) + amount
        else:
            column = _COLUMN_CACHE.get(account) or _column_cached(account)
            amounts[column] += -amount if column in _RECEIVED else amount
    payout = amounts["payout"] = movements.get(settled, 0)
    amounts["net"] = sum(movements.values()) - payout
    expected = (amounts["gross"] - amounts["fee"] - amounts["commission"] - amounts["guide_rewards"]
                - amounts["other_splits"] + amounts["coupon_subsidy"] - amounts["payout"] - amounts["other"])
    assert expected == amounts["net"], (transfer, amounts)  # the transfer balances, so this holds
    label = LABELS.get(transfer.kind, transfer.kind)
    if transfer.kind == "split" and transfer.split_purpose in SPLIT_PURPOSE_LABELS:
        label = SPLIT_PURPOSE_LABELS[transfer.split_purpose]
    return Line(transfer.transfer_id, transfer.created_at, transfer.kind, label, transfer.ref.split("/", 1)[-1],
                transfer.out_trade_no, transfer.transaction_id, amounts, movements)


_BY_TIME_THEN_ID = itemgetter(3, 0)   # LedgerTransfer's (created_at, transfer_id)


def build_statement(*, sub_mchid: str, from_on: date, to_on: date, transfers: list[LedgerTransfer],
                    opening_fen: dict[str, int], closing_fen: dict[str, int]) -> Statement:
    """`opening_fen` / `closing_fen`: the ledger's balance of each of the store's accounts
    at the period's start and end instants, read apart from `transfers`."""
    from_at, to_at = period_bounds(from_on, to_on)
    ordered = sorted(transfers, key=_BY_TIME_THEN_ID)
    for transfer in ordered:
        assert from_at <= transfer.created_at < to_at, transfer
    prefix, settled = store_prefix(sub_mchid), settled_account(sub_mchid)
    lines = tuple([_read_line(t, prefix, settled) for t in ordered])
    totals = dict.fromkeys(COLUMNS, 0)
    for line in lines:
        for column, amount in line.amounts_fen.items():
            totals[column] += amount
    moved: dict[str, int] = {}
    for line in lines:
        for account, amount in line.movements_fen.items():
            moved[account] = moved.get(account, 0) + amount
    ties = account_ties(opening_fen, moved, closing_fen)
    all_tie = all(t.ties for t in ties)
    return Statement(sub_mchid=sub_mchid, from_on=from_on, to_on=to_on, from_at=from_at, to_at=to_at,
                     lines=lines, totals_fen=totals, accounts=tuple(ties), ties=all_tie,
                     tie_text=tie_text(ties, from_at, to_at))


def account_ties(opening_fen: dict[str, int], moved_fen: dict[str, int],
                 closing_fen: dict[str, int]) -> list[AccountTie]:
    """Per account, in name order: the ledger's opening balance plus the lines' movements
    against the ledger's closing balance."""
    ties = []
    for account in sorted(set(opening_fen) | set(closing_fen) | set(moved_fen)):
        opening, movement, closing = opening_fen.get(account, 0), moved_fen.get(account, 0), closing_fen.get(account, 0)
        ties.append(AccountTie(account, opening, movement, closing, opening + movement == closing))
    return ties


@dataclass(frozen=True, slots=True)
class RenderedStatement:
    """A statement whose lines the database has already written out (ledger/repo.py), in
    the CSV and/or JSON form ledger.statement_formats gives a `Statement`'s lines, byte for
    byte; the rest as in `Statement`. `moved_fen`: each of the store's accounts' movement
    summed over the lines."""

    sub_mchid: str
    from_on: date
    to_on: date
    from_at: datetime
    to_at: datetime
    count: int
    totals_fen: dict[str, int]
    accounts: tuple[AccountTie, ...]
    ties: bool
    tie_text: str
    csv_lines: str | None        # the line rows, each ending in CRLF
    json_lines: str | None       # the line objects, comma-separated


def rendered_statement(*, sub_mchid: str, from_on: date, to_on: date, count: int, totals_fen: dict[str, int],
                       moved_fen: dict[str, int], opening_fen: dict[str, int], closing_fen: dict[str, int],
                       csv_lines: str | None, json_lines: str | None) -> RenderedStatement:
    from_at, to_at = period_bounds(from_on, to_on)
    assert set(totals_fen) == set(COLUMNS), totals_fen
    expected = (totals_fen["gross"] - totals_fen["fee"] - totals_fen["commission"] - totals_fen["guide_rewards"]
                - totals_fen["other_splits"] + totals_fen["coupon_subsidy"] - totals_fen["payout"]
                - totals_fen["other"])
    assert expected == totals_fen["net"], totals_fen   # each line balances, so their sum does
    ties = account_ties(opening_fen, moved_fen, closing_fen)
    return RenderedStatement(sub_mchid=sub_mchid, from_on=from_on, to_on=to_on, from_at=from_at, to_at=to_at,
                             count=count, totals_fen=dict(totals_fen), accounts=tuple(ties),
                             ties=all(t.ties for t in ties), tie_text=tie_text(ties, from_at, to_at),
                             csv_lines=csv_lines, json_lines=json_lines)


def tie_text(ties: list[AccountTie] | tuple[AccountTie, ...], from_at: datetime, to_at: datetime) -> str:
    names = ", ".join(t.account for t in ties)
    if all(t.ties for t in ties):
        return (f"Ties to the ledger to the fen: for {names}, the opening balance at "
                f"{from_at.isoformat()} plus this statement's movements equals the ledger's balance "
                f"at {to_at.isoformat()}.")
    broken = ", ".join(f"{t.account} (opening {t.opening_fen} + movements {t.movements_fen} ≠ closing "
                       f"{t.closing_fen})" for t in ties if not t.ties)
    return f"DOES NOT tie to the ledger: {broken}."
