"""The real stack as separate processes, load against it, faults, and the books afterwards.

Used by the short fault runs in tests/fault/ and by loadtests/fault_run.py (longer, more
load). PostgreSQL is an embedded server of its own (`<repo>/.mallpay/fault-pg`, so
stopping it never touches the test suite's server) or, with DATABASE_URL set, a fresh
database on that server (then faults that need server control are not available).
The emulator and the gateway run through the CLI (`python -m gateway.cli ...`), each in
its own process group, killed when the stack closes. The mall backend's notify endpoint
runs in this process and can be taken down and brought back.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import asyncpg
from aiohttp import web

from gateway import signing
from gateway.api.requests.mall import parse_new_client
from gateway.app import database_services
from gateway.db import create_pool, quote_ident, with_database
from gateway.db.embedded import EmbeddedPostgres
from gateway.db.migrate import migrate
from gateway.identity import load_or_create_identity
from gateway.repo.tenants import Tenant
from gateway.services import onboarding
from gateway.settings import Settings
from gateway import invariants
from tests.support import ClientCredentials, SignedClient, open_notification, order_body, test_key

REPO_ROOT = Path(__file__).resolve().parents[2]
FAULT_PG_ROOT = REPO_ROOT / ".mallpay" / "fault-pg"
READY_WAIT_S_MAX = 60.0
REQUEST_TIMEOUT_S = 10.0
CHECK_POLL_S = 0.25
STORES = ("1900000301", "1900000302", "1900000303")
SP_MCHID = Settings().sp_mchid
# Short retry schedules so recovery is measured in seconds, not WeChat's minutes.
GATEWAY_ENV = {
    "MALLPAY_OUTBOX_POLL_INTERVAL_MS": "100",
    "MALLPAY_NOTIFY_RETRY_SCHEDULE_S": "1,1,1,2,2,2,3,3,3,3,5,5,5,5,5",
    "MALLPAY_UNPAID_CHECK_INTERVAL_S": "1",
    "MALLPAY_UNPAID_ORDER_QUERY_AFTER_S": "3",
    "MALLPAY_LOOP_BACKOFF_INITIAL_MS": "100",
    "MALLPAY_LOOP_BACKOFF_MAX_MS": "1000",
    "MALLPAY_DB_POOL_SIZE_MAX": "8",
    "MALLPAY_DB_ACQUIRE_TIMEOUT_MS": "2000",
    "MALLPAY_LOG_LEVEL": "warning",
    "MALLPAY_JOBS_POLL_INTERVAL_MS": "200",
    "MALLPAY_SPLIT_FIRST_TRY_AFTER_S": "0",
    "MALLPAY_SPLIT_RETRY_S": "1",
    "MALLPAY_JOB_RETRY_BASE_S": "1",
}
EMULATOR_ENV = {
    "MALLPAY_EMULATOR_NOTIFY_DELAY_MS": "0",
    "MALLPAY_EMULATOR_RETRY_TIME_SCALE": "0.05",  # WeChat's 15 s retry after ~0.75 s
    "MALLPAY_EMULATOR_SPLIT_AFTER_PAYMENT_S": "0",
    "MALLPAY_EMULATOR_SPLIT_FINISH_DELAY_MS": "20",
    "MALLPAY_EMULATOR_REFUND_FINISH_DELAY_MS": "20",
    "MALLPAY_LOG_LEVEL": "warning",
}


def free_port() -> int:
    import socket
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def child_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLPAY_") and k != "DATABASE_URL"}
    env.update(extra)
    return env


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    popen: subprocess.Popen | None = None

    def start(self) -> None:
        log = open(self.log_path, "ab")
        self.popen = subprocess.Popen(self.argv, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()

    def kill(self, signum: int = signal.SIGKILL) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        try:
            os.killpg(self.popen.pid, signum)
        except ProcessLookupError:
            return
        try:
            self.popen.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(10)

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None


@dataclass
class Notifications:
    """The mall backend's notify endpoint: verifies, decrypts, records arrival times."""

    gateway_public_key: object
    apiv3_key: bytes
    port: int
    arrivals: dict[str, list[float]] = field(default_factory=dict)  # out_trade_no -> monotonic times
    _runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/notify", self._receive)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _receive(self, request: web.Request) -> web.Response:
        body = await request.read()
        event = open_notification(dict(request.headers), body, self.gateway_public_key, self.apiv3_key)
        if event["event_type"] == "TRANSACTION.SUCCESS":
            self.arrivals.setdefault(event["resource"]["out_trade_no"], []).append(time.monotonic())
        return web.Response(status=204)


