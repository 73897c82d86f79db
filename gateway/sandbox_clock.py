"""The gateway's clock when its channel is the emulator: the system's (or a test's) clock
plus the offset the emulator's sandbox clock runs ahead (`POST /sandbox/clock` there). The
emulator names its offset in every answer (`Mallpay-Sandbox-Clock-Offset`) and the
gateway also asks for it every `sandbox_clock_poll_s`, so deadlines, the minute before
splits and bill days fall when the emulator says. Never used with WeChat Pay.

Only business time follows: signatures on both sides carry the unmoved time, so a mall
backend signing with its own clock is still fresh.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from gateway.wire import ascii_int

OFFSET_HEADER = "Mallpay-Sandbox-Clock-Offset"  # whole seconds the sandbox runs ahead
# A sandbox may run far ahead (a year of bill days), never backwards past the real time
# by more than that: what the books hold must stay in order. The emulator enforces it.
OFFSET_S_MAX = 400 * 86_400


class OffsetClock:
    """`base` (the system's or a test's clock) plus whole seconds ahead: the emulator's
    sandbox clock, and the gateway's clock that follows it."""

    def __init__(self, base: Callable[[], datetime]):
        self.base = base
        self.offset_s = 0

    def __call__(self) -> datetime:
        return self.base() + timedelta(seconds=self.offset_s)


class FollowedClock(OffsetClock):
    def follow(self, offset_s: int) -> None:
        """The emulator's offset; forward only, as the emulator's clock moves."""
        if 0 <= offset_s <= OFFSET_S_MAX and offset_s > self.offset_s:
            self.offset_s = offset_s

    def follow_header(self, value: str | None) -> None:
        offset_s = None if value is None else ascii_int(value)
        if offset_s is not None:
            self.follow(offset_s)
