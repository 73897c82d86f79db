"""The payment-success transaction: the gateway's own code against pgbench running the same SQL.

    python loadtests/bench_payment_tx.py [--clients 8 64] [--seconds 15] [--rounds 3]
                                         [--variants gateway gateway+uvloop ...] [--profile]

Both sides run the same two statements per transaction, each in its own implicit
transaction with durable commits (synchronous_commit on, fsync on):

  1. NEXT_ORDER  `SELECT n, ... FROM nextval('bench_seq') AS n, ...`: the next pre-created
     NOTPAY order (sub_mchid, out_trade_no 'B'||n, the channel's transaction_id), plus the
     text of every per-order argument pgbench needs (pgbench can build strings only in SQL);
  2. the gateway's APPLY_PAYMENT (`SELECT mallpay_apply_payment($1, ...)`).

The Python side (one process, asyncio tasks over an asyncpg pool of N connections made
by gateway.db.create_pool; with `+processesK` in the variant, K such processes sharing the
N connections and measuring the same seconds, as `mallpay serve --workers K` serves and as
pgbench runs its clients on PGBENCH_THREADS threads) calls `gateway.services.payments._apply`, which builds the
arguments with gateway.services.payment_effects and runs
gateway.repo.orders.apply_payment. `_apply` is private, but calling it is the point: the
benchmark follows the gateway's argument building as it changes instead of copying it.

The pgbench script is generated from what `_apply` actually sends: one call is captured
on a recording connection, APPLY_PAYMENT's `$k` become pgbench variables `:pk` (so with
`-M prepared` pgbench prepares exactly the gateway's SQL text), constant arguments are
passed with `-D`, per-order ones come from NEXT_ORDER via `\\gset`. A self-check compares,
for one order, every argument pgbench would send with the one `_apply` sends.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import pstats
import re
import resource
import statistics
import subprocess
import sys
import time
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import psutil

import gateway_experiment
import legacy_payment
from bench_orders import (PAID_ORDERS, STATEMENT_TIMEOUT_MS, Shape, bench_services, channel_trade, derive_shape,
                          order_row, self_check, set_up, top_up_orders)
from stack import (OUT_DIR, PY_SPY_RATE_HZ, fresh_database, install_signal_exit, py_spy, start_postgres,
                   summarize_collapsed)

from gateway.invariants import check_invariants
from gateway.db import create_pool
from gateway.db.migrate import migrate
from gateway.services import payments
from gateway.settings import Settings

DATABASE = "bench_payment_tx"
ORDERS_HEADROOM = 1.5  # orders created per measurement: expected rate x seconds x this
EXPECTED_RATE_PER_S = 3_000  # first guess, raised to the best rate seen so far
ORDERS_PER_MEASUREMENT_MIN = 20_000
PGBENCH_THREADS = 2
WORKER_EXTRA_S = 120  # pool set-up and shutdown beyond --seconds
VARIANT_OPTIONS = ("uvloop", "legacy", *gateway_experiment.EXPERIMENTS)
PROCESSES_OPTION = re.compile(r"processes([1-9])")
START_AFTER_S = 10.0  # processes of one measurement start together: after their set-up
RESULT_PREFIX = "RESULT "


# -- the Python side (a child process per measurement) ---------------------------------------

async def python_side(database_url: str, context: dict, clients: int, seconds: float, profile: bool,
                      apply=payments._apply, start_at: float | None = None) -> dict:
    settings = Settings()
    shape = await derive_shape(settings, context)
    sql, params = shape.next_order_for_python()
    svc = bench_services(settings, context["issuing"])
    pool = await create_pool(database_url, min_size=clients, max_size=clients,
                             statement_timeout_ms=STATEMENT_TIMEOUT_MS)
    done = {"applied": 0, "other": 0}

    async def one(conn) -> str:
        pick = await conn.fetchrow(sql, *params)
        now = svc.clock()
        row = order_row(settings, context["client_id"], pick["sub_mchid"], pick["out_trade_no"],
                        context["fee_rate_bps"], context["profit_sharing"], now)
        trade = channel_trade(settings, pick["sub_mchid"], pick["out_trade_no"], pick["transaction_id"], now)
        return await apply(svc, conn, row, trade)

    async def warm_up(conn) -> None:
        # Every connection prepares both statements (and asyncpg learns the argument
        # types) before the clock starts, as the gateway's long-lived pool has long done:
        # otherwise the first seconds measure 64 connections' set-up, not the transaction.
        assert await one(conn) == "applied"

    connections = [await pool.acquire() for _ in range(clients)]
    await asyncio.gather(*(warm_up(conn) for conn in connections))
    for conn in connections:
        await pool.release(conn)
    if start_at is not None:  # the other processes of this measurement start then too
        await asyncio.sleep(max(0.0, start_at - time.time()))
    deadline = time.monotonic() + seconds

    async def client() -> None:
        while time.monotonic() < deadline:
            async with pool.acquire() as conn:
                outcome = await one(conn)
            done["applied" if outcome == "applied" else "other"] += 1

    profiler = cProfile.Profile() if profile else None
    usage_before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.monotonic()
    if profiler:
        profiler.enable()
    await asyncio.gather(*(client() for _ in range(clients)))
    elapsed = time.monotonic() - started
    if profiler:
        profiler.disable()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    await pool.close()
    result = {"transactions": done["applied"], "failed": done["other"], "elapsed_s": elapsed, "warm_up": clients,
              "tps": done["applied"] / elapsed,
              "client_cpu_s": usage.ru_utime + usage.ru_stime - usage_before.ru_utime - usage_before.ru_stime}
    if profiler:
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(25)
        result["profile"] = text.getvalue()
    return result


def worker_main(args) -> int:
    options = set(args.variant.split("+")) - {"gateway"} if args.variant else set()
    assert options <= set(VARIANT_OPTIONS), f"unknown variant options {options - set(VARIANT_OPTIONS)}"
    if "uvloop" in options:
        import uvloop
        uvloop.install()
    # Experiments only, never the gateway's behaviour (see gateway_experiment.py).
    gateway_experiment.apply(options - {"uvloop", "legacy"})
    spec = json.loads(Path(args.worker).read_text())
    apply = payments._apply
    if "legacy" in options:
        legacy_payment.use_stdlib_json()
        apply = legacy_payment.apply
    result = asyncio.run(python_side(spec["database_url"], spec["context"], args.clients[0], args.seconds,
                                     args.cprofile, apply, args.start_at))
    print(RESULT_PREFIX + json.dumps(result), flush=True)
    return 0


# -- the pgbench side ----------------------------------------------------------------------

def pgbench_argv(bin_dir: Path, database_url: str, script: Path, shape: Shape, clients: int, seconds: int) -> list[str]:
    parts = urlsplit(database_url)
    query = parse_qs(parts.query)
    argv = [str(bin_dir / "pgbench"), "-n", "-M", "prepared", "-c", str(clients),
            "-j", str(min(PGBENCH_THREADS, clients)), "-T", str(seconds), "-f", str(script),
            "-h", query["host"][0], "-p", query.get("port", ["5432"])[0], "-U", parts.username or "postgres"]
    for name, value in shape.constants.items():
        argv += ["-D", f"{name}={value}"]
    return argv + [parts.path.lstrip("/")]


def run_pgbench(argv: list[str], seconds: int) -> dict:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + WORKER_EXTRA_S,
                          env={"PGCLIENTENCODING": "UTF8", "PATH": "/usr/bin:/bin"})
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"pgbench failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    tps = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", done.stdout)
    processed = re.search(r"number of transactions actually processed: (\d+)", done.stdout)
    failed = re.search(r"number of failed transactions: (\d+)", done.stdout)
    assert tps and processed, done.stdout
    return {"transactions": int(processed.group(1)), "failed": int(failed.group(1)) if failed else 0,
            "tps": float(tps.group(1)),
            "client_cpu_s": after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime}


def run_python(spec_path: Path, clients: int, seconds: int, variant: str, *, cprofile: bool = False,
               wrapper: list[str] = ()) -> dict:
    """One gateway-side measurement: one worker process, or with `+processesK` in the
    variant K of them sharing the clients, started together; their counts are summed."""
    options = variant.split("+")
    processes = [int(m.group(1)) for m in map(PROCESSES_OPTION.fullmatch, options) if m]
    count = processes[0] if processes else 1
    worker_variant = "+".join(option for option in options if not PROCESSES_OPTION.fullmatch(option))
    start_at = time.time() + START_AFTER_S if count > 1 else None
    children = []
    for index in range(count):
        argv = [*wrapper, sys.executable, str(Path(__file__).resolve()), "--worker", str(spec_path),
                "--clients", str(clients // count + (index < clients % count)), "--seconds", str(seconds),
                "--variant", worker_variant]
        argv += ["--cprofile"] if cprofile else []
        argv += ["--start-at", repr(start_at)] if start_at is not None else []
        children.append(subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    results = []
    for child in children:
        out, err = child.communicate(timeout=seconds + WORKER_EXTRA_S)
        lines = [line for line in out.splitlines() if line.startswith(RESULT_PREFIX)]
        if child.returncode != 0 or not lines:
            raise RuntimeError(f"python side failed ({child.returncode}): {err.strip()[-2000:]}")
        results.append(json.loads(lines[-1][len(RESULT_PREFIX):]))
    if count == 1:
        return results[0]
    total = {name: sum(r[name] for r in results) for name in ("transactions", "failed", "warm_up", "tps",
                                                                 "client_cpu_s")}
    return {**total, "elapsed_s": max(r["elapsed_s"] for r in results), "processes": count}


# -- the rounds ----------------------------------------------------------------------------

async def paid_orders(database_url: str) -> int:
    conn = await create_pool(database_url, min_size=1, max_size=1, statement_timeout_ms=STATEMENT_TIMEOUT_MS)
    try:
        await conn.execute("CHECKPOINT")  # so no measurement inherits the previous one's dirty pages
        return await conn.fetchval(PAID_ORDERS)
    finally:
        await conn.close()


def measure(side: str, run, database_url: str, seconds: int) -> dict:
    """One measurement; checks that every transaction it counts paid exactly one order."""
    paid_before = asyncio.run(paid_orders(database_url))
    busy_before = machine_busy_s()
    result = run()
    result["machine_busy_s"] = machine_busy_s() - busy_before
    paid = asyncio.run(paid_orders(database_url)) - paid_before - result.get("warm_up", 0)
    if paid != result["transactions"] or result["failed"]:
        raise RuntimeError(f"{side}: counted {result['transactions']} transactions ({result['failed']} failed) "
                           f"but {paid} orders were paid: out of orders, or a call did not apply")
    return result


def machine_busy_s() -> float:
    times = psutil.cpu_times()
    return sum(times) - times.idle - getattr(times, "iowait", 0.0)


def main() -> int:
    args = _parser().parse_args()
    if args.worker:
        return worker_main(args)
    install_signal_exit()
    out_dir = args.out or OUT_DIR / ("bench-" + datetime.now().strftime("%Y%m%d-%H%M%S"))
    out_dir.mkdir(parents=True, exist_ok=True)
    settings = Settings()
    with ExitStack() as stack:
        server, server_dsn = start_postgres(stack)
        database_url = asyncio.run(fresh_database(server_dsn, DATABASE))
        asyncio.run(migrate(database_url))
        asyncio.run(install_legacy(database_url))
        context = asyncio.run(set_up(database_url, settings, args.stores, args.profit_sharing, args.issuing))
        shape = asyncio.run(derive_shape(settings, context))
        script = out_dir / "payment_tx.sql"
        script.write_text(shape.pgbench_script())
        spec_path = out_dir / "python_side.json"
        spec_path.write_text(json.dumps({"database_url": database_url, "context": context}))
        asyncio.run(top_up_orders(database_url, settings, context, args.stores, 10))
        asyncio.run(self_check(database_url, settings, context, shape))
        print(f"pgbench script ({script}):\n{script.read_text()}", flush=True)
        results = run_rounds(args, server, database_url, settings, context, shape, script, spec_path)
        if args.profile:
            profile_python(args, database_url, settings, context, spec_path, out_dir)
        problems = asyncio.run(invariants(database_url))
    report(results, args)
    (out_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"ledger invariants after all rounds: {'hold' if not problems else problems[:10]}")
    return 0 if not problems else 1


def run_rounds(args, server, database_url, settings, context, shape, script, spec_path) -> list[dict]:
    """Each round measures every side at every client count; the order of the sides
    rotates from one measurement to the next so drift (a growing database, a neighbour's
    load) does not always favour the same side."""
    results = []
    expected_rate = EXPECTED_RATE_PER_S
    sides = ["pgbench", *args.variants]
    turn = 0
    for round_number in range(1, args.rounds + 1):
        for clients in args.clients:
            turn += 1
            for side in sides[turn % len(sides):] + sides[:turn % len(sides)]:
                needed = max(ORDERS_PER_MEASUREMENT_MIN, int(expected_rate * args.seconds * ORDERS_HEADROOM))
                asyncio.run(top_up_orders(database_url, settings, context, args.stores, needed))
                if side == "pgbench":
                    argv = pgbench_argv(server.bin_dir, database_url, script, shape, clients, args.seconds)
                    run = lambda: run_pgbench(argv, args.seconds)  # noqa: E731
                else:
                    run = lambda: run_python(spec_path, clients, args.seconds, side)  # noqa: E731
                result = measure(side, run, database_url, args.seconds)
                expected_rate = max(expected_rate, result["tps"])
                result.update(side=side, clients=clients, round=round_number)
                results.append(result)
                print(f"round {round_number}  {clients:>3} clients  {side:<28} {result['tps']:8.0f} tx/s  "
                      f"client CPU {result['client_cpu_s'] * 1000 / result['transactions']:.3f} ms/tx  "
                      f"machine busy {result['machine_busy_s'] / (args.seconds * psutil_cores()):.0%}", flush=True)
    return results


def psutil_cores() -> int:
    return psutil.cpu_count() or 1


def profile_python(args, database_url, settings, context, spec_path, out_dir: Path) -> None:
    """One extra gateway-side measurement at the most clients, sampled by py-spy (native
    frames included) when installed, else under cProfile (which slows it several-fold)."""
    clients, variant = max(args.clients), args.variants[0]
    asyncio.run(top_up_orders(database_url, settings, context, args.stores,
                              int(EXPECTED_RATE_PER_S * args.seconds * ORDERS_HEADROOM)))
    spy = py_spy()
    if spy:
        raw = out_dir / f"profile-{variant}-{clients}.raw"
        result = run_python(spec_path, clients, args.seconds, variant, wrapper=[
            spy, "record", "--rate", str(PY_SPY_RATE_HZ), "--format", "raw", "--output", str(raw), "--"])
        text = summarize_collapsed(raw)
    else:
        result = run_python(spec_path, clients, args.seconds, variant, cprofile=True)
        text = result["profile"]
    (out_dir / f"profile-{variant}-{clients}.txt").write_text(text + "\n")
    print(f"\nprofile of {variant} at {clients} clients ({result['tps']:.0f} tx/s while profiled, "
          f"{'py-spy' if spy else 'cProfile'}):\n{text}")


async def install_legacy(database_url: str) -> None:
    conn = await create_pool(database_url, min_size=1, max_size=1, statement_timeout_ms=STATEMENT_TIMEOUT_MS)
    try:
        await legacy_payment.install(conn)
    finally:
        await conn.close()


async def invariants(database_url: str) -> list[str]:
    pool = await create_pool(database_url, min_size=1, max_size=1, statement_timeout_ms=STATEMENT_TIMEOUT_MS)
    try:
        async with pool.acquire() as conn:
            return await check_invariants(conn)
    finally:
        await pool.close()


def report(results: list[dict], args) -> None:
    print(f"\n== payment-success transaction, medians of {args.rounds} x {args.seconds} s "
          f"(gateway side: asyncio tasks over asyncpg pools of N connections in all, in one Python "
          f"process or K with +processesK; pgbench: {PGBENCH_THREADS} threads) ==")
    for clients in args.clients:
        mine = [r for r in results if r["clients"] == clients]
        by_round = {(r["side"], r["round"]): r for r in mine}
        pg = [r["tps"] for r in mine if r["side"] == "pgbench"]
        cpu = statistics.median(r["client_cpu_s"] * 1000 / r["transactions"] for r in mine if r["side"] == "pgbench")
        print(f"  {clients:>3} clients  {'pgbench':<28} {statistics.median(pg):8.0f} tx/s"
              f"{'':<44}client CPU {cpu:.3f} ms/tx")
        for side in args.variants:
            rates = [r["tps"] for r in mine if r["side"] == side]
            ratios = [by_round[(side, n)]["tps"] / by_round[("pgbench", n)]["tps"] for n in range(1, args.rounds + 1)]
            cpu = statistics.median(r["client_cpu_s"] * 1000 / r["transactions"] for r in mine if r["side"] == side)
            print(f"  {clients:>3} clients  {side:<28} {statistics.median(rates):8.0f} tx/s"
                  f"   {statistics.median(ratios):4.0%} of pgbench (per round "
                  + ", ".join(f"{x:.0%}" for x in ratios) + f")   client CPU {cpu:.3f} ms/tx")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[8, 64], help="concurrent connections")
    parser.add_argument("--seconds", type=int, default=15, help="length of each measurement")
    parser.add_argument("--rounds", type=int, default=3, help="measurements per side and client count")
    parser.add_argument("--stores", type=int, default=64, help="stores the orders spread over")
    parser.add_argument("--profit-sharing", action="store_true", help="orders paid frozen for splitting")
    parser.add_argument("--issuing", action="store_true",
                        help="payments some coupon campaign may reward (each also writes an issuing intent "
                             "and holds its notification); default: a mall with no live campaign")
    parser.add_argument("--variants", nargs="+", default=["gateway"], metavar="VARIANT",
                        help="gateway-side variants to measure against pgbench: gateway, optionally with "
                             "+uvloop, +processesK (K processes share the clients, as serve --workers K) "
                             "and/or +no-pool-reset (an experiment), e.g. gateway gateway+uvloop; "
                             "legacy: the 16-argument function from before payment effects (legacy_payment.py)")
    parser.add_argument("--profile", action="store_true",
                        help="one extra profiled run of the first variant at the most clients (py-spy if installed)")
    parser.add_argument("--out", type=Path, help="output folder (default loadtests/out/bench-<timestamp>)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # internal: run one gateway-side measurement
    parser.add_argument("--variant", help=argparse.SUPPRESS)  # internal: the worker's variant
    parser.add_argument("--cprofile", action="store_true", help=argparse.SUPPRESS)  # internal
    parser.add_argument("--start-at", type=float, help=argparse.SUPPRESS)  # internal: when to start measuring
    return parser


if __name__ == "__main__":
    sys.exit(main())
