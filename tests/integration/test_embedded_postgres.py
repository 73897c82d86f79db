"""The embedded server: one per data root, reused while it runs, recovered after a crash.

Tests that kill and restart servers use their own data root, never the shared test server
of conftest.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import asyncpg
import pytest

from gateway.db import EMBEDDED_DATABASE, resolve_database_url
from gateway.db.embedded import (
    FALLBACK_ROOT_BASE,
    SERVER_ACCOUNT,
    EmbeddedPostgres,
    _lookup,
    _postgres_pids_in,
    _traversable,
    wheel_install_dir,
)
from gateway.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[2]
TEST_DATA_ROOT = REPO_ROOT / ".mallpay" / "test-pg"  # the shared server of conftest.py
IS_ROOT = os.geteuid() == 0


@pytest.fixture(scope="module")
def pg_root() -> Path:
    root = Path(tempfile.mkdtemp(prefix="mallpay-pgtest-"))
    root.chmod(0o711)  # our own folder; mkdtemp makes it 0700, which the server account cannot enter
    yield root
    server = EmbeddedPostgres(root)
    server.stop()
    shutil.rmtree(server.root, ignore_errors=True)
    shutil.rmtree(root, ignore_errors=True)


def query(dsn: str, sql: str, *, script: bool = False):
    async def run():
        conn = await asyncpg.connect(dsn)
        try:
            return await (conn.execute(sql) if script else conn.fetchval(sql))
        finally:
            await conn.close()

    return asyncio.run(run())


def postmaster_pid(server: EmbeddedPostgres) -> int:
    return int((server.data_dir / "postmaster.pid").read_text().splitlines()[0])


def wait_until_gone(pid: int, data_dir: Path) -> None:
    deadline = time.monotonic() + 5
    while pid in _postgres_pids_in(data_dir):
        assert time.monotonic() < deadline, f"pid {pid} outlived SIGKILL"
        time.sleep(0.01)


def tree_modes(path: Path) -> dict[str, tuple[int, int, int]]:
    found = {}
    for folder, dirs, files in os.walk(path):
        for name in [*dirs, *files, "."]:
            info = os.lstat(os.path.join(folder, name))
            found[os.path.join(folder, name)] = (info.st_mode, info.st_uid, info.st_gid)
    return found


START_AND_REPORT = """
import asyncio, json, sys, asyncpg
from pathlib import Path
from gateway.db.embedded import EmbeddedPostgres
server = EmbeddedPostgres(Path(sys.argv[1]))
dsn = server.start()
async def started_at():
    conn = await asyncpg.connect(dsn)
    try:
        return str(await conn.fetchval("SELECT pg_postmaster_start_time()"))
    finally:
        await conn.close()
print(json.dumps({"started_here": server.started_here, "started_at": asyncio.run(started_at())}))
if "--stop" in sys.argv:
    server.stop()
