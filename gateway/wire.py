"""WeChat Pay v3 wire conventions shared by the API edge: time format and JSON bytes."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone

CHINA_TZ = timezone(timedelta(hours=8))
# Unix seconds as WeChat sends them in signatures: ASCII digits only (str.isdigit() also
# takes "²" and other digits int() refuses), and short enough to be a real time.
_UNIX_SECONDS_RE = re.compile(r"[0-9]{1,12}")


def unix_seconds(text: str) -> int | None:
    """The integer in a signature timestamp, or None when it is not one."""
    return int(text) if _UNIX_SECONDS_RE.fullmatch(text) else None


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
