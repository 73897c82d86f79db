"""Run the hot-path load test headless against a stack it starts itself, then check the books.

    python loadtests/run_load.py --users 64 --seconds 60 [--spawn-rate N] [--repeat K]
    python loadtests/run_load.py --users 8 64 --seconds 60 --repeat 3   # interleaved, with medians
    python loadtests/run_load.py --users 8 --seconds 30 --coupons off on --repeat 2   # what coupons add

Per run: a fresh database on the embedded PostgreSQL (root loadtests/out/data), migrated
and seeded through the gateway's onboarding service (stores + one mall_app client written
as `mallpay client create` writes it); the emulator and the gateway as separate processes
(`mallpay emulator`, `mallpay serve`); Locust headless with loadtests/locustfile.py (the
notify receiver lives in the Locust process). Afterwards it waits for the outbox to drain,
checks that every paid order was notified and that the ledger invariants hold, and prints
throughput, per-step latency, failures and the gateway's CPU per payment next to the RSA
floor. Exits 1 if anything failed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import asyncpg
from stack import (DATA_ROOT, LOADTESTS_DIR, OUT_DIR, PY_SPY_RATE_HZ, Child, cpu_delta_s, cpu_seconds, process_tree,
                   free_port, fresh_database, install_signal_exit, measure_rsa, postgres_pids, py_spy,
                   spawn, start_postgres, summarize_collapsed, wait_http_ok)

from gateway.invariants import check_invariants
from gateway import signing
from gateway.api.requests.mall import parse_new_campaign, parse_new_client
from gateway.app import database_services
from gateway.channel.credentials import ensure_local_credentials
from gateway.cli import write_client_config
from gateway.db import create_pool
from gateway.db.migrate import migrate
from gateway.identity import load_or_create_identity
from gateway.repo import outbox as outbox_repo
from gateway.repo.clients import Caller
from gateway.repo.tenants import Tenant
from gateway.services import coupon_campaigns, onboarding
from gateway.services.context import Services
from gateway.settings import Settings

STEP_CREATE = "1 create order"
STEP_END_TO_END = "payment end-to-end"
# Signatures the gateway makes per completed payment, read off the code paths the
# locustfile drives (one create, one pay, one notification, one query per purchase):
#   1. create response         api.middleware.sign_responses -> auth.sign_response (gateway key)
#   2. pay_params.paySign      channel.client.jsapi_pay_params (mall merchant key)
#   3. channel create request  channel.client._request_headers -> build_authorization (merchant key)
#   4. TRANSACTION.SUCCESS     outbox._attempt -> auth.signed_response_headers (gateway key)
#   5. query response          api.middleware.sign_responses (gateway key)
# The 204 to the channel's notification is not signed (/channel/ is outside /v3/).
GATEWAY_SIGNS_PER_PAYMENT = 5
# Verifications: create request and query request (auth.authenticate), the channel's
# create answer (client._response_signed), the channel's notification (_open_notification).
GATEWAY_VERIFIES_PER_PAYMENT = 4
LOCUST_EXTRA_WAIT_S = 120.0  # start-up and shutdown beyond --seconds and --stop-timeout
DRAIN_WAIT_S_MAX = 60.0
PROFILE_GRACE_S = 5
STATS_FLUSH_WAIT_S = 1.0
NO_EXPERIMENT = "as-is"
COUPONS_OFF = "off"
COUPONS_ON = "on"
# With --coupons on: one campaign per store (its coupons redeemable there, so every payment
# elsewhere can trigger it), mall- and store-funded in turn, budgets no run can exhaust and
# a per-shopper limit above what a shopper of the locustfile can collect.
CAMPAIGN_DISCOUNT_FEN = 2000
CAMPAIGN_THRESHOLD_FEN = 10000
CAMPAIGN_BUDGET_COUNT = 100_000  # 2 million yuan each; a run issues a few thousand
CAMPAIGN_PER_SHOPPER_MAX = 10_000
CAMPAIGN_DAYS = 30
COUPON_VALID_S = 7 * 86400
POLL_S = 0.5


@dataclass
class RunResult:
    users: int
    seconds: int
    out_dir: str
    experiment: str = "as-is"
    coupons: str = COUPONS_OFF
    campaigns: int = 0
    coupons_issued: int = 0
    coupon_decisions: dict = field(default_factory=dict)
    outbox_delay_ms: dict = field(default_factory=dict)
    orders_per_s: float = 0.0
    payments_per_s: float = 0.0
    steps: list[dict] = field(default_factory=list)
    failures: int = 0
    problems: list[str] = field(default_factory=list)
    paid: int = 0
    notified_missing: int = 0
    outbox: dict = field(default_factory=dict)
    receiver: dict = field(default_factory=dict)
    cpu_ms_per_payment: dict = field(default_factory=dict)
    gateway_core_share: float = 0.0
    db_transactions_per_payment: float = 0.0
    sign_ms: float = 0.0
    verify_ms: float = 0.0
    crypto_floor_ms: float = 0.0
    profile: str = ""

    @property
    def ok(self) -> bool:
        return self.failures == 0 and not self.problems and self.paid > 0


def main() -> int:
    args = _parser().parse_args()
    install_signal_exit()
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    batch_dir = args.out or OUT_DIR / stamp
    experiments = args.gateway_experiments or [NO_EXPERIMENT]
    coupon_settings = args.coupons or [COUPONS_OFF]
    plan = [(users, experiment, coupons) for _ in range(args.repeat) for users in args.users
            for experiment in experiments for coupons in coupon_settings]
    results: list[RunResult] = []
    with ExitStack() as stack:
        server, server_dsn = start_postgres(stack)
        for index, (users, experiment, coupons) in enumerate(plan, start=1):
            label = "" if experiment == NO_EXPERIMENT else f"-{experiment}"
            label += "" if args.coupons is None else f"-coupons-{coupons}"
            run_dir = batch_dir / f"run{index:02d}-u{users}{label}"
            run_dir.mkdir(parents=True, exist_ok=True)
            print(f"\n== run {index}/{len(plan)}: {users} users, {args.seconds} s, gateway {experiment}, "
                  f"coupons {coupons} -> {run_dir}", flush=True)
            result = one_run(args, users, experiment, server, server_dsn, f"load_{stamp.replace('-', '_')}_{index}",
                             run_dir, coupons)
            results.append(result)
            print_run(result)
            (run_dir / "summary.json").write_text(json.dumps(asdict(result), indent=2) + "\n")
    if len(plan) > 1:
        print_comparison(results)
    return 0 if all(r.ok for r in results) else 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, nargs="+", required=True, help="concurrent users (several: one run each)")
    parser.add_argument("--seconds", type=int, default=60, help="Locust run time of each run")
    parser.add_argument("--spawn-rate", type=float, help="users started per second (default: all in 1 s)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per user count, interleaved")
    parser.add_argument("--stores", type=int, default=24, help="stores the purchases spread over")
    parser.add_argument("--stop-timeout", type=int, default=30, help="seconds users get to finish a purchase")
    parser.add_argument("--emulator-notify-delay-ms", type=int, default=0,
                        help="the emulator's pause before notifying the gateway (WeChat's latency stand-in)")
    parser.add_argument("--gateway-env", action="append", default=[], metavar="KEY=VALUE",
                        help="extra environment for the gateway (e.g. MALLPAY_OUTBOX_POLL_INTERVAL_MS=20)")
    parser.add_argument("--gateway-experiments", nargs="+", metavar="NAME[+NAME]",
                        help=f"one run each (interleaved): '{NO_EXPERIMENT}' is the gateway as it is, other names "
                             "run it through loadtests/gateway_experiment.py (e.g. no-pool-reset)")
    parser.add_argument("--coupons", nargs="+", choices=[COUPONS_ON, COUPONS_OFF],
                        help="one run each (interleaved): 'on' seeds a coupon campaign at every store, so coupons "
                             "of other stores are issued after each payment; 'off' seeds none (the default)")
    parser.add_argument("--profile-gateway", action="store_true",
                        help="sample the gateway with py-spy during the run (pip install py-spy)")
    parser.add_argument("--out", type=Path, help="output folder (default loadtests/out/<timestamp>)")
    return parser


def one_run(args, users: int, experiment: str, server, server_dsn: str, database: str, run_dir: Path,
            coupons: str = COUPONS_OFF) -> RunResult:
    result = RunResult(users=users, seconds=args.seconds, out_dir=str(run_dir), experiment=experiment,
                       coupons=coupons)
    database_url = asyncio.run(fresh_database(server_dsn, database, drop_like="load\\_%"))
    asyncio.run(migrate(database_url))
    gateway_port, emulator_port, notify_port = free_port(), free_port(), free_port()
    settings = Settings(data_dir=DATA_ROOT, public_url=f"http://127.0.0.1:{gateway_port}",
                        channel_url=f"http://127.0.0.1:{emulator_port}")
    ensure_local_credentials(DATA_ROOT, settings.sp_mchid)  # before both children race for it
    identity = load_or_create_identity(None, DATA_ROOT)
    sub_mchids = [f"19{index + 1:08d}" for index in range(args.stores)]
    asyncio.run(seed(database_url, settings, identity, sub_mchids, run_dir / "client"))
    if coupons == COUPONS_ON:
        result.campaigns = asyncio.run(seed_campaigns(database_url, settings, identity, sub_mchids))
    with ExitStack() as stack:
        emulator, gateway = start_services(stack, args, experiment, settings, database_url, emulator_port,
                                           gateway_port, run_dir)
        rsa = measure_rsa(identity.private_key)  # same run, machine as quiet as it gets
        result.sign_ms, result.verify_ms = rsa.sign_ms, rsa.verify_ms
        result.crypto_floor_ms = GATEWAY_SIGNS_PER_PAYMENT * rsa.sign_ms + GATEWAY_VERIFIES_PER_PAYMENT * rsa.verify_ms
        profiler = profile_gateway(stack, gateway, args.seconds, run_dir) if args.profile_gateway else None
        watched = {"gateway": process_tree(gateway.pid), "emulator": [emulator.pid], "postgres": postgres_pids(server)}
        before = {name: cpu_seconds(pids) for name, pids in watched.items()}
        xacts_before = asyncio.run(database_transactions(database_url))
        started = time.monotonic()
        locust_cpu_s = run_locust(stack, args, users, settings, sub_mchids, notify_port, run_dir)
        own_xacts = asyncio.run(wait_outbox_drained(database_url))
        wall_s = time.monotonic() - started
        watched["postgres"] = postgres_pids(server)
        watched["gateway"] = process_tree(gateway.pid)
        after = {name: cpu_seconds(pids) for name, pids in watched.items()}
        if not gateway.alive():
            result.problems.append(f"the gateway died; see {gateway.log_path}")
        if profiler is not None:
            result.profile = summarize_profile(profiler, run_dir)
    time.sleep(STATS_FLUSH_WAIT_S)  # the gateway's backends report their counts as they exit
    xacts = asyncio.run(database_transactions(database_url)) - xacts_before - own_xacts
    cpu_s = {name: cpu_delta_s(before[name], after[name]) for name in watched}
    cpu_s["locust"] = locust_cpu_s
    locust_result = read_locust_result(run_dir / "locust_result.json")
    read_steps(result, locust_result)
    asyncio.run(check_books(result, database_url, settings.sp_mchid, locust_result))
    asyncio.run(read_delivery(result, database_url))
    if result.paid:
        result.cpu_ms_per_payment = {name: round(s * 1000 / result.paid, 2) for name, s in cpu_s.items()}
    result.gateway_core_share = cpu_s["gateway"] / wall_s if wall_s else 0.0
    result.db_transactions_per_payment = round(xacts / result.paid, 1) if result.paid else 0.0
    return result


async def database_transactions(database_url: str) -> int:
    """Transactions committed or rolled back in the run's database so far (every
    autocommit statement, and every pool release's reset query, is one)."""
    conn = await asyncpg.connect(database_url, timeout=30)
    try:
        return await conn.fetchval("SELECT xact_commit + xact_rollback FROM pg_stat_database "
                                   "WHERE datname = current_database()")
    finally:
        await conn.close()


