"""The emulator's sandbox clock: the system's (or a test's) clock plus an offset that
`POST /sandbox/clock` sets or advances, in the spirit of Stripe's test clocks. Everything
the emulator dates (payments, the minute before splits, the automatic unfreeze, bills,
signatures) reads it, and every answer names the offset so a gateway that follows the
emulator reads the same time."""

from __future__ import annotations

from datetime import datetime

# The bound is the gateway's too: it follows this clock (gateway.sandbox_clock).
from gateway.sandbox_clock import OFFSET_S_MAX, OffsetClock


class SandboxClock(OffsetClock):
    def advance(self, seconds: int) -> None:
        """Forward only: moving back would let later events carry earlier dates."""
        assert seconds >= 0
        self._set_offset(self.offset_s + seconds)

    def set_to(self, at: datetime) -> None:
        offset = int((at - self.base()).total_seconds())
        if offset < self.offset_s:
            raise ValueError("the sandbox clock does not go back")
        self._set_offset(offset)

    def _set_offset(self, offset_s: int) -> None:
        if offset_s > OFFSET_S_MAX:
            raise ValueError(f"at most {OFFSET_S_MAX // 86_400} days ahead")
        self.offset_s = offset_s