"""


def spawn_starter(root: Path, *extra_args: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "HOME": str(root)}
    return subprocess.Popen(
        [sys.executable, "-c", START_AND_REPORT, str(root), *extra_args],
        stdout=subprocess.PIPE, env=env, cwd="/", **kwargs,
    )


def test_two_processes_starting_at_once_share_one_server(pg_root: Path):
    wheel_modes_before = tree_modes(wheel_install_dir().parent)
    starters = [spawn_starter(pg_root) for _ in range(2)]
    reports = [json.loads(starter.communicate(timeout=60)[0]) for starter in starters]

    assert all(starter.returncode == 0 for starter in starters)
    assert sorted(report["started_here"] for report in reports) == [False, True]
    assert reports[0]["started_at"] == reports[1]["started_at"]
    assert tree_modes(wheel_install_dir().parent) == wheel_modes_before


def test_second_manager_reuses_the_running_server(pg_root: Path):
    first = EmbeddedPostgres(pg_root)
    first_dsn = first.start()
    second = EmbeddedPostgres(pg_root)
    second_dsn = second.start()

    assert second.started_here is False
    assert second_dsn == first_dsn
    assert postmaster_pid(first) == postmaster_pid(second)
    assert query(second_dsn, "SELECT 1") == 1


def test_server_is_private_durable_and_tuned(pg_root: Path):
    server = EmbeddedPostgres(pg_root)
    dsn = server.start()

    assert query(dsn, "SHOW listen_addresses") == ""
    assert query(dsn, "SHOW fsync") == "on"
    assert query(dsn, "SHOW synchronous_commit") == "on"
    assert query(dsn, "SHOW max_connections") == "200"
    socket_dir = Path(query(dsn, "SHOW unix_socket_directories"))
    info = socket_dir.stat()
    assert info.st_mode & 0o777 == 0o700
    if IS_ROOT:
        assert info.st_uid == _lookup(SERVER_ACCOUNT).uid
        assert query(dsn, "SELECT current_setting('data_directory')") == str(pg_root / "pg" / "data")
    assert (server.bin_dir / "pgbench").exists()


def test_killed_postmaster_is_replaced_and_committed_data_survives(pg_root: Path):
    server = EmbeddedPostgres(pg_root)
    dsn = server.start()
    query(dsn, "CREATE TABLE IF NOT EXISTS survivors (n int); INSERT INTO survivors VALUES (1)", script=True)
    killed = postmaster_pid(server)

    os.kill(killed, signal.SIGKILL)
    wait_until_gone(killed, server.data_dir)  # SIGKILL lands asynchronously
    restarted = EmbeddedPostgres(pg_root)
    dsn = restarted.start()

    assert restarted.started_here is True
    assert postmaster_pid(restarted) != killed
    assert query(dsn, "SELECT count(*) FROM survivors") >= 1


def test_pid_file_of_a_dead_process_is_recovered(pg_root: Path):
    server = EmbeddedPostgres(pg_root)
    server.start()
    lines = (server.data_dir / "postmaster.pid").read_text().splitlines()
    server.stop()
    finished = subprocess.Popen(["true"])
    finished.wait()  # reaped: its pid names no process now
    (server.data_dir / "postmaster.pid").write_text("\n".join([str(finished.pid), *lines[1:]]) + "\n")

    dsn = server.start()

    assert server.started_here is True
    assert postmaster_pid(server) != finished.pid
    assert query(dsn, "SELECT 1") == 1


def test_pid_file_naming_an_unrelated_live_process_is_recovered(pg_root: Path):
    server = EmbeddedPostgres(pg_root)
    server.start()
    lines = (server.data_dir / "postmaster.pid").read_text().splitlines()
    server.stop()
    with subprocess.Popen(["sleep", "30"]) as impostor:
        try:
            (server.data_dir / "postmaster.pid").write_text("\n".join([str(impostor.pid), *lines[1:]]) + "\n")
            dsn = server.start()
            assert server.started_here is True
            assert postmaster_pid(server) != impostor.pid
            assert query(dsn, "SELECT 1") == 1
        finally:
            impostor.kill()


def test_stop_leaves_no_server_processes(pg_root: Path):
    server = EmbeddedPostgres(pg_root)
    server.start()
    server.stop()

    deadline = time.monotonic() + 5
    while _postgres_pids_in(server.data_dir) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _postgres_pids_in(server.data_dir) == set()
    assert not (server.data_dir / "postmaster.pid").exists()


def test_long_data_root_puts_the_socket_in_a_short_private_folder():
    long_root = Path("/srv") / ("deep-folder-name/" * 6)
    short_root = Path("/srv/mallpay")

    assert str(EmbeddedPostgres._socket_dir_for(long_root)).startswith("/tmp/mallpay-")
    assert EmbeddedPostgres._socket_dir_for(short_root) == short_root / "pg" / "run"


@pytest.mark.skipif(not IS_ROOT, reason="the fallback root exists for root only")
def test_root_the_server_account_cannot_enter_falls_back_to_var_lib(tmp_path: Path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o700)
    locked.chmod(0o700)
    server = EmbeddedPostgres(locked / "data")
    try:
        assert not _traversable(locked / "data", _lookup(SERVER_ACCOUNT))
        assert server.root.parent == FALLBACK_ROOT_BASE
        assert server.root != locked / "data"
    finally:
        shutil.rmtree(server.root, ignore_errors=True)
        if not any(FALLBACK_ROOT_BASE.iterdir()):
            FALLBACK_ROOT_BASE.rmdir()


def _nobody_can_run_python() -> bool:
    nobody = _lookup("nobody")
    needed = [REPO_ROOT, Path(sys.prefix), Path(sys.executable).resolve(), wheel_install_dir()]
    return nobody is not None and all(_traversable(path, nobody) for path in needed)


@pytest.mark.skipif(not IS_ROOT, reason="needs root to act as a normal user")
@pytest.mark.skipif(IS_ROOT and not _nobody_can_run_python(), reason="repo or venv not readable by nobody")
def test_normal_user_runs_the_wheel_binaries_directly():
    nobody = _lookup("nobody")
    root = Path(tempfile.mkdtemp(prefix="mallpay-pgtest-user-"))
    os.chown(root, nobody.uid, nobody.gid)  # our own folder, handed to the user under test
    try:
        starter = spawn_starter(root, "--stop", user=nobody.uid, group=nobody.gid, extra_groups=[])
        report = json.loads(starter.communicate(timeout=60)[0])

        assert starter.returncode == 0
        assert report["started_here"] is True
        assert not list((root / "pg").glob("install-*"))  # ran from the wheel, no copy
        assert (root / "pg" / "data").stat().st_uid == nobody.uid
    finally:
        shutil.rmtree(root, ignore_errors=True)



@pytest.mark.skipif(bool(os.environ.get("DATABASE_URL")), reason="the shared test server is not embedded")
async def test_resolve_without_database_url_reuses_the_embedded_server(pg_server: str):
    settings = Settings(database_url=None, data_dir=TEST_DATA_ROOT)

    # From inside a running event loop, as the app factory would call it.
    dsn, server = resolve_database_url(settings)
    try:
        assert server is not None and server.started_here is False  # pg_server started it
        conn = await asyncpg.connect(dsn)
        try:
            assert await conn.fetchval("SELECT current_database()") == EMBEDDED_DATABASE
        finally:
            await conn.close()
    finally:
        conn = await asyncpg.connect(pg_server)
        try:
            await conn.execute(f"DROP DATABASE IF EXISTS {EMBEDDED_DATABASE} WITH (FORCE)")
        finally:
            await conn.close()


def test_resolve_with_database_url_uses_it_as_given():
    settings = Settings(database_url="postgresql://ops@db.internal/mallpay")

    assert resolve_database_url(settings) == ("postgresql://ops@db.internal/mallpay", None)
