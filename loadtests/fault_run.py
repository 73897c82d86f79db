"""The fault runs of tests/fault/, longer and with more load, with the figures printed.

    python loadtests/fault_run.py [--buyers 12] [--calm-s 15] [--faults kill9,pg_restart,terminate,receiver_down]

One stack (PostgreSQL, `mallpay emulator`, `mallpay serve`, the mall backend's notify
endpoint; tests/fault/harness.py) under continuous load from `--buyers` shoppers; the
faults hit one after another with `--calm-s` of plain load around each. Afterwards it
waits (bounded) for every paid order's notification and prints:

  orders acknowledged, lost (acknowledged but missing or with another amount),
  duplicated (a paid order booked more than once); notifications delivered, late (more
  than NOTIFY_BOUND_S after the payment or after the end of the fault it fell in),
  duplicated (delivered more than once: at-least-once allows it, the count says how
  often); per fault: seconds of errors the load saw and the recovery time.

Exits 1 if an order was lost or double-booked, a notification never came or came late,
or a ledger invariant broke. `pg_restart` needs the embedded server (not DATABASE_URL).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from tests.fault.harness import Stack, Tally, settled, verdict  # noqa: E402

OUT_DIR = Path(__file__).resolve().parent / "out" / "fault_run"
NOTIFY_BOUND_S = 30.0
SETTLE_WAIT_S_MAX = 120.0
BACKLOG_WAIT_S_MAX = 60.0
FAULTS = ("kill9", "pg_restart", "terminate", "receiver_down")


@dataclass
class FaultFigures:
    name: str
    started_at: float
    ended_at: float
    recovery_s: float
    error_s: float = 0.0


async def inject(stack: Stack, tally: Tally, name: str, down_s: float) -> float:
    """Run one fault; returns its recovery time: from lifting it (restart issued, backend
    back) until the gateway is ready again, or for the backend until its backlog of
    notifications has arrived."""
    if name == "kill9":
        await stack.kill_gateway()
        await asyncio.sleep(down_s)
        return await stack.start_gateway()
    if name == "pg_restart":
        await stack.stop_database()
        await asyncio.sleep(down_s)
        lifted = time.monotonic()
        await stack.start_database()
        await stack.ready_after()
        return time.monotonic() - lifted
    if name == "terminate":
        deadline = time.monotonic() + down_s
        while time.monotonic() < deadline:
            await stack.terminate_connections()
            await asyncio.sleep(0.5)
        return await stack.ready_after()
    if name == "receiver_down":
        await stack.notifications.stop()
        await asyncio.sleep(down_s)
        await stack.notifications.start()
        lifted = time.monotonic()
        backlog = [no for no, paid_at in tally.paid_at.items() if paid_at < lifted]
        while time.monotonic() - lifted < BACKLOG_WAIT_S_MAX:
            if all(no in stack.notifications.arrivals for no in backlog):
                break
            await asyncio.sleep(0.1)
        return time.monotonic() - lifted
    raise ValueError(name)


def lateness(tally: Tally, arrivals: dict, windows: list[FaultFigures]) -> dict[str, float]:
    """Per notified order: first arrival minus max(paid, end of the fault it fell in)."""
    result = {}
    for no, paid_at in tally.paid_at.items():
        if no not in arrivals:
            continue
        reference = paid_at
        for w in windows:
            if w.started_at - 1.0 <= paid_at <= w.ended_at:
                reference = max(reference, w.ended_at)
        result[no] = min(arrivals[no]) - reference
    return result


async def run(args) -> int:
    faults = [f for f in args.faults.split(",") if f]
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    stack = Stack(OUT_DIR / time.strftime("%Y%m%d-%H%M%S"))
    await stack.start()
    if "pg_restart" in faults and not stack.controls_server:
        print("pg_restart skipped: DATABASE_URL names a server this run may not stop")
        faults.remove("pg_restart")
    tally, stop = Tally(), asyncio.Event()
    windows: list[FaultFigures] = []
    try:
        buyers = [asyncio.create_task(stack.buyer(tally, f"FR{n:02d}X", stop)) for n in range(args.buyers)]
        started = time.monotonic()
        try:
            for name in faults:
                await asyncio.sleep(args.calm_s)
                print(f"[{time.monotonic() - started:6.1f} s] {name} ...", flush=True)
                begun = time.monotonic()
                recovery_s = await inject(stack, tally, name, args.down_s)
                windows.append(FaultFigures(name, begun, time.monotonic(), round(recovery_s, 2)))
            await asyncio.sleep(args.calm_s)
        finally:
            stop.set()
            await asyncio.gather(*buyers)
        load_s = time.monotonic() - started
        for w in windows:
            span = [t for t in tally.error_times if w.started_at <= t <= w.ended_at + args.calm_s]
            w.error_s = round(span[-1] - span[0], 2) if span else 0.0
        await settled(stack, tally, wait_s=SETTLE_WAIT_S_MAX)
        result = await verdict(stack, tally, fault_ended_at=started, notify_bound_s=float("inf"))
        late = lateness(tally, stack.notifications.arrivals, windows)
        late_orders = [no for no, s in late.items() if s > NOTIFY_BOUND_S]
        print_figures(args, load_s, tally, result, late, late_orders, windows)
        ok = result.ok and not late_orders
        print("RESULT:", "ok" if ok else "FAILED")
        return 0 if ok else 1
    finally:
        await stack.aclose()


def outside_faults(tally: Tally, windows: list[FaultFigures], calm_s: float) -> list[float]:
    return [t for t in tally.error_times
            if not any(w.started_at <= t <= w.ended_at + calm_s for w in windows)]


def print_figures(args, load_s, tally, result, late, late_orders, windows) -> None:
    delays = sorted(late.values())
    print(f"\nload: {args.buyers} shoppers for {load_s:.0f} s; answers {dict(tally.statuses)}")
    print(f"orders acknowledged: {result.acknowledged}, lost: {len(result.lost)}, "
          f"paid: {result.paid}, duplicated (booked twice): {len(result.duplicated)}, "
          f"paid but not booked: {len(result.not_in_ledger)}")
    print(f"notifications delivered: {result.paid - len(result.not_notified)} of {result.paid}, "
          f"late (> {NOTIFY_BOUND_S:.0f} s): {len(late_orders)}, duplicated deliveries: "
          f"{result.notifications_duplicated}")
    if delays:
        p99 = delays[min(len(delays) - 1, int(len(delays) * 0.99))]
        print(f"notification delay after payment or fault end: median {statistics.median(delays):.2f} s, "
              f"p99 {p99:.2f} s, max {delays[-1]:.2f} s")
    print(f"ledger invariants: {'hold' if not result.invariant_problems else result.invariant_problems[:5]}")
    print(f"{'fault':<15}{'seconds of errors':>20}{'recovery s':>12}")
    for w in windows:
        print(f"{w.name:<15}{w.error_s:>20.2f}{w.recovery_s:>12.2f}")
    print(f"seconds of errors, all faults: {sum(w.error_s for w in windows):.2f}; outside any fault: "
          f"{len(outside_faults(tally, windows, args.calm_s))} failed requests")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--buyers", type=int, default=12, help="concurrent shoppers (default 12)")
    parser.add_argument("--calm-s", type=float, default=15.0, help="plain load before, between and after faults")
    parser.add_argument("--down-s", type=float, default=5.0, help="how long each fault lasts")
    parser.add_argument("--faults", default=",".join(FAULTS), help=f"comma-separated subset of {','.join(FAULTS)}")
    return asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