async def seed(database_url: str, settings: Settings, identity, sub_mchids: list[str], client_dir: Path) -> None:
    """Stores and one mall_app client, through the gateway's own onboarding service."""
    pool = await create_pool(database_url, min_size=1, max_size=2, statement_timeout_ms=30_000)
    try:
        svc = database_services(settings, pool)
        await onboarding.ensure_mall(pool, settings.sp_mchid, settings.sp_appid, settings.mall_name)
        for number, sub_mchid in enumerate(sub_mchids, start=1):
            await onboarding.create_tenant(svc, Tenant(
                mall_id=settings.sp_mchid, sub_mchid=sub_mchid, name=f"Load store {number}", floor="1F",
                category="load", sub_appid=None, contract=onboarding.contract_of()))
        key = signing.generate_private_key()
        client = parse_new_client({"role": "mall_app", "name": "load test backend",
                                   "public_key": signing.public_key_pem(key.public_key()).decode()})
        created = await onboarding.create_client(svc, settings.sp_mchid, client)
    finally:
        await pool.close()
    write_client_config(client_dir, settings, created, key, identity)


async def seed_campaigns(database_url: str, settings: Settings, identity, sub_mchids: list[str]) -> int:
    """A campaign at every store through the gateway's campaign service, as the mall's admin
    would create it with POST /v3/mall/coupon-campaigns; returns how many."""
    pool = await create_pool(database_url, min_size=1, max_size=2, statement_timeout_ms=30_000)
    now = datetime.now(timezone.utc)
    svc = Services(settings=settings, pool=pool, channel=None, clock=lambda: datetime.now(timezone.utc),
                   identity=identity)
    admin = Caller(client_id="load-admin", mall_id=settings.sp_mchid, sp_appid=settings.sp_appid, role="admin",
                   sub_mchid=None, apiv3_key=signing.Secret(b"unused"))
    try:
        for number, sub_mchid in enumerate(sub_mchids):
            await coupon_campaigns.create_campaign(svc, admin, parse_new_campaign({
                "name": f"20 off 100 at {sub_mchid}", "sub_mchid": sub_mchid,
                "funded_by": "mall" if number % 2 == 0 else "store",
                "discount": {"type": "threshold", "amount": CAMPAIGN_DISCOUNT_FEN,
                             "threshold": CAMPAIGN_THRESHOLD_FEN},
                "budget": {"amount": CAMPAIGN_DISCOUNT_FEN * CAMPAIGN_BUDGET_COUNT, "count": CAMPAIGN_BUDGET_COUNT},
                "per_shopper_max": CAMPAIGN_PER_SHOPPER_MAX,
                "starts_at": (now - timedelta(hours=1)).isoformat(),
                "ends_at": (now + timedelta(days=CAMPAIGN_DAYS)).isoformat(),
                "coupon_valid_seconds": COUPON_VALID_S}))
    finally:
        await pool.close()
    return len(sub_mchids)


