"""Background loops survive any failure of a pass, back off boundedly, and say whether
they run (gateway.background)."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import pytest

from gateway.background import BackgroundLoops, backoff_s


def test_backoff_doubles_from_the_initial_delay_and_stops_at_the_max():
    assert [backoff_s(n, 0.1, 1.0) for n in range(1, 7)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert backoff_s(10_000, 0.1, 5.0) == 5.0  # no overflow however long the outage


@pytest.mark.parametrize("error", [
    asyncpg.CannotConnectNowError("the database system is starting up"),
    asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
    asyncpg.AdminShutdownError("terminating connection due to administrator command"),
    ConnectionRefusedError("connect call failed"),
    RuntimeError("a bug in a pass"),
])
async def test_a_loop_survives_failing_passes_and_resumes(error):
    loops = BackgroundLoops(backoff_initial_s=0.01, backoff_max_s=0.04)
    calls = []

    async def flaky_pass():
        calls.append(len(calls))
        if len(calls) <= 5:
            raise error
        return len(calls)

    state = loops.start_every("flaky", 0.001, flaky_pass)
    try:
        for _ in range(500):
            if state.passes_ok >= 3:
                break
            await asyncio.sleep(0.005)
        assert state.passes_ok >= 3, state.as_json()
        assert state.running and state.failures_total == 5 and state.failures_in_row == 0
        assert loops.not_running() == []
        assert type(error).__name__ in state.last_error
    finally:
        await loops.stop()
    assert not state.running and loops.not_running() == ["flaky"]


async def test_backoff_bounds_how_often_a_failing_pass_is_retried():
    loops = BackgroundLoops(backoff_initial_s=0.05, backoff_max_s=0.05)
    called_at: list[float] = []

    async def always_fails():
        called_at.append(time.monotonic())
        raise OSError("database away")

    state = loops.start_every("down", 0.0, always_fails)
    for _ in range(200):
        if len(called_at) >= 3:
            break
        await asyncio.sleep(0.02)
    await loops.stop()
    gaps = [b - a for a, b in zip(called_at, called_at[1:])]
    assert len(called_at) >= 3 and min(gaps) >= 0.045, gaps  # the backoff, not a hot loop
    assert state.failures_in_row == len(called_at) and state.passes_ok == 0


async def test_a_loop_that_ended_is_reported_not_running():
    loops = BackgroundLoops(backoff_initial_s=0.01, backoff_max_s=0.01)
    state = loops.start_every("quick", 0.01, lambda: asyncio.sleep(0))
    await asyncio.sleep(0.02)
    assert loops.not_running() == []
    state.task.cancel()  # what an escaped BaseException would do
    await asyncio.sleep(0.01)
    assert loops.not_running() == ["quick"]
    assert loops.as_json()["quick"]["running"] is False
    await loops.stop()


async def test_stopping_never_raises_when_a_cancelled_pass_fails_in_its_clean_up():
    # A pass cancelled in the middle of a query can fail while unwinding (asyncpg:
    # "another operation is in progress"); the app must still shut down.
    loops = BackgroundLoops(backoff_initial_s=0.01, backoff_max_s=0.01)
    started = asyncio.Event()

    async def query_in_progress():
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            raise asyncpg.exceptions.InterfaceError("cannot perform operation: another operation is in progress")

    state = loops.start("busy", query_in_progress, lambda _result: asyncio.sleep(0))
    await started.wait()
    await loops.stop()
    assert not state.running and isinstance(state.task.exception(), asyncpg.exceptions.InterfaceError)


async def test_stopping_waits_a_bounded_time_for_a_pass_slow_to_unwind():
    loops = BackgroundLoops(backoff_initial_s=0.01, backoff_max_s=0.01)
    started, release = asyncio.Event(), asyncio.Event()

    async def slow_to_unwind():
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            await release.wait()  # e.g. waiting for the server to confirm a cancel
            raise

    state = loops.start("slow", slow_to_unwind, lambda _result: asyncio.sleep(0))
    await started.wait()
    began = time.monotonic()
    await loops.stop(grace_s=0.1)
    assert 0.09 <= time.monotonic() - began < 2 and state.running
    release.set()
    await asyncio.sleep(0.01)
    assert not state.running
