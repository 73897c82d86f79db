"""`mallpay demo`, the README's main job: a short run on the test's database ends with the
books balanced and every invariant holding; Ctrl-C ends it with the shell's status for
an interrupt and one line, not a traceback."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys

from gateway.demo.run import only_demo_here
from tests.conftest import REPO_ROOT

RUN_WAIT_S = 240.0
SHOPPING_WAIT_S = 120.0
STOP_WAIT_S = 30.0


def _demo(database_url: str, data_dir, *args: str) -> subprocess.Popen:
    env = {**os.environ, "DATABASE_URL": database_url, "MALLPAY_DATA_DIR": str(data_dir)}
    return subprocess.Popen([sys.executable, "-m", "gateway.cli", "demo", *args], cwd=REPO_ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


async def test_a_short_demo_balances_the_books(database_url, tmp_path):
    process = _demo(database_url, tmp_path, "--seconds", "2", "--shoppers", "2", "--stores", "6")
    out, err = await asyncio.to_thread(process.communicate, timeout=RUN_WAIT_S)
    assert process.returncode == 0, err[-3000:]
    assert "ledger sum over all accounts" in out and "-> balanced" in out, out[-3000:]
    assert "ledger invariants  all hold" in out, out[-3000:]
    assert "failures           0" in out, out[-3000:]


async def test_ctrl_c_ends_the_demo_without_a_traceback(database_url, tmp_path):
    process = _demo(database_url, tmp_path, "--seconds", "600", "--shoppers", "2", "--stores", "6")
    try:
        def shopping() -> None:
            for line in process.stdout:
                if "shoppers shop for" in line:
                    return
            raise AssertionError("the demo ended before its shoppers started")

        await asyncio.wait_for(asyncio.to_thread(shopping), SHOPPING_WAIT_S)
        process.send_signal(signal.SIGINT)
        _, err = await asyncio.to_thread(process.communicate, timeout=STOP_WAIT_S)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130, err[-3000:]
    assert "mallpay: interrupted" in err
    assert "Traceback" not in err, err[-3000:]


async def test_a_second_demo_on_the_same_data_dir_refuses_to_start(tmp_path):
    # The first one resets the embedded server's demo database; a second would drop it.
    env = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
    env["MALLPAY_DATA_DIR"] = str(tmp_path)
    with only_demo_here(tmp_path):  # as a running demo holds it
        done = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "gateway.cli", "demo"],
                                       cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=RUN_WAIT_S)
    assert done.returncode == 1, done.stderr
    assert done.stderr.startswith(f"mallpay: another demo is running on {tmp_path}"), done.stderr
    assert not (tmp_path / "pg").exists()  # refused before starting any server
    with only_demo_here(tmp_path):  # released: the next demo may start
        pass