def child_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLPAY_") and k != "DATABASE_URL"}
    env.update(extra)
    return env


def profile_gateway(stack, gateway: Child, seconds: int, run_dir: Path) -> Child:
    """py-spy samples the gateway through the Locust run (not its drain)."""
    spy = py_spy()
    if spy is None:
        raise SystemExit("--profile-gateway needs py-spy: pip install py-spy")
    return spawn(stack, "py-spy", [spy, "record", "--pid", str(gateway.pid), "--rate", str(PY_SPY_RATE_HZ),
                                   "--format", "raw", "--output", str(run_dir / "gateway-profile.raw"),
                                   "--duration", str(seconds + PROFILE_GRACE_S), "--nonblocking"],
                 child_env({}), run_dir / "py-spy.log")


def summarize_profile(profiler: Child, run_dir: Path) -> str:
    try:
        profiler.popen.wait(PROFILE_GRACE_S + 30)
    except subprocess.TimeoutExpired:
        return "py-spy did not finish; see " + str(profiler.log_path)
    raw = run_dir / "gateway-profile.raw"
    text = summarize_collapsed(raw, top=30) if raw.exists() else "py-spy wrote nothing; see " + str(profiler.log_path)
    (run_dir / "gateway-profile.txt").write_text(text + "\n")
    return text


