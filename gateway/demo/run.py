"""Start everything on this machine, let shoppers trade, print where the money went."""

from __future__ import annotations

import asyncio
import fcntl
import random
import socket
import sys
import time
from contextlib import AsyncExitStack, contextmanager, nullcontext
from datetime import datetime, timedelta, timezone
from pathlib import Path

import aiohttp
from aiohttp import web

from gateway import invariants
from gateway.api import SERVICES
from gateway.app import create_app
from gateway.channel.credentials import ensure_local_credentials
from emulator import create_emulator_app
from emulator.config import EmulatorConfig
from gateway.db import connect, quote_ident, with_database
from gateway.db.embedded import EmbeddedPostgres
from gateway.db.migrate import migrate
from gateway.demo.backend import MallBackend, NotificationInbox
from gateway.demo.seed import backend_credentials, demo_stores, seed_mall
from gateway.demo.seed import FRANCHISE_RATIO_BPS
from gateway.demo.shoppers import Tally, refund_some, shop
from gateway.identity import load_or_create_identity
from gateway.logging import configure_logging
from gateway.repo import outbox as outbox_repo
from gateway.settings import Settings
from ledger import repo as ledger_repo

DEMO_DATABASE = "mallpay_demo"
DRAIN_WAIT_S_MAX = 15.0
# Background work is waited for while it progresses: given up only after this long with
# nothing finished (a slow machine takes longer, never gives up early), or at the cap.
SETTLE_STALL_S = 30.0
SETTLE_WAIT_S_MAX = 600.0
BAR_WIDTH = 30
# The channel refuses splits for this long after payment (WeChat: about a minute; shortened
# so the demo shows the gateway retrying without waiting a minute).
DEMO_SPLIT_AFTER_PAYMENT_S = 2
FAST_FORWARD = timedelta(days=29, hours=1)


class DemoClock:
    """Real time plus an offset the demo moves forward to show the freeze deadline."""

    def __init__(self):
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(timezone.utc) + self.offset


class DemoAlreadyRunning(RuntimeError):
    """Another demo resets and uses the same database now: a second would drop it under it."""


@contextmanager
def only_demo_here(data_dir: Path):
    """Held while a demo runs on the embedded server of `data_dir` (its database is reset
    at start). The lock is the kernel's, so a demo that died leaves none behind."""
    lock_file = open(data_dir / "demo.lock", "a+")
    try:
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DemoAlreadyRunning(f"another demo is running on {data_dir}: wait for it to end, or give "
                                     "this one its own MALLPAY_DATA_DIR") from None
        yield
    finally:
        lock_file.close()


async def run_demo(settings: Settings, *, shoppers: int, seconds: float, stores: int) -> int:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    # DATABASE_URL is used as it is, never reset: nothing to guard then.
    with nullcontext() if settings.database_url else only_demo_here(settings.data_dir):
        return await _run_demo(settings, shoppers=shoppers, seconds=seconds, stores=stores)


async def _run_demo(settings: Settings, *, shoppers: int, seconds: float, stores: int) -> int:
    out = sys.stdout
    log_path = settings.data_dir / "demo.log"
    log_file = open(log_path, "a", encoding="utf-8")
    configure_logging(settings.log_level, stream=log_file)
    database_url = await _demo_database(settings, out)
    await migrate(database_url)
    catalog = demo_stores(stores)
    clock = DemoClock()
    async with AsyncExitStack() as stack:
        session = await stack.enter_async_context(aiohttp.ClientSession())
        gateway_port = _free_port()
        gateway_url = f"http://127.0.0.1:{gateway_port}"
        emulator_url = await _start(stack, _emulator_app(settings, gateway_url, clock))
        settings = settings.with_(channel_url=emulator_url, public_url=gateway_url, outbox_poll_interval_ms=50,
                                  unpaid_check_interval_s=2.0, split_first_try_after_s=DEMO_SPLIT_AFTER_PAYMENT_S,
                                  split_retry_s=1, job_retry_base_s=1, jobs_poll_interval_ms=200)
        identity = load_or_create_identity(settings.gateway_private_key_file, settings.data_dir)
        app = create_app(settings, database_url=database_url, identity=identity, clock=clock)
        await _start(stack, app, gateway_port)
        svc = app[SERVICES]
        await seed_mall(svc, catalog)
        await _franchise_cap_at_channel(session, emulator_url, catalog)
        creds = await backend_credentials(svc, identity, "mall_app", "demo mini-program")
        inbox = NotificationInbox(creds)
        notify_url = await _start(stack, inbox.app()) + "/notify"
        out.write(f"Mall '{settings.mall_name}' ({settings.sp_mchid}): {len(catalog)} stores on "
                  f"{len({s.floor for s in catalog})} floors; gateway {settings.public_url}, "
                  f"WeChat Pay emulator {emulator_url}\n")
        out.write(f"{shoppers} shoppers shop for {seconds:.0f} s ...\n")
        tally = Tally()
        backend = MallBackend(settings.public_url, creds, session, clock=lambda: clock().timestamp())
        await _trade(backend, emulator_url, catalog, settings, notify_url, shoppers, seconds, tally, out)
        await _drain(inbox, tally)
        await _settle(svc, out, "guide rewards and brand splits")
        out.write(f"Moving the clock {FAST_FORWARD.days} days on: the gateway must finish every frozen "
                  "order (commission by contract, the rest unfrozen) before WeChat's 30-day auto-unfreeze ...\n")
        clock.offset = FAST_FORWARD
        await _settle(svc, out, "frozen orders finished", until_unfrozen=True)
        await refund_some(backend, tally, random.Random(seconds))
        await _settle(svc, out, f"{tally.refunds} refunds after the splits (split returns first)")
        async with svc.pool.acquire() as conn:
            await _summary(out, conn, settings, tally, inbox, database_url, log_path)
            ok = not tally.failures and not await invariants.check_invariants(conn)
    log_file.close()
    return 0 if ok else 1


