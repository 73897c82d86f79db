"""`mallpay serve`: one gateway process, or N of them sharing one port.

Several processes bind the same address with SO_REUSEPORT (aiohttp's `reuse_port`), and
the kernel spreads incoming connections over them, so the gateway uses every core. They
share nothing but PostgreSQL: the background workers in each process claim due rows with
FOR UPDATE SKIP LOCKED and a lease (outbox, jobs, unpaid orders) and nonce clean-up is an
idempotent delete, so N processes are as safe as one. The parent makes the keys the
children would otherwise race to create, starts them, and stops them all when any of
them ends or when it is told to stop. A worker whose parent is gone however it went (a
SIGKILL, the OOM killer) stops itself, so no orphan keeps serving the port.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
from multiprocessing.connection import wait

from gateway.settings import Settings

STOP_WAIT_S = 15.0


def serve(settings: Settings, database_url: str, workers: int) -> int:
    assert workers >= 1, workers
    _make_keys_once(settings)
    if workers == 1:
        run_worker(settings, database_url, reuse_port=False)
        return 0
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no inherited loop or pool
    children = [context.Process(target=_worker_process, args=(settings, database_url),
                                name=f"mallpay-serve-{index}") for index in range(workers)]
    for child in children:
        child.start()

    def stop(_signum, _frame):
        for child in children:
            if child.is_alive():
                child.terminate()  # SIGTERM: aiohttp shuts the worker down gracefully

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        wait([child.sentinel for child in children])  # until the first one ends
        stop(None, None)
        for child in children:
            child.join(STOP_WAIT_S)
            if child.is_alive():
                child.kill()
                child.join()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    failed = [child.exitcode for child in children if child.exitcode not in (0, -signal.SIGTERM)]
    return 1 if failed else 0


def run_worker(settings: Settings, database_url: str, reuse_port: bool) -> None:
    from aiohttp import web

    from gateway.app import create_app
    from gateway.cli import _use_uvloop
    from gateway.logging import configure_logging

    configure_logging(settings.log_level, cache_loggers=True)  # configured once for the process's life
    _use_uvloop()
    if reuse_port:
        _stop_when_parent_ends()
    web.run_app(create_app(settings, database_url=database_url), host=settings.host, port=settings.port,
                reuse_port=reuse_port or None, access_log=None,
                print=lambda text: print(text, file=sys.stderr))


def _worker_process(settings: Settings, database_url: str) -> None:
    """A spawned worker: what `mallpay` itself says in one line (gateway.cli.main), it says
    the same way."""
    from gateway.cli import told_operator

    try:
        run_worker(settings, database_url, reuse_port=True)
    except Exception as exc:
        if not told_operator(exc):
            raise
        sys.exit(1)


def _stop_when_parent_ends() -> None:
    """In a spawned worker: SIGTERM ourselves (aiohttp's graceful shutdown) once the
    parent process has ended, whether or not it could stop us itself."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        wait([parent.sentinel])
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="mallpay-parent-watch", daemon=True).start()


def _make_keys_once(settings: Settings) -> None:
    """Create the local keys before any worker starts, so all of them load the same ones."""
    from gateway.channel.credentials import ensure_local_credentials
    from gateway.identity import load_or_create_identity

    load_or_create_identity(settings.gateway_private_key_file, settings.data_dir)
    if settings.channel_is_emulator:
        ensure_local_credentials(settings.data_dir, settings.sp_mchid)