def start_services(stack, args, experiment: str, settings: Settings, database_url: str, emulator_port: int,
                   gateway_port: int, run_dir: Path) -> tuple[Child, Child]:
    cli = [sys.executable, "-m", "gateway.cli"]
    emulator = spawn(stack, "emulator", cli + ["emulator", "--port", str(emulator_port)], child_env({
        "MALLPAY_DATA_DIR": str(DATA_ROOT), "MALLPAY_LOG_LEVEL": "warning",
        "MALLPAY_EMULATOR_NOTIFY_DELAY_MS": str(args.emulator_notify_delay_ms),
    }), run_dir / "emulator.log")
    wait_http_ok(emulator, settings.channel_url + "/sandbox/notifications?out_trade_no=none")
    overrides = dict(item.split("=", 1) for item in args.gateway_env)
    if experiment != NO_EXPERIMENT:
        cli = [sys.executable, str(LOADTESTS_DIR / "gateway_experiment.py"), experiment]
    gateway = spawn(stack, "gateway", cli + ["serve", "--host", "127.0.0.1", "--port", str(gateway_port),
                                             "--no-migrate"], child_env({
        "DATABASE_URL": database_url, "MALLPAY_DATA_DIR": str(DATA_ROOT),
        "MALLPAY_CHANNEL_URL": settings.channel_url, "MALLPAY_PUBLIC_URL": settings.public_url, **overrides,
    }), run_dir / "gateway.log")
    wait_http_ok(gateway, settings.public_url + "/health")
    return emulator, gateway