async def _franchise_cap_at_channel(session, emulator_url: str, catalog) -> None:
    """WeChat grants a high split ratio to a franchise sub-merchant on application; the
    emulator takes it from its sandbox."""
    for store in catalog:
        if store.franchise:
            async with session.post(emulator_url + "/sandbox/merchant-configs",
                                    json={"sub_mchid": store.sub_mchid, "max_ratio": FRANCHISE_RATIO_BPS}) as resp:
                assert resp.status == 200, await resp.text()


async def _settle(svc, out, what: str, *, until_unfrozen: bool = False) -> None:
    """Wait until no split or refund is in flight, or no order is still frozen: as long as
    the count keeps falling (bounded by SETTLE_STALL_S without progress, SETTLE_WAIT_S_MAX
    in all)."""
    out.write(f"  waiting for {what} ...")
    out.flush()
    started = progressed = time.monotonic()
    fewest = None
    while True:
        async with svc.pool.acquire() as conn:
            busy = await conn.fetchval(UNSETTLED_UNFROZEN if until_unfrozen else UNSETTLED)
        now = time.monotonic()
        if not busy:
            out.write(f" done ({now - started:.1f} s)\n")
            return
        if fewest is None or busy < fewest:
            fewest, progressed = busy, now
        if now - progressed >= SETTLE_STALL_S or now - started >= SETTLE_WAIT_S_MAX:
            out.write(f" still {busy} after {now - started:.0f} s\n")
            return
        await asyncio.sleep(0.5)


UNSETTLED = """
SELECT (SELECT count(*) FROM split_orders WHERE state IN ('PREPARED', 'PROCESSING'))
     + (SELECT count(*) FROM refunds WHERE state IN ('PREPARED', 'PROCESSING'))
     + (SELECT count(*) FROM jobs WHERE kind = 'guide_reward' AND state = 'pending')
"""
REFUNDED = "SELECT count(*) AS n, coalesce(sum(amount_fen), 0)::bigint AS fen FROM refunds WHERE state = 'SUCCESS'"
UNSETTLED_UNFROZEN = "SELECT count(*) FROM order_funds WHERE NOT unfrozen AND frozen_fen > 0"


async def _demo_database(settings: Settings, out) -> str:
    """A fresh demo database on the embedded server (reset on purpose every run), or the
    operator's DATABASE_URL used as it is (never dropped)."""
    if settings.database_url:
        out.write("Using DATABASE_URL as it is (nothing is reset).\n")
        return settings.database_url
    server = EmbeddedPostgres(settings.data_dir)
    out.write(f"Embedded PostgreSQL in {server.root} ...\n")
    server_dsn = await asyncio.to_thread(server.start)
    conn = await connect(server_dsn)
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {quote_ident(DEMO_DATABASE)} WITH (FORCE)")
        await conn.execute(f"CREATE DATABASE {quote_ident(DEMO_DATABASE)}")
    finally:
        await conn.close()
    out.write(f"Database '{DEMO_DATABASE}' reset for this run (the server and its data directory are reused).\n")
    return with_database(server_dsn, DEMO_DATABASE)


def _emulator_app(settings: Settings, gateway_url: str, clock) -> web.Application:
    _, credentials = ensure_local_credentials(settings.data_dir, settings.sp_mchid)
    return create_emulator_app(EmulatorConfig(
        credentials, notify_delay_ms=20, split_after_payment_s=DEMO_SPLIT_AFTER_PAYMENT_S,
        split_finish_delay_ms=200, refund_finish_delay_ms=200,
        profitsharing_notify_url=gateway_url + "/channel/wechatpay/notify"), clock=clock)


