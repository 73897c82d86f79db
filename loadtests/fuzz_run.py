"""The fuzz run of tests/e2e/test_fuzz.py, longer, against the real stack (gateway and
emulator as CLI processes; tests/fault/harness.py) and with the figures printed.

    python loadtests/fuzz_run.py [--examples 200] [--budget-s 600]

Every operation of the OpenAPI document gets up to `--examples` positive and negative
schemathesis cases, signed like the wechatpayv3 SDK signs; exits 1 on any 5xx, any
unsigned or non-WeChat error body, or any row changed by a refused request.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from gateway.db import create_pool  # noqa: E402
from tests.fault.harness import Stack  # noqa: E402
from tests.fuzzing import Target, fuzz, row_counter  # noqa: E402

OUT_DIR = Path(__file__).resolve().parent / "out" / "fuzz_run"


async def run(args) -> int:
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    stack = await Stack(OUT_DIR / time.strftime("%Y%m%d-%H%M%S")).start()
    pool = await create_pool(stack.database_url, min_size=1, max_size=2, statement_timeout_ms=30_000)
    try:
        target = Target(stack.gateway_url, stack.client.creds, stack.admin_creds, stack.gateway_public_key,
                        row_counter(pool, asyncio.get_running_loop()))
        started = time.monotonic()
        report = await asyncio.to_thread(fuzz, target, examples_per_operation=args.examples,
                                         budget_s=args.budget_s, seed=args.seed)
        print(f"{report.requests_sent} requests in {time.monotonic() - started:.0f} s over "
              f"{len(report.by_operation)} operations; statuses {dict(sorted(report.statuses.items()))}")
        print(f"5xx: {sum(n for s, n in report.statuses.items() if s >= 500)}; failures: {len(report.failures)}")
        for failure in report.failures:
            print("  ", failure)
        return 1 if report.failures else 0
    finally:
        await pool.close()
        await stack.aclose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=200, help="cases per operation (default 200)")
    parser.add_argument("--budget-s", type=float, default=600.0, help="stop after this long (default 600)")
    parser.add_argument("--seed", type=int, default=1, help="0: derandomized (as in CI); else random")
    return asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