def run_locust(stack, args, users: int, settings: Settings, sub_mchids: list[str], notify_port: int,
               run_dir: Path) -> float:
    """Run Locust to completion (bounded); returns its CPU seconds (sampled until exit)."""
    argv = [sys.executable, "-m", "locust", "-f", str(LOADTESTS_DIR / "locustfile.py"), "--headless",
            "-u", str(users), "-r", str(args.spawn_rate or users), "-t", f"{args.seconds}s",
            "--stop-timeout", str(args.stop_timeout), "--host", settings.public_url,
            "--csv", str(run_dir / "locust"), "--only-summary"]
    locust = spawn(stack, "locust", argv, child_env({
        "MALLPAY_LOAD_GATEWAY_URL": settings.public_url, "MALLPAY_LOAD_EMULATOR_URL": settings.channel_url,
        "MALLPAY_LOAD_CLIENT_CONFIG": str(run_dir / "client" / "config.json"),
        "MALLPAY_LOAD_SUB_MCHIDS": ",".join(sub_mchids),
        "MALLPAY_LOAD_NOTIFY_URL": f"http://127.0.0.1:{notify_port}/notify",
        "MALLPAY_LOAD_RESULT_FILE": str(run_dir / "locust_result.json"),
    }), run_dir / "locust.log")
    deadline = time.monotonic() + args.seconds + args.stop_timeout + LOCUST_EXTRA_WAIT_S
    cpu_s = 0.0
    while locust.alive():
        if time.monotonic() > deadline:
            raise RuntimeError(f"locust still running past its deadline; see {locust.log_path}")
        cpu_s = cpu_seconds([locust.pid]).get(locust.pid, cpu_s)
        time.sleep(POLL_S)
    return cpu_s


