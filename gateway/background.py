"""Supervised background loops: the one way the gateway runs work in the background.

Every loop (outbox delivery, the scheduler, the unpaid-order check, nonce cleanup, and any
added later) is a `pass_` coroutine run again and again under `BackgroundLoops.start`. A
pass that raises anything — a dropped database connection, `CannotConnectNowError` while
PostgreSQL restarts, a bug — is logged and retried after a capped exponential backoff
(`loop_backoff_initial_ms` doubling up to `loop_backoff_max_ms`); the loop itself never
ends until the app stops. Each loop records its liveness, which `/health/ready` reports.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Awaitable, Callable

import structlog

log = structlog.get_logger(__name__)
ERROR_CHARS_MAX = 200
STOP_GRACE_S = 5.0  # how long stopping waits for cancelled loops to unwind

Pass = Callable[[], Awaitable[object]]
Pause = Callable[[object], Awaitable[None]]


def backoff_s(failures_in_row: int, initial_s: float, max_s: float) -> float:
    """Delay after `failures_in_row` (≥ 1) consecutive failed passes: doubling, capped."""
    assert failures_in_row >= 1
    return min(max_s, initial_s * 2 ** min(failures_in_row - 1, 32))


@dataclass
class LoopState:
    name: str
    task: asyncio.Task | None = None
    passes_ok: int = 0
    failures_in_row: int = 0
    failures_total: int = 0
    last_ok_monotonic: float | None = None
    last_error: str | None = None

    @property
    def running(self) -> bool:
        return self.task is not None and not self.task.done()

    def as_json(self) -> dict:
        age = None if self.last_ok_monotonic is None else round(time.monotonic() - self.last_ok_monotonic, 3)
        return {"running": self.running, "passes_ok": self.passes_ok, "failures_in_row": self.failures_in_row,
                "failures_total": self.failures_total, "last_ok_s_ago": age, "last_error": self.last_error}


@dataclass
class BackgroundLoops:
    """The app's background loops and their liveness; `stop()` ends them all."""

    backoff_initial_s: float
    backoff_max_s: float
    loops: dict[str, LoopState] = field(default_factory=dict)

    def start(self, name: str, pass_: Pass, pause: Pause) -> LoopState:
        """Run `pass_()` forever; after a pass that returned `result`, `await pause(result)`."""
        assert name not in self.loops, f"two background loops named {name}"
        state = LoopState(name)
        state.task = asyncio.create_task(self._supervise(state, pass_, pause), name=f"loop:{name}")
        self.loops[name] = state
        return state

    def start_every(self, name: str, interval_s: float, pass_: Pass) -> LoopState:
        return self.start(name, pass_, lambda _result: asyncio.sleep(interval_s))

    async def _supervise(self, state: LoopState, pass_: Pass, pause: Pause) -> None:
        while True:
            try:
                result = await pass_()
                self._passed(state)
                await pause(result)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 — any failure of a pass must not end the loop
                if asyncio.current_task().cancelling():
                    # Stopping: a pass cancelled mid-query can fail while unwinding
                    # (asyncpg's "another operation is in progress") instead of raising
                    # CancelledError. Retrying it would swallow the stop for good.
                    raise
                state.failures_in_row += 1
                state.failures_total += 1
                state.last_error = f"{type(exc).__name__}: {exc}"[:ERROR_CHARS_MAX]
                delay_s = backoff_s(state.failures_in_row, self.backoff_initial_s, self.backoff_max_s)
                log.warning("background_loop_failed", loop=state.name, error=type(exc).__name__,
                            failures_in_row=state.failures_in_row, retry_in_s=round(delay_s, 3),
                            exc_info=state.failures_in_row == 1)
                await asyncio.sleep(delay_s)

    def _passed(self, state: LoopState) -> None:
        if state.failures_in_row:
            log.info("background_loop_recovered", loop=state.name, after_failures=state.failures_in_row)
        state.failures_in_row = 0
        state.passes_ok += 1
        state.last_ok_monotonic = time.monotonic()

    def not_running(self) -> list[str]:
        return [name for name, state in self.loops.items() if not state.running]

    def as_json(self) -> dict:
        return {name: state.as_json() for name, state in self.loops.items()}

    async def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """Cancel every loop and wait up to `grace_s` for them to unwind. Stopping never
        raises and never hangs: a pass cancelled in the middle of a query can fail in its
        clean-up (asyncpg: "another operation is in progress") or be slow to end, and
        the app must still shut down (its pool then cuts what is left)."""
        tasks = [state.task for state in self.loops.values() if state.task is not None and not state.task.done()]
        for task in tasks:
            task.cancel()
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=grace_s)
        for state in self.loops.values():
            task = state.task
            if task in pending:
                log.warning("background_loop_stop_timeout", loop=state.name, grace_s=grace_s)
            elif task is not None and not task.cancelled() and task.exception() is not None:
                log.warning("background_loop_stop_failed", loop=state.name, error=type(task.exception()).__name__)
