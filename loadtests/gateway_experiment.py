"""`mallpay serve` with an experiment applied first, to measure a suggested change before
anyone makes it in gateway/. Never a way to run the gateway for real.

    python loadtests/gateway_experiment.py EXPERIMENT[+EXPERIMENT] serve --port P ...
    (run_load.py --gateway-experiment no-pool-reset does this)

Experiments:
  no-pool-reset  asyncpg's pool sends `SELECT pg_advisory_unlock_all(); CLOSE ALL;
                 UNLISTEN *; RESET ALL;` on every connection release (one more round trip
                 and server transaction per acquire). The gateway uses none of what it
                 resets (no advisory locks on pooled connections, cursors, LISTEN or SET),
                 so this measures the pool created with a no-op `reset`.
  workers-N      `mallpay serve --workers N`: N gateway processes on the port (N = 2..16),
                 next to the one-process run in the same batch.
  signing-threads-N  MALLPAY_SIGNING_THREADS=N: response and notification signatures on
                 N threads instead of the event loop (N = 1..16).
  cprofile       the gateway as it is, under cProfile in CPU time (py-spy where it is installed is the
                 better tool: cProfile slows Python code several-fold, so read shares, not
                 times); the statistics go to loadtests/out/gateway-cprofile-<pid>.prof and
                 the top functions by own time to a .txt beside it when the gateway stops.
  count-transactions  the gateway as it is, counting the database transactions it starts
                 (a statement outside a transaction, or a transaction block) by the
                 gateway function that started them; written to
                 loadtests/out/gateway-transactions-<pid>.json when it stops (what
                 pg_stat_database counts in total, broken down by cause).
"""

from __future__ import annotations

import os
import sys

EXPERIMENTS = (("no-pool-reset", "cprofile", "count-transactions") + tuple(f"workers-{n}" for n in range(2, 17))
               + tuple(f"signing-threads-{n}" for n in range(1, 17)))


def apply(names: set[str]) -> None:
    unknown = names - set(EXPERIMENTS)
    if unknown:
        raise SystemExit(f"unknown experiments {sorted(unknown)}; known: {', '.join(EXPERIMENTS)}")
    if "no-pool-reset" in names:
        import asyncpg
        # The pool still rolls back an open transaction on release (Connection._reset);
        # only the reset query goes.
        asyncpg.Connection.get_reset_query = lambda self: ""


def main() -> int:
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    names = set(sys.argv[1].split("+"))
    apply(names)
    for name in names:
        if name.startswith("signing-threads-"):
            os.environ["MALLPAY_SIGNING_THREADS"] = name.rsplit("-", 1)[1]
    from gateway.cli import main as mallpay
    workers = [name.split("-", 1)[1] for name in names if name.startswith("workers-")]
    argv = sys.argv[2:] + (["--workers", workers[0]] if workers else [])
    run = (lambda: mallpay(argv))
    if "count-transactions" in names:
        run = counting_transactions(run)
    if "cprofile" in names:
        return profiled(run)
    return run()


OWN_CODE = ("/gateway/", "/coupons/", "/points/", "/ledger/", "/splitting/")


def counting_transactions(run):
    import collections
    import json
    from pathlib import Path

    from asyncpg import connection
    counts: collections.Counter = collections.Counter()

    def cause() -> str:
        frame = sys._getframe(2)
        while frame is not None:
            name = frame.f_code.co_filename
            if any(part in name for part in OWN_CODE) and "/gateway/db/" not in name:
                return f"{name.split('/wt-')[-1].split('/', 1)[-1]}:{frame.f_code.co_name}"
            frame = frame.f_back
        return "elsewhere"

    real_execute, real_many = connection.Connection._execute, connection.Connection._executemany
    real_simple = connection.Connection.execute

    async def _execute(self, *args, **kwargs):
        if not self.is_in_transaction():
            counts[cause()] += 1
        return await real_execute(self, *args, **kwargs)

    async def _executemany(self, *args, **kwargs):
        if not self.is_in_transaction():
            counts[cause()] += 1
        return await real_many(self, *args, **kwargs)

    async def execute(self, query, *args, **kwargs):
        # With args it goes through _execute. A transaction block starts with BEGIN here
        # (counted once, by the code that opened it); its savepoints and COMMIT run inside.
        if not args and not self.is_in_transaction():
            counts[("transaction block: " if query.lstrip().upper().startswith("BEGIN") else "") + cause()] += 1
        return await real_simple(self, query, *args, **kwargs)

    connection.Connection._execute, connection.Connection._executemany = _execute, _executemany
    connection.Connection.execute = execute

    def counted() -> int:
        try:
            return run()
        finally:
            out = Path(__file__).resolve().parent / "out" / f"gateway-transactions-{os.getpid()}.json"
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(dict(counts.most_common()), indent=1) + "\n")
    return counted


def profiled(run) -> int:
    import cProfile
    import io
    import pstats
    from pathlib import Path
    out = Path(__file__).resolve().parent / "out" / f"gateway-cprofile-{os.getpid()}.prof"
    out.parent.mkdir(parents=True, exist_ok=True)
    import time
    profiler = cProfile.Profile(time.process_time)  # CPU time: waiting for others is not ours
    profiler.enable()
    try:
        return run()
    finally:
        profiler.disable()
        profiler.dump_stats(out)
        text = io.StringIO()
        stats = pstats.Stats(profiler, stream=text)
        stats.sort_stats("tottime").print_stats(40)
        stats.sort_stats("cumulative").print_stats(60)
        out.with_suffix(".txt").write_text(text.getvalue())


if __name__ == "__main__":
    sys.exit(main())
