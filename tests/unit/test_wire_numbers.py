"""Numbers and days read from a path, a query or a header: ASCII digits only, bounded."""

from __future__ import annotations

from datetime import date

import pytest

from gateway.wire import ID_DIGITS_MAX, ascii_int, iso_day, unix_seconds
from ledger.statements import DAY_MAX, DAY_MIN


@pytest.mark.parametrize("text, digits_max, expected", [
    ("0", 1, 0), ("42", 2, 42), ("007", 3, 7), ("9" * ID_DIGITS_MAX, ID_DIGITS_MAX, int("9" * ID_DIGITS_MAX)),
    ("123", 2, None),  # too long
    ("", 5, None), ("-1", 5, None), ("+1", 5, None), (" 1", 5, None), ("1 ", 5, None), ("1\n", 5, None),
    ("1_000", 5, None), ("1.0", 5, None), ("0x1", 5, None),
    ("²", 5, None),  # str.isdigit() takes it, int() refuses it
    ("\u0661\u0662", 5, None),  # Arabic-Indic digits: int() would read 12
    ("\uff11", 5, None),  # a fullwidth one
])
def test_only_ascii_digits_make_a_number(text, digits_max, expected):
    assert ascii_int(text, digits_max) == expected


def test_a_signature_timestamp_is_at_most_twelve_digits():
    assert (unix_seconds("1700000000"), unix_seconds("1" * 13), unix_seconds("١٧٠٠٠٠٠٠٠٠")) == (1700000000, None, None)


@pytest.mark.parametrize("text, expected", [
    ("2026-12-01", date(2026, 12, 1)), ("2000-01-01", DAY_MIN), ("9000-12-31", DAY_MAX),
    ("0001-01-01", None), ("1999-12-31", None), ("9999-12-31", None),  # a day window there leaves the calendar
    ("20261201", None), ("2026-W48-2", None), ("2026-12-1", None), ("2026-12-01 ", None), ("２０２６-12-01", None),
    ("2026-02-30", None), ("", None), (None, None), (20261201, None),
])
def test_a_day_is_written_yyyy_mm_dd_within_the_range_the_books_hold(text, expected):
    assert iso_day(text) == expected
