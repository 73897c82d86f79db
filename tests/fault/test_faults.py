"""Short fault runs against the real stack (gateway and emulator as CLI processes, a real
PostgreSQL), each under a minute: kill -9 of the gateway, PostgreSQL stopped and started,
connections terminated, the mall backend's notify endpoint down — all under load.

After each: every acknowledged order exists with its amount, every paid order is in the
ledger exactly once, every paid order's notification reaches the backend within
NOTIFY_BOUND_S of the fault's end, and the ledger invariants hold.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.fault.conftest import needs_server_control
from tests.fault.harness import Stack, Tally, settled, verdict

pytestmark = pytest.mark.timeout(120)
BUYERS = 4
LOAD_BEFORE_S = 2.0
LOAD_AFTER_S = 3.0
# Bound on notification delivery once a fault ends: the gateway's unpaid-order check
# (every 1 s for orders unpaid after 3 s) and the outbox retries (at most 5 s apart in
# these runs) both finish well inside it.
NOTIFY_BOUND_S = 30.0


async def run_with_fault(stack: Stack, fault, prefix: str) -> tuple[Tally, float]:
    """Load before, during and after `fault()`; returns the tally and when the fault ended."""
    tally, stop = Tally(), asyncio.Event()
    buyers = [asyncio.create_task(stack.buyer(tally, f"{prefix}{n}X", stop)) for n in range(BUYERS)]
    try:
        await asyncio.sleep(LOAD_BEFORE_S)
        await fault()
        fault_ended_at = time.monotonic()
        await asyncio.sleep(LOAD_AFTER_S)
    finally:
        stop.set()
        await asyncio.gather(*buyers)
    return tally, fault_ended_at


async def assert_books(stack: Stack, tally: Tally, fault_ended_at: float) -> None:
    assert tally.paid_at, "the load paid nothing"
    await settled(stack, tally, wait_s=NOTIFY_BOUND_S)
    result = await verdict(stack, tally, fault_ended_at=fault_ended_at, notify_bound_s=NOTIFY_BOUND_S)
    assert result.lost == [], result
    assert result.not_in_ledger == [] and result.duplicated == [], result
    assert result.not_notified == [] and result.late == [], result
    assert result.invariant_problems == [], result
    assert set(tally.statuses) <= {200, 503, "connection_error"}, tally.statuses


async def test_kill_9_of_the_gateway_under_load(stack):
    async def fault():
        await stack.kill_gateway()
        await asyncio.sleep(1.0)
        recovery_s = await stack.start_gateway()
        assert recovery_s < 30

    tally, ended = await run_with_fault(stack, fault, "K9")
    assert tally.statuses["connection_error"] > 0  # the fault did hit the load
    await assert_books(stack, tally, ended)


async def test_postgresql_stopped_and_started_under_load(stack):
    needs_server_control(stack)

    async def fault():
        await stack.stop_database()
        await asyncio.sleep(3.0)
        await stack.start_database()
        assert await stack.ready_after(30) < 30

    tally, ended = await run_with_fault(stack, fault, "PG")
    assert tally.statuses[503] > 0, tally.statuses  # answered 503 while it was away, never 500
    await assert_books(stack, tally, ended)


async def test_connections_terminated_under_load(stack):
    async def fault():
        terminated = 0
        for _ in range(6):
            terminated += await stack.terminate_connections()
            await asyncio.sleep(0.3)
        assert terminated > 0
        assert await stack.ready_after(30) < 30

    tally, ended = await run_with_fault(stack, fault, "TB")
    await assert_books(stack, tally, ended)


async def test_notify_endpoint_down_for_a_while(stack):
    async def fault():
        await stack.notifications.stop()
        await asyncio.sleep(4.0)
        await stack.notifications.start()

    tally, ended = await run_with_fault(stack, fault, "RX")
    await assert_books(stack, tally, ended)
