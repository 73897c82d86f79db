"""WeChat Pay v3 wire conventions shared by the API edge: time format and JSON bytes."""

from __future__ import annotations

import json
import re
from datetime import date, datetime, timedelta, timezone

from ledger.statements import DAY_MAX, DAY_MIN

CHINA_TZ = timezone(timedelta(hours=8))
# Numbers written in a path, a query or a header: ASCII digits only. str.isdigit() also
# takes "²", which int() refuses, and "١٢", which int() reads as 12.
_ASCII_DIGITS_RE = re.compile(r"[0-9]+")
UNIX_SECONDS_DIGITS_MAX = 12  # short enough to be a real time
ID_DIGITS_MAX = 18  # fits a bigint


def ascii_digits(text: str, digits_max: int) -> bool:
    """Whether `text` is 1 to `digits_max` ASCII digits."""
    return len(text) <= digits_max and _ASCII_DIGITS_RE.fullmatch(text) is not None


def ascii_int(text: str, digits_max: int = ID_DIGITS_MAX) -> int | None:
    """The integer `text` writes in 1 to `digits_max` ASCII digits, or None."""
    return int(text) if ascii_digits(text, digits_max) else None


# Days as the API writes them (yyyy-MM-DD, nothing else date.fromisoformat reads: no
# 20261201, no 2026-W48-2), within the days the books hold (ledger.statements.DAY_MIN..MAX).
_DAY_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def iso_day(text) -> date | None:
    """The day `text` writes as yyyy-MM-DD within DAY_MIN..DAY_MAX, or None."""
    if not isinstance(text, str) or not _DAY_RE.fullmatch(text):
        return None
    try:
        day = date.fromisoformat(text)
    except ValueError:
        return None
    return day if DAY_MIN <= day <= DAY_MAX else None


def unix_seconds(text: str) -> int | None:
    """The integer in a signature timestamp, or None when it is not one."""
    return ascii_int(text, UNIX_SECONDS_DIGITS_MAX)


def to_wechat_time(moment: datetime) -> str:
    """RFC 3339 in China time, seconds precision: 2018-06-08T10:34:56+08:00."""
    assert moment.tzinfo is not None
    return moment.astimezone(CHINA_TZ).isoformat(timespec="seconds")


def parse_wechat_time(text: str) -> datetime | None:
    """An aware datetime, or None when `text` is not RFC 3339 with an offset."""
    try:
        moment = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None or "T" not in text:
        return None
    try:
        return moment.astimezone(timezone.utc)
    except OverflowError:  # 0001-01-01T00:00:00+01:00 is before year 1 in UTC
        return None


# Made once: json.dumps with any non-default argument builds a new encoder for every call.
_COMPACT = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
_CANONICAL = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def json_bytes(value) -> bytes:
    """Compact UTF-8 JSON: the exact bytes the gateway signs and sends."""
    return _COMPACT.encode(value).encode()


def canonical_json(value) -> str:
    """Key-sorted compact JSON, so equal requests hash equal whatever their key order."""
    return _CANONICAL.encode(value)
