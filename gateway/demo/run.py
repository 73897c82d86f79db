"""Start everything on this machine, let shoppers trade, print where the money went."""

from __future__ import annotations

import asyncio
import random
import socket
import sys
import time
from contextlib import AsyncExitStack

import aiohttp
from aiohttp import web

from gateway.app import create_app
from gateway.channel.credentials import ensure_local_credentials
from gateway.channel.emulator import create_emulator_app
from gateway.channel.emulator.config import EmulatorConfig
from gateway.db import create_pool, quote_ident, with_database
from gateway.db.embedded import EmbeddedPostgres
from gateway.db.migrate import migrate
from gateway.demo.backend import MallBackend, NotificationInbox
from gateway.demo.seed import backend_credentials, demo_stores, seed_mall
from gateway.demo.shoppers import Tally, shop
from gateway.identity import load_or_create_identity
from gateway.logging import configure_logging
from gateway.repo import outbox as outbox_repo
from gateway.settings import Settings
from ledger import repo as ledger_repo

DEMO_DATABASE = "mallpay_demo"
DRAIN_WAIT_S_MAX = 15.0
BAR_WIDTH = 30


async def run_demo(settings: Settings, *, shoppers: int, seconds: float, stores: int) -> int:
    out = sys.stdout
    log_path = settings.data_dir / "demo.log"
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    log_file = open(log_path, "a", encoding="utf-8")
    configure_logging(settings.log_level, stream=log_file)
    database_url = await _demo_database(settings, out)
    await migrate(database_url)
    catalog = demo_stores(stores)
    async with AsyncExitStack() as stack:
        session = await stack.enter_async_context(aiohttp.ClientSession())
        emulator_url = await _start(stack, _emulator_app(settings))
        gateway_port = _free_port()
        settings = settings.with_(channel_url=emulator_url, public_url=f"http://127.0.0.1:{gateway_port}",
                                  outbox_poll_interval_ms=50, reconcile_interval_s=2.0)
        identity = load_or_create_identity(settings.gateway_private_key_file, settings.data_dir)
        await _start(stack, create_app(settings, database_url=database_url, identity=identity), gateway_port)
        pool = await create_pool(database_url, min_size=1, max_size=4, statement_timeout_ms=10_000)
        stack.push_async_callback(pool.close)
        await seed_mall(pool, settings, catalog)
        creds = await backend_credentials(pool, settings, identity, "mall_app", "demo mini-program")
        inbox = NotificationInbox(creds)
        notify_url = await _start(stack, inbox.app()) + "/notify"
        out.write(f"Mall '{settings.mall_name}' ({settings.sp_mchid}): {len(catalog)} stores on "
                  f"{len({s.floor for s in catalog})} floors; gateway {settings.public_url}, "
                  f"WeChat Pay emulator {emulator_url}\n")
        out.write(f"{shoppers} shoppers shop for {seconds:.0f} s ...\n")
        tally = Tally()
        backend = MallBackend(settings.public_url, creds, session)
        await _trade(backend, emulator_url, catalog, settings, notify_url, shoppers, seconds, tally, out)
        await _drain(inbox, tally)
        async with pool.acquire() as conn:
            await _summary(out, conn, settings, tally, inbox, database_url, log_path)
            ok = not tally.failures and not await ledger_repo.check_invariants(conn)
    log_file.close()
    return 0 if ok else 1


async def _demo_database(settings: Settings, out) -> str:
    """A fresh demo database on the embedded server (reset on purpose every run), or the
    operator's DATABASE_URL used as it is (never dropped)."""
    if settings.database_url:
        out.write("Using DATABASE_URL as it is (nothing is reset).\n")
        return settings.database_url
    server = EmbeddedPostgres(settings.data_dir)
    out.write(f"Embedded PostgreSQL in {server.root} ...\n")
    server_dsn = await asyncio.to_thread(server.start)
    import asyncpg
    conn = await asyncpg.connect(server_dsn)
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {quote_ident(DEMO_DATABASE)} WITH (FORCE)")
        await conn.execute(f"CREATE DATABASE {quote_ident(DEMO_DATABASE)}")
    finally:
        await conn.close()
    out.write(f"Database '{DEMO_DATABASE}' reset for this run (the server and its data directory are reused).\n")
    return with_database(server_dsn, DEMO_DATABASE)


def _emulator_app(settings: Settings) -> web.Application:
    _, credentials = ensure_local_credentials(settings.data_dir, settings.sp_mchid)
    return create_emulator_app(EmulatorConfig(credentials, notify_delay_ms=20))


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


def _yuan(fen: int) -> str:
    sign = "-" if fen < 0 else ""
    return f"{sign}{abs(fen) // 100:,}.{abs(fen) % 100:02d}"


async def _summary(out, conn, settings, tally: Tally, inbox, database_url, log_path) -> None:
    rows = await ledger_repo.trial_balance(conn, settings.sp_mchid)
    problems = await ledger_repo.check_invariants(conn)
    counts = await outbox_repo.counts(conn, settings.sp_mchid)
    total = sum(balance for _, currency, balance in rows if currency == "CNY")
    out.write("\n== Summary ==\n")
    out.write(f"orders created     {tally.created}\n")
    out.write(f"orders paid        {tally.paid}   ({_yuan(tally.paid_fen)} yuan)\n")
    out.write(f"orders closed      {tally.closed}  (shoppers who walked away)\n")
    out.write(f"failures           {len(tally.failures)}\n")
    for failure in tally.failures[:5]:
        out.write(f"  - {failure}\n")
    out.write(f"notifications      {counts.get('delivered', 0)} delivered, {counts.get('pending', 0)} pending, "
              f"{counts.get('dead', 0)} dead; the mall backend verified and decrypted {len(inbox.paid)} payments\n")
    out.write("\nTrial balance (yuan):\n")
    for account, currency, balance in rows:
        if balance:
            out.write(f"  {account:<32} {_yuan(balance):>16} {currency}\n")
    out.write(f"  {'sum':<32} {_yuan(total):>16} CNY  -> {'balanced' if total == 0 else 'NOT BALANCED'}\n")
    out.write(f"ledger invariants  {'all hold' if not problems else problems}\n")
    out.write("\nWhere to look next:\n")
    out.write(f"  gateway log (JSON lines)  {log_path}\n")
    out.write(f"  the demo database         {database_url.split('?')[0]}\n")
    out.write("  run it for real           mallpay emulator & mallpay serve, then "
              "mallpay client create --role mall_app --out ./client\n")
    out.write("  the API                   GET /openapi.json on a running gateway; README.md\n")
