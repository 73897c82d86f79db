"""Ledger exports (SPEC 6): what the formats are, and the beancount names of our accounts.

The rows themselves are formatted by PostgreSQL inside `COPY ... TO STDOUT` (ledger/repo.py):
formatting a million rows in Python was measured 6-8x slower than COPY. This module holds
what is decided once per export: the beancount account names, the `open` directives and the
carried-forward balances at the start of the range.

Beancount names (beancount 3's lexer): a root type, then components that start with a
capital letter or a digit, followed by letters, digits or dashes. Our names map to them
injectively: a component that already fits (and does not start with `X`) is kept, any other
becomes `X` + the hex of its UTF-8 bytes, so two ledger accounts never share a beancount one.
"""

from __future__ import annotations

import re
from datetime import date

from ledger.money import yuan

FORMATS = ("csv", "jsonl", "beancount")
OPEN_ON = date(1970, 1, 1)  # before any transfer: every account is open for the whole file

_PLAIN_COMPONENT = re.compile(r"[A-WYZ0-9][A-Za-z0-9-]*")
# The ledger's own words for kinds of account (never ids), written in CamelCase.
WORDS = frozenset({"frozen", "available", "settled", "owed_by_guides", "coupon_receivable", "rewards",
                   "clawback", "issued", "member"})

# Ledger name prefix → beancount root and fixed components. The rest of the name follows.
_ROOTS = {
    ("payer",): "Equity:Payer",
    ("channel", "fees"): "Expenses:Channel:Fees",
    ("channel", "refunds_held"): "Assets:Channel:RefundsHeld",
    ("mall", "commission"): "Income:Mall:Commission",
    ("mall", "coupon_subsidy"): "Expenses:Mall:CouponSubsidy",
    ("tenant",): "Liabilities:Tenant",
    ("guide",): "Liabilities:Guide",
    ("receiver",): "Liabilities:Receiver",
    ("points",): "Liabilities:Points",
}


def component(name: str) -> str:
    """One beancount component for one piece of a ledger name (`owed_by_guides` → `OwedByGuides`
    for our own words; ids kept when they fit, escaped when not)."""
    if name in WORDS:
        return "".join(word.capitalize() for word in name.split("_"))
    if _PLAIN_COMPONENT.fullmatch(name):
        return name
    return "X" + name.encode().hex().upper()


def beancount_account(ledger_account: str) -> str:
    parts = ledger_account.split(":")
    for size in (2, 1):
        root = _ROOTS.get(tuple(parts[:size]))
        if root is not None:
            return ":".join([root, *(component(p) for p in parts[size:])])
    return ":".join(["Equity", "Other", *(component(p) for p in parts)])


def beancount_names(ledger_accounts: list[str]) -> dict[str, str]:
    names = {account: beancount_account(account) for account in ledger_accounts}
    assert len(set(names.values())) == len(names), "beancount names must be one per account"
    return names


def amount_text(amount: int, currency: str) -> str:
    """Yuan for CNY (exact, two decimals); whole units for points."""
    return f"{yuan(amount)} CNY" if currency == "CNY" else f"{amount} {currency}"


def beancount_header(accounts: list[tuple[str, str]], names: dict[str, str], opening: list[tuple[str, str, int]],
                     from_on: date) -> str:
    """Options, one `open` per account, and the balances carried into the range as one
    transaction per currency dated the range's first day (so the file's balances are the
    ledger's at the range's end, not only its movements)."""
    lines = ['option "title" "Mall Pay ledger"', 'option "operating_currency" "CNY"', ""]
    for account, currency in sorted(accounts):
        lines.append(f"{OPEN_ON.isoformat()} open {names[account]} {currency}")
    lines.append("")
    for currency in sorted({c for _, c, _ in opening}):
        carried = [(a, amount) for a, c, amount in opening if c == currency and amount != 0]
        if not carried:
            continue
        assert sum(amount for _, amount in carried) == 0, f"{currency} balances do not sum to zero"
        lines.append(f'{from_on.isoformat()} * "opening" "balances carried forward in {currency}"')
        lines += [f"  {names[a]}  {amount_text(amount, currency)}" for a, amount in sorted(carried)]
        lines.append("")
    return "\n".join(lines) + "\n"


CSV_HEADER = ("transfer_id", "created_at", "kind", "ref", "currency", "account", "amount_fen")