async def _start(stack: AsyncExitStack, app: web.Application, port: int | None = None) -> str:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    stack.push_async_callback(runner.cleanup)
    port = port or _free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return f"http://127.0.0.1:{port}"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def _trade(backend, emulator_url, catalog, settings, notify_url, shoppers, seconds, tally, out) -> None:
    started = time.monotonic()
    deadline = started + seconds
    tasks = [asyncio.create_task(shop(shopper=i, backend=backend, emulator_url=emulator_url, stores=catalog,
                                      settings=settings, notify_url=notify_url, deadline=deadline,
                                      tally=tally, rng=random.Random(i)))
             for i in range(shoppers)]
    while not all(task.done() for task in tasks):
        elapsed = min(time.monotonic() - started, seconds)
        filled = int(BAR_WIDTH * elapsed / seconds) if seconds else BAR_WIDTH
        out.write(f"\r[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {elapsed:5.1f}/{seconds:.0f} s  "
                  f"orders {tally.created:6d}  paid {tally.paid:6d}  closed {tally.closed:4d}  "
                  f"failures {len(tally.failures)}")
        out.flush()
        await asyncio.sleep(0.25)
    await asyncio.gather(*tasks)
    out.write("\n")


async def _drain(inbox: NotificationInbox, tally: Tally) -> None:
    """Give the outbox a moment to deliver what the last payments queued."""
    waited_from = time.monotonic()
    while len(inbox.paid) < tally.paid and time.monotonic() - waited_from < DRAIN_WAIT_S_MAX:
        await asyncio.sleep(0.1)


GROUPS = (
    ("shoppers paid, net of refunds", lambda a: a == "payer", -1),
    ("WeChat Pay fees", lambda a: a == "channel:fees", 1),
    ("mall commission", lambda a: a == "mall:commission", 1),
    ("shopping guides' rewards paid out", lambda a: a.endswith(":rewards"), 1),
    ("guides owe their stores (refunded rewards)", lambda a: a.endswith(":clawback"), -1),
    ("brand headquarters", lambda a: a.startswith("receiver:"), 1),
    ("stores: still frozen", lambda a: a.endswith(":frozen"), 1),
    ("stores: available to settle", lambda a: a.endswith(":available"), 1),
    ("stores: owed by their guides", lambda a: a.endswith(":owed_by_guides"), 1),
)


def _where_it_went(rows) -> list[tuple[str, int]]:
    cny = [(account, balance) for account, currency, balance in rows if currency == "CNY"]
    return [(label, sign * sum(b for a, b in cny if match(a))) for label, match, sign in GROUPS]


def _yuan(fen: int) -> str:
    sign = "-" if fen < 0 else ""
    return f"{sign}{abs(fen) // 100:,}.{abs(fen) % 100:02d}"


async def _summary(out, conn, settings, tally: Tally, inbox, database_url, log_path) -> None:
    rows = await ledger_repo.trial_balance(conn, settings.sp_mchid)
    problems = await invariants.check_invariants(conn)
    counts = await outbox_repo.counts(conn, settings.sp_mchid)
    total = sum(balance for _, currency, balance in rows if currency == "CNY")
    out.write("\n== Summary ==\n")
    out.write(f"orders created     {tally.created}\n")
    out.write(f"orders paid        {tally.paid}   ({_yuan(tally.paid_fen)} yuan)\n")
    out.write(f"orders closed      {tally.closed}  (shoppers who walked away)\n")
    out.write(f"failures           {len(tally.failures)}\n")
    for failure in tally.failures[:5]:
        out.write(f"  - {failure}\n")
    out.write(f"franchise splits   {tally.franchise_splits} to the brand headquarters (approved 60% cap)\n")
    refunded = await conn.fetchrow(REFUNDED)
    out.write(f"refunds            {refunded['n']} succeeded ({_yuan(refunded['fen'])} yuan) of {tally.refunds} "
              "asked; the mall's and the brand's shares came back first, guides' shares are owed\n")
    out.write(f"notifications      {counts.get('delivered', 0)} delivered, {counts.get('pending', 0)} pending, "
              f"{counts.get('dead', 0)} dead; the mall backend verified and decrypted: "
              + ", ".join(f"{n} {event}" for event, n in sorted(inbox.events.items())) + "\n")
    out.write("\nWhere the money went (yuan):\n")
    for label, value in _where_it_went(rows):
        out.write(f"  {label:<46} {_yuan(value):>16}\n")
    out.write(f"  {'ledger sum over all accounts':<46} {_yuan(total):>16}  -> "
              f"{'balanced' if total == 0 else 'NOT BALANCED'}\n")
    out.write(f"ledger invariants  {'all hold' if not problems else problems}\n")
    out.write("\nWhere to look next:\n")
    out.write(f"  gateway log (JSON lines)  {log_path}\n")
    out.write(f"  the demo database         {database_url.split('?')[0]}\n")
    out.write("  run it for real           mallpay emulator & mallpay serve, then "
              "mallpay client create --role mall_app --out ./client\n")
    out.write("  the API                   GET /openapi.json on a running gateway; README.md\n")