@dataclass
class Tally:
    """What the load saw: acknowledged orders (200 to create) and paid ones (the channel
    took the shopper's money), and when requests failed."""

    acknowledged: dict[str, tuple[str, int]] = field(default_factory=dict)  # out_trade_no -> (store, fen)
    paid_at: dict[str, float] = field(default_factory=dict)  # out_trade_no -> monotonic time paid
    error_times: list[float] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)


class Stack:
    """Database, emulator, gateway, notify endpoint, a signed client; `aclose()` ends all."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        self.server: EmbeddedPostgres | None = None
        self.server_dsn = ""
        self.database_url = ""
        self.gateway: Child | None = None
        self.emulator: Child | None = None
        self.notifications: Notifications | None = None
        self.session: aiohttp.ClientSession | None = None
        self.client: SignedClient | None = None
        self.finance: SignedClient | None = None
        self.gateway_url = ""
        self.emulator_url = ""
        self.notify_url = ""
        self.settings = Settings(data_dir=run_dir / "data")

    @property
    def controls_server(self) -> bool:
        return self.server is not None

    async def start(self) -> "Stack":
        self.run_dir.mkdir(parents=True, exist_ok=True)
        await self._database()
        identity = load_or_create_identity(None, self.settings.data_dir)
        app_creds, finance_creds, self.admin_creds = await self._seed()
        gateway_port, emulator_port, notify_port = free_port(), free_port(), free_port()
        self.gateway_url = f"http://127.0.0.1:{gateway_port}"
        self.emulator_url = f"http://127.0.0.1:{emulator_port}"
        self.notify_url = f"http://127.0.0.1:{notify_port}/notify"
        cli = [sys.executable, "-m", "gateway.cli"]
        data = {"MALLPAY_DATA_DIR": str(self.settings.data_dir)}
        self.emulator = Child("emulator", cli + ["emulator", "--port", str(emulator_port)], child_env({
            **data, **EMULATOR_ENV,
            "MALLPAY_EMULATOR_PROFITSHARING_NOTIFY_URL": f"{self.gateway_url}/channel/wechatpay/notify"}),
            self.run_dir / "emulator.log")
        self.gateway = Child("gateway", cli + ["serve", "--host", "127.0.0.1", "--port", str(gateway_port),
                                               "--no-migrate"], child_env({
            **data, **GATEWAY_ENV, "DATABASE_URL": self.database_url, "MALLPAY_CHANNEL_URL": self.emulator_url,
            "MALLPAY_PUBLIC_URL": self.gateway_url}), self.run_dir / "gateway.log")
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S))
        self.emulator.start()
        await self.wait_ok(self.emulator, self.emulator_url + "/sandbox/notifications?out_trade_no=none")
        self.gateway.start()
        await self.wait_ok(self.gateway, self.gateway_url + "/health/ready")
        public_key = identity.private_key.public_key()
        self.client = SignedClient(self.gateway_url, app_creds, public_key, self.session)
        self.finance = SignedClient(self.gateway_url, finance_creds, public_key, self.session)
        self.gateway_public_key = public_key
        self.notifications = Notifications(public_key, app_creds.apiv3_key, notify_port)
        await self.notifications.start()
        return self

    async def _database(self) -> None:
        if os.environ.get("DATABASE_URL"):
            self.server_dsn = os.environ["DATABASE_URL"]
        else:
            self.server = EmbeddedPostgres(FAULT_PG_ROOT)
            self.server_dsn = await asyncio.to_thread(self.server.start)
        name = f"mallpay_fault_{os.getpid()}_{secrets.token_hex(3)}"
        conn = await asyncpg.connect(self.server_dsn)
        try:
            await conn.execute(f"CREATE DATABASE {quote_ident(name)}")
        finally:
            await conn.close()
        self.database_url = with_database(self.server_dsn, name)
        await migrate(self.database_url)

    async def _seed(self) -> tuple[ClientCredentials, ClientCredentials, ClientCredentials]:
        pool = await create_pool(self.database_url, min_size=1, max_size=2, statement_timeout_ms=30_000)
        try:
            s = self.settings
            svc = database_services(s, pool)
            await onboarding.ensure_mall(pool, s.sp_mchid, s.sp_appid, s.mall_name)
            for sub_mchid in STORES:
                await onboarding.create_tenant(svc, Tenant(
                    mall_id=s.sp_mchid, sub_mchid=sub_mchid, name=f"Fault store {sub_mchid}", floor="1F",
                    category="fault", sub_appid=None, contract=onboarding.contract_of()))
            creds = []
            for role, index in (("mall_app", 0), ("finance", 1), ("admin", 2)):
                key = test_key(index)
                client = parse_new_client({"role": role, "name": f"fault {role}",
                                           "public_key": signing.public_key_pem(key.public_key()).decode()})
                created = await onboarding.create_client(svc, s.sp_mchid, client)
                creds.append(ClientCredentials(created.client_id, created.serial_no, key,
                                               created.apiv3_key.reveal()))
        finally:
            await pool.close()
        return creds[0], creds[1], creds[2]

    async def wait_ok(self, child: Child, url: str, wait_s: float = READY_WAIT_S_MAX) -> float:
        """Seconds until `url` answers 200."""
        started = time.monotonic()
        while time.monotonic() - started < wait_s:
            if not child.alive():
                raise RuntimeError(f"{child.name} exited; see {child.log_path}")
            try:
                async with aiohttp.ClientSession() as probe:
                    async with probe.get(url, timeout=aiohttp.ClientTimeout(total=2)) as resp:
                        if resp.status == 200:
                            return time.monotonic() - started
            except (aiohttp.ClientError, asyncio.TimeoutError):
                pass
            await asyncio.sleep(0.1)
        raise RuntimeError(f"{child.name} not ready at {url} within {wait_s} s; see {child.log_path}")

    # -- faults ------------------------------------------------------------------------------

    async def kill_gateway(self) -> None:
        assert self.gateway is not None
        await asyncio.to_thread(self.gateway.kill, signal.SIGKILL)

    async def start_gateway(self) -> float:
        assert self.gateway is not None
        self.gateway.start()
        return await self.wait_ok(self.gateway, self.gateway_url + "/health/ready")

    async def stop_database(self) -> None:
        assert self.server is not None, "needs the embedded server"
        await asyncio.to_thread(self.server.stop)

    async def start_database(self) -> None:
        assert self.server is not None, "needs the embedded server"
        await asyncio.to_thread(self.server.start)

    async def terminate_connections(self) -> int:
        conn = await asyncpg.connect(self.database_url)
        try:
            return await conn.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()")
        finally:
            await conn.close()

    async def ready_after(self, wait_s: float = READY_WAIT_S_MAX) -> float:
        assert self.gateway is not None
        return await self.wait_ok(self.gateway, self.gateway_url + "/health/ready", wait_s)

    # -- load ----------------------------------------------------------------------------------

    async def buyer(self, tally: Tally, prefix: str, stop: asyncio.Event, total_fen_of=lambda n: 100 + n % 900):
        """One shopper after another: create an order, have it paid at the channel."""
        assert self.client is not None and self.session is not None
        number = 0
        while not stop.is_set():
            number += 1
            out_trade_no = f"{prefix}{number:06d}"
            store, total = STORES[number % len(STORES)], total_fen_of(number)
            # Every other order stays frozen for splitting, as a mall's orders with splits do.
            body = order_body(self, store, out_trade_no, total, settle_info={"profit_sharing": number % 2 == 0})
            if not await self._acknowledged(tally, body):
                continue
            tally.acknowledged[out_trade_no] = (store, total)
            await self._pay(tally, store, out_trade_no, stop)

    async def _acknowledged(self, tally: Tally, body: dict) -> bool:
        try:
            reply = await self.client.post("/v3/pay/partner/transactions/jsapi", body)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
            tally.statuses["connection_error"] += 1
            tally.error_times.append(time.monotonic())
            await asyncio.sleep(0.05)
            return False
        tally.statuses[reply.status] += 1
        if reply.status != 200:
            assert reply.status < 500 or reply.status == 503, (reply.status, reply.body[:200])
            tally.error_times.append(time.monotonic())
            await asyncio.sleep(0.05)
            return False
        return True

    async def _pay(self, tally: Tally, store: str, out_trade_no: str, stop: asyncio.Event) -> None:
        """The shopper pays at the channel (the emulator stays up through every fault)."""
        for _ in range(20):
            try:
                async with self.session.post(self.emulator_url + "/sandbox/transactions/pay",
                                             json={"sub_mchid": store, "out_trade_no": out_trade_no}) as resp:
                    if resp.status == 200:
                        tally.paid_at[out_trade_no] = time.monotonic()
                        return
            except (aiohttp.ClientError, asyncio.TimeoutError):
                pass
            await asyncio.sleep(0.1)

    async def aclose(self) -> None:
        if self.notifications is not None:
            await self.notifications.stop()
        if self.session is not None:
            await self.session.close()
        for child in (self.gateway, self.emulator):
            if child is not None:
                await asyncio.to_thread(child.kill, signal.SIGTERM)
        if self.server is not None:
            with _suppress():
                await asyncio.to_thread(self.server.start)  # a fault may have left it stopped
        if self.database_url:
            with _suppress():
                conn = await asyncpg.connect(self.server_dsn)
                try:
                    name = self.database_url.rsplit("/", 1)[1].split("?")[0]
                    await conn.execute(f"DROP DATABASE IF EXISTS {quote_ident(name)} WITH (FORCE)")
                finally:
                    await conn.close()


class _suppress:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return exc[0] is not None and issubclass(exc[0], Exception)


# -- the books ---------------------------------------------------------------------------------

@dataclass
class Verdict:
    acknowledged: int
    lost: list[str]           # acknowledged, not in the database, or with another amount
    paid: int
    not_in_ledger: list[str]  # paid at the channel, no payment transfer
    duplicated: list[str]     # more than one payment transfer
    not_notified: list[str]   # paid, no TRANSACTION.SUCCESS reached the backend
    notifications_duplicated: int
    late: list[str]           # notified later than the bound after the fault ended
    invariant_problems: list[str]

    @property
    def ok(self) -> bool:
        return not (self.lost or self.not_in_ledger or self.duplicated or self.not_notified
                    or self.late or self.invariant_problems)


PAYMENTS_OF_ORDERS_SQL = """
SELECT o.out_trade_no, o.sub_mchid, o.total_fen, o.state,
       (SELECT count(*) FROM transfers t WHERE t.mall_id = o.mall_id AND t.kind = 'payment'
           AND t.ref = o.sub_mchid || '/' || o.out_trade_no) AS payments
  FROM orders o WHERE o.out_trade_no = ANY($1::text[])
