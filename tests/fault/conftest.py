"""Fault runs start the real stack as separate processes; see tests/fault/harness.py."""

from __future__ import annotations

import os

import pytest

from gateway.db.embedded import EmbeddedPostgres
from tests.fault.harness import FAULT_PG_ROOT, Stack


@pytest.fixture(scope="session")
def fault_server():
    """The fault runs' own embedded server (stopped and started by the faults, so never
    the suite's shared one); None with DATABASE_URL."""
    if os.environ.get("DATABASE_URL"):
        yield None
        return
    server = EmbeddedPostgres(FAULT_PG_ROOT)
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def stack(fault_server, tmp_path):
    the_stack = Stack(tmp_path / "stack")
    try:
        yield await the_stack.start()
    finally:
        await the_stack.aclose()


def needs_server_control(stack: Stack) -> None:
    if not stack.controls_server:
        pytest.skip("stopping PostgreSQL needs the embedded server; DATABASE_URL names one this run "
                    "may not stop")
