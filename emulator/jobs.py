"""Work the emulator finishes later, as WeChat does: splits and refunds go PROCESSING ->
FINISHED/SUCCESS after a delay.

One task per job; at most `jobs_pending_max` at once (callers check `has_capacity()`
before changing any state, and answer 429 FREQUENCY_LIMITED otherwise). The tasks belong
to the app: cancelled with it. A job that raises is logged, never silently lost.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog

log = structlog.get_logger(__name__)


class DelayedJobs:
    def __init__(self, pending_max: int):
        assert pending_max > 0
        self._pending_max = pending_max
        self._tasks: set[asyncio.Task] = set()

    def __len__(self) -> int:
        return len(self._tasks)

    def has_capacity(self) -> bool:
        return len(self._tasks) < self._pending_max

    def after(self, delay_s: float, job: Callable[[], None], *, name: str) -> None:
        """Run `job()` (synchronous, so it changes state atomically) after `delay_s`."""
        assert delay_s >= 0 and self.has_capacity(), "callers check capacity before changing state"
        task = asyncio.create_task(self._run(delay_s, job, name), name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    @staticmethod
    async def _run(delay_s: float, job: Callable[[], None], name: str) -> None:
        await asyncio.sleep(delay_s)
        try:
            job()
        except Exception:
            log.exception("emulator.job_failed", job=name)