async def wait_outbox_drained(database_url: str) -> int:
    """Bounded wait until no notification is pending (the last purchases' are in flight);
    returns the database transactions this wait itself made (query plus pool reset)."""
    conn = await asyncpg.connect(database_url, timeout=30)
    own_xacts = 0
    try:
        deadline = time.monotonic() + DRAIN_WAIT_S_MAX
        while time.monotonic() < deadline:
            own_xacts += 1
            if not await conn.fetchval("SELECT count(*) FROM outbox WHERE state = 'pending'"):
                return own_xacts
            await asyncio.sleep(POLL_S)
        return own_xacts
    finally:
        await conn.close()


async def read_delivery(result: RunResult, database_url: str) -> None:
    """Notification delay in the gateway (outbox delivered_at - created_at of every delivered
    TRANSACTION.SUCCESS: held for coupon issuing, waiting for the outbox, sending), coupons
    issued and coupon decisions of the run."""
    conn = await asyncpg.connect(database_url, timeout=30)
    try:
        row = await conn.fetchrow(
            "SELECT count(*) AS n, "
            "percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY delay_ms) AS p, max(delay_ms) AS max "
            "FROM (SELECT extract(epoch FROM delivered_at - created_at) * 1000 AS delay_ms FROM outbox "
            "      WHERE state = 'delivered' AND event_type = 'TRANSACTION.SUCCESS') AS d")
        result.coupons_issued = await conn.fetchval("SELECT count(*) FROM coupons")
        result.coupon_decisions = {r["treated"]: r["n"] for r in await conn.fetch(
            "SELECT CASE WHEN held_out THEN 'held_out' ELSE 'treated' END AS treated, count(*) AS n "
            "FROM coupon_decisions GROUP BY 1")}
    finally:
        await conn.close()
    if row["n"]:
        p50, p95, p99 = (float(x) for x in row["p"])
        result.outbox_delay_ms = {"count": row["n"], "p50": round(p50, 1), "p95": round(p95, 1),
                                  "p99": round(p99, 1), "max": round(float(row["max"]), 1)}


def read_steps(result: RunResult, locust_result: dict) -> None:
    """Per-step figures from the Locust process's exit-time statistics (see locustfile)."""
    for step in sorted(locust_result["steps"], key=lambda s: s["name"]):
        result.steps.append(step)
        result.failures += step["failures"]
        if step["name"] == STEP_CREATE:
            result.orders_per_s = step["per_s"]
        elif step["name"] == STEP_END_TO_END:
            result.payments_per_s = step["per_s"]
    if locust_result["exit_code"]:
        result.problems.append(f"locust exited with {locust_result['exit_code']}")
    result.problems += [f"{e['count']} x {e['name']}: {e['error']}" for e in locust_result["errors"][:10]]


def read_locust_result(path: Path) -> dict:
    if not path.exists():
        return {"exit_code": "no result file (did Locust exit cleanly?)", "steps": [], "errors": [], "notified": []}
    return json.loads(path.read_text())


async def check_books(result: RunResult, database_url: str, mall_id: str, tally: dict) -> None:
    """Every paid order notified, nothing left unpaid or pending, ledger invariants empty."""
    result.receiver = {"notified": len(tally["notified"]),
                       **{k: tally.get(k, 0) for k in ("duplicates", "rejected", "unexpected")}}
    pool = await create_pool(database_url, min_size=1, max_size=1, statement_timeout_ms=300_000)
    try:
        async with pool.acquire() as conn:
            states = {r["state"]: r["n"] for r in await conn.fetch(
                "SELECT state, count(*) AS n FROM orders GROUP BY state")}
            paid = {r["out_trade_no"] for r in await conn.fetch(
                "SELECT out_trade_no FROM orders WHERE state = 'SUCCESS'")}
            result.outbox = await outbox_repo.counts(conn, mall_id)
            invariants = await check_invariants(conn)
    finally:
        await pool.close()
    result.paid = len(paid)
    result.notified_missing = len(paid - set(tally["notified"]))
    if result.notified_missing:
        result.problems.append(f"{result.notified_missing} paid orders never reached the mall backend")
    if states.get("NOTPAY"):
        result.problems.append(f"{states['NOTPAY']} orders left unpaid")
    if result.outbox.get("pending") or result.outbox.get("dead"):
        result.problems.append(f"outbox not drained: {result.outbox}")
    if tally.get("rejected"):
        result.problems.append(f"{tally['rejected']} notifications failed verification")
    result.problems += [f"invariant: {p}" for p in invariants[:20]]


