"""What the emulator remembers of business-circle points notices."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from emulator.wire import EmulatorError

POINTS_MAX = 100_000_000


@dataclass(frozen=True)
class PointsNotice:
    sub_mchid: str
    transaction_id: str
    appid: str
    openid: str
    earn_points: bool
    increased_points: int
    points_update_time: str
    no_points_remarks: str | None
    total_points: int | None

    def as_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


class PointsBook:
    def __init__(self, notices_max: int, failures: int, lost_answers: int):
        self._notices: dict[tuple[str, str, str, int], PointsNotice] = {}
        self._notices_max = notices_max
        self.failures_left = failures
        self.lost_answers_left = lost_answers
        self.calls = 0

    def record(self, notice: PointsNotice) -> bool:
        """False when this very notice was recorded before."""
        key = (notice.sub_mchid, notice.transaction_id, notice.points_update_time, notice.increased_points)
        if key in self._notices:
            return False
        if len(self._notices) >= self._notices_max:
            raise EmulatorError(429, "FREQUENCY_LIMITED", "too many points notices (points_notices_max)")
        self._notices[key] = notice
        return True

    def notices(self) -> list[PointsNotice]:
        return list(self._notices.values())
