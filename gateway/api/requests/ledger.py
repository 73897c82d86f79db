"""Finance queries (/v3/mall/statements, /v3/mall/ledger; mallpay statement and export):
China-time days, instants with their offset, and export ranges of either."""

from __future__ import annotations

from datetime import date, datetime, timezone

from gateway.domain_errors import InvalidField
from gateway.wire import iso_day
from ledger.statements import DAY_MAX, DAY_MIN, PeriodError, period_bounds, within_days


def parse_day(value: str | None, field: str) -> date:
    """A China-time day, YYYY-MM-DD."""
    day = iso_day(value)
    if day is None:
        raise InvalidField(field, "required" if value is None else "bad_format", f"{field} is YYYY-MM-DD")
    return day


def statement_period(from_on: date, to_on: date) -> tuple[date, date]:
    """The days a statement covers, as the statements take them: `to` on or after `date`,
    at most 31 days on."""
    try:
        period_bounds(from_on, to_on)
    except PeriodError as error:
        raise InvalidField("to", str(error), "to is on or after date, at most 31 days on") from None
    return from_on, to_on


def parse_instant(value: str | None, field: str = "at") -> datetime | None:
    """An ISO 8601 instant with its offset (`2026-11-30T16:00:00Z`, `...+08:00`)."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidField(field, "bad_format", f"{field} is an ISO 8601 instant with offset") from None
    if parsed.tzinfo is None:
        raise InvalidField(field, "offset_required", f"{field} needs an offset (Z or +08:00)")
    if not within_days(parsed):
        raise InvalidField(field, "out_of_range", f"{field} is from {DAY_MIN} to {DAY_MAX}")
    return parsed.astimezone(timezone.utc)


def export_range(from_value: str | None, to_value: str | None) -> tuple[datetime, datetime]:
    """`from`/`to` as China-time days (YYYY-MM-DD, `to` inclusive) or as instants (ISO 8601
    with offset, `to` exclusive)."""
    if from_value is None or to_value is None:
        raise InvalidField("from" if from_value is None else "to", "required")
    if len(from_value) == 10 and len(to_value) == 10:
        from_on, to_on = parse_day(from_value, "from"), parse_day(to_value, "to")
        if to_on < from_on:
            raise InvalidField("to", "to_before_from")
        try:
            from_at, _ = period_bounds(from_on, from_on)
            _, to_at = period_bounds(to_on, to_on)
        except PeriodError as error:
            raise InvalidField("to", str(error)) from None
    else:
        from_at, to_at = parse_instant(from_value, "from"), parse_instant(to_value, "to")
    if to_at < from_at:
        raise InvalidField("to", "to_before_from")
    return from_at, to_at