def print_run(r: RunResult) -> None:
    print(f"orders created        {r.orders_per_s:8.1f} /s")
    print(f"payments end-to-end   {r.payments_per_s:8.1f} /s   ({r.paid} orders paid)")
    print(f"  {'step':<36} {'count':>7} {'fail':>5} {'p50':>6} {'p95':>6} {'p99':>6} {'max':>6}  (ms)")
    for s in r.steps:
        print(f"  {s['name']:<36} {s['count']:>7} {s['failures']:>5} {s['p50_ms']:>6.0f} {s['p95_ms']:>6.0f} "
              f"{s['p99_ms']:>6.0f} {s['max_ms']:>6.0f}")
    print(f"failures              {r.failures}")
    print(f"paid orders notified  {r.paid - r.notified_missing} of {r.paid}  (outbox {r.outbox}; receiver {r.receiver})")
    if r.outbox_delay_ms:
        d = r.outbox_delay_ms
        print(f"notification delay    p50 {d['p50']:.0f}  p95 {d['p95']:.0f}  p99 {d['p99']:.0f}  max {d['max']:.0f} ms "
              f"(outbox delivered_at - created_at, {d['count']} TRANSACTION.SUCCESS)")
    print(f"coupons               {r.coupons}: {r.campaigns} campaigns, {r.coupons_issued} coupons issued, "
          f"decisions {r.coupon_decisions or 'none'}")
    invariant_problems = [p for p in r.problems if p.startswith("invariant:")]
    print(f"ledger invariants     {'hold (check_invariants is empty)' if not invariant_problems else invariant_problems}")
    if r.cpu_ms_per_payment:
        cpu = r.cpu_ms_per_payment
        print("CPU per completed payment (ms): " + ", ".join(f"{k} {v:.2f}" for k, v in cpu.items())
              + f"; gateway used {r.gateway_core_share:.0%} of one core; "
              f"{r.db_transactions_per_payment} database transactions per payment")
        print(f"RSA-2048 this run: sign {r.sign_ms:.3f} ms, verify {r.verify_ms:.3f} ms; the gateway makes "
              f"{GATEWAY_SIGNS_PER_PAYMENT} signatures + {GATEWAY_VERIFIES_PER_PAYMENT} verifications per payment "
              f"-> floor {r.crypto_floor_ms:.2f} ms = {r.crypto_floor_ms / cpu['gateway']:.0%} of the gateway's "
              f"{cpu['gateway']:.2f} ms")
    if r.profile:
        print("gateway profile (py-spy, share of samples):\n" + r.profile)
    other = [p for p in r.problems if not p.startswith("invariant:")]
    print(f"result                {'OK' if r.ok else 'FAILED: ' + '; '.join(other or ['see above'])}", flush=True)


