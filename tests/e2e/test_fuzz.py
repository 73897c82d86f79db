"""CI's bounded fuzz run of every documented operation (see tests/fuzzing.py; the
longer run is loadtests/fuzz_run.py)."""

from __future__ import annotations

import asyncio
import os

import pytest

from tests.fuzzing import Target, fuzz, operations, row_counter

pytestmark = pytest.mark.timeout(240)
EXAMPLES_PER_OPERATION = int(os.environ.get("MALLPAY_FUZZ_EXAMPLES", "12"))
BUDGET_S = float(os.environ.get("MALLPAY_FUZZ_BUDGET_S", "60"))


async def test_fuzzed_requests_to_every_operation_get_no_5xx_and_change_nothing_when_refused(mall):
    target = Target(mall.gateway_url, mall.app.creds, mall.admin.creds, mall.gateway_public_key,
                    row_counter(mall.pool, asyncio.get_running_loop()))
    report = await asyncio.to_thread(fuzz, target, examples_per_operation=EXAMPLES_PER_OPERATION,
                                     budget_s=BUDGET_S)
    print(f"fuzz: {report.requests_sent} requests, statuses {dict(report.statuses)}")
    assert report.failures == [], "\n".join(report.failures)
    signed_operations = [op for op in operations() if op.path.startswith("/v3/")]
    reached = {label.split(" ", 1)[1] for label in report.by_operation}
    assert {op.path for op in signed_operations} <= reached, "an operation was never fuzzed"
    assert report.statuses.get(401, 0) < report.requests_sent / 2, report.statuses  # the signing layer works
