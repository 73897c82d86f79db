"""The emulator's sandbox clock: the system's (or a test's) clock plus an offset that
`POST /sandbox/clock` sets or advances, in the spirit of Stripe's test clocks. Everything
the emulator dates (payments, the minute before splits, the automatic unfreeze, bills,
signatures) reads it, and every answer names the offset so a gateway that follows the
emulator reads the same time."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

# A sandbox may run far ahead (a year of bill days), never backwards past the real time
# by more than that: what the books hold must stay in order.
OFFSET_S_MAX = 400 * 86_400
OFFSET_HEADER = "Mallpay-Sandbox-Clock-Offset"  # whole seconds the sandbox runs ahead


class SandboxClock:
    def __init__(self, base: Callable[[], datetime]):
        self._base = base
        self.offset_s = 0

    def __call__(self) -> datetime:
        return self._base() + timedelta(seconds=self.offset_s)

    def base(self) -> datetime:
        return self._base()

    def advance(self, seconds: int) -> None:
        """Forward only: moving back would let later events carry earlier dates."""
        assert seconds >= 0
        self._set_offset(self.offset_s + seconds)

    def set_to(self, at: datetime) -> None:
        offset = int((at - self._base()).total_seconds())
        if offset < self.offset_s:
            raise ValueError("the sandbox clock does not go back")
        self._set_offset(offset)

    def _set_offset(self, offset_s: int) -> None:
        if offset_s > OFFSET_S_MAX:
            raise ValueError(f"at most {OFFSET_S_MAX // 86_400} days ahead")
        self.offset_s = offset_s