def print_comparison(results: list[RunResult]) -> None:
    print("\n== medians per configuration ==")
    groups: dict[tuple[int, str], list[RunResult]] = {}
    without_coupons = [r for r in results if r.coupons == COUPONS_OFF] or results  # coupons: compared below
    for r in without_coupons:
        groups.setdefault((r.users, r.experiment), []).append(r)
    med = statistics.median
    for (users, experiment), runs in groups.items():
        print(f"  {users:>4} users, gateway {experiment:<14} ({len(runs)} runs): "
              f"orders {med([r.orders_per_s for r in runs]):6.1f}/s  payments e2e {med([r.payments_per_s for r in runs]):6.1f}/s  "
              f"e2e p50/p95/p99 {_step_median(runs, STEP_END_TO_END)} ms  "
              f"gateway CPU {med([r.cpu_ms_per_payment.get('gateway', 0) for r in runs]):.2f} ms/payment "
              f"(RSA floor {med([r.crypto_floor_ms for r in runs]):.2f})  "
              f"DB tx/payment {med([r.db_transactions_per_payment for r in runs]):.1f}  "
              f"failures {sum(r.failures for r in runs)}")
    users_counts = sorted({users for users, _ in groups})
    experiments = list(dict.fromkeys(experiment for _, experiment in groups))
    for experiment in experiments:  # more users must not mean fewer payments (no hot-row collapse)
        _print_ratios(f"{experiment}: {users_counts[-1]} users / {users_counts[0]} users",
                      groups.get((users_counts[0], experiment), []), groups.get((users_counts[-1], experiment), []))
    for users in users_counts:
        for experiment in experiments[1:]:
            _print_ratios(f"{users} users: {experiment} / {experiments[0]}",
                          groups.get((users, experiments[0]), []), groups.get((users, experiment), []))


    print_coupon_comparison(results)


def print_coupon_comparison(results: list[RunResult]) -> None:
    """Notification delay with coupons on next to off, per user count and gateway experiment:
    medians over runs, and the p99 added per interleaved pair (on minus the off beside it)."""
    if not any(r.coupons == COUPONS_ON for r in results):
        return
    print("\n== coupons on vs off: notification delay (ms, p50/p95/p99) ==")
    med = statistics.median
    configs = list(dict.fromkeys((r.users, r.experiment) for r in results))
    for users, experiment in configs:
        by = {c: [r for r in results if (r.users, r.experiment, r.coupons) == (users, experiment, c)]
              for c in (COUPONS_OFF, COUPONS_ON)}
        for coupons, runs in by.items():
            if not runs:
                continue
            delay = "/".join(f"{med(r.outbox_delay_ms.get(f'p{p}', 0) for r in runs):.0f}" for p in (50, 95, 99))
            print(f"  {users:>4} users, gateway {experiment:<10} coupons {coupons:<3} ({len(runs)} runs): "
                  f"payment end-to-end {_step_median(runs, STEP_END_TO_END)}  outbox delivered-created {delay}  "
                  f"payments {med(r.payments_per_s for r in runs):.1f}/s  "
                  f"coupons issued {sum(r.coupons_issued for r in runs)}")
        pairs = list(zip(by[COUPONS_OFF], by[COUPONS_ON]))
        if pairs:
            e2e = [_step(on, STEP_END_TO_END)["p99_ms"] - _step(off, STEP_END_TO_END)["p99_ms"] for off, on in pairs]
            outbox = [on.outbox_delay_ms.get("p99", 0) - off.outbox_delay_ms.get("p99", 0) for off, on in pairs]
            print(f"  p99 added by coupons, per interleaved pair: payment end-to-end "
                  + ", ".join(f"{x:+.0f}" for x in e2e) + f" ms (median {med(e2e):+.0f}); outbox "
                  + ", ".join(f"{x:+.0f}" for x in outbox) + f" ms (median {med(outbox):+.0f})")


def _step(r: RunResult, name: str) -> dict:
    return next((s for s in r.steps if s["name"] == name), {"p99_ms": 0.0})


def _print_ratios(label: str, base: list[RunResult], other: list[RunResult]) -> None:
    """payments/s ratios of runs paired in the order they ran (neighbours in time)."""
    ratios = [o.payments_per_s / b.payments_per_s for b, o in zip(base, other) if b.payments_per_s]
    if ratios and base is not other:
        print(f"  payments/s {label}, per interleaved pair: " + ", ".join(f"{x:.2f}" for x in ratios)
              + f"  (median {statistics.median(ratios):.2f})")

def _step_median(runs: list[RunResult], name: str) -> str:
    steps = [s for r in runs for s in r.steps if s["name"] == name]
    if not steps:
        return "-"
    return "/".join(f"{statistics.median(s[f'p{p}_ms'] for s in steps):.0f}" for p in (50, 95, 99))

if __name__ == "__main__":
    sys.exit(main())