"""


async def settled(stack: Stack, tally: Tally, *, wait_s: float) -> bool:
    """Wait (bounded) until every paid order is applied and notified."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if all(no in stack.notifications.arrivals for no in tally.paid_at):
            return True
        await asyncio.sleep(CHECK_POLL_S)
    return False


async def verdict(stack: Stack, tally: Tally, *, fault_ended_at: float, notify_bound_s: float) -> Verdict:
    conn = await asyncpg.connect(stack.database_url)
    try:
        rows = {r["out_trade_no"]: r for r in await conn.fetch(PAYMENTS_OF_ORDERS_SQL, list(tally.acknowledged))}
        problems = await invariants.check_invariants(conn)
    finally:
        await conn.close()
    lost = [no for no, (store, fen) in tally.acknowledged.items()
            if no not in rows or rows[no]["total_fen"] != fen or rows[no]["sub_mchid"] != store]
    arrivals = stack.notifications.arrivals
    paid = list(tally.paid_at)
    late = [no for no in paid if no in arrivals
            and min(arrivals[no]) - max(fault_ended_at, tally.paid_at[no]) > notify_bound_s]
    return Verdict(
        acknowledged=len(tally.acknowledged), lost=lost, paid=len(paid),
        not_in_ledger=[no for no in paid if no not in rows or rows[no]["payments"] == 0],
        duplicated=[no for no in paid if no in rows and rows[no]["payments"] > 1],
        not_notified=[no for no in paid if no not in arrivals],
        notifications_duplicated=sum(len(times) - 1 for times in arrivals.values()),
        late=late, invariant_problems=problems)


def error_seconds(tally: Tally, since: float) -> float:
    """Length of the span in which requests failed (first to last failure after `since`)."""
    times = [t for t in tally.error_times if t >= since]
    return round(times[-1] - times[0], 2) if times else 0.0


def as_json(verdict_: Verdict) -> str:
    return json.dumps(verdict_.__dict__, default=str)
