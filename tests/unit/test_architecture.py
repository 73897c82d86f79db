"""The shape of the code. The pure cores (ledger/, splitting/, coupons/, points/) import no I/O and make nothing up: no clock, no
random numbers, no ids, no aiohttp or asyncpg (STYLE habit 2). Storage adapters
(`repo.py`) are the exception by design."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CORE_PACKAGES = ("ledger", "splitting", "coupons", "points")
FORBIDDEN_MODULES = {"aiohttp", "asyncpg", "random", "secrets", "uuid", "time", "os", "socket", "gateway"}
FORBIDDEN_CALLS = {"now", "utcnow", "today"}


def core_modules() -> list[Path]:
    files = []
    for package in CORE_PACKAGES:
        files += [p for p in (ROOT / package).rglob("*.py") if p.name != "repo.py"]
    return files


@pytest.mark.parametrize("path", core_modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_core_module_is_pure(path: Path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name.split(".")[0] for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [(node.module or "").split(".")[0]]
        else:
            names = []
        assert not set(names) & FORBIDDEN_MODULES, f"{path.name} imports {names}"
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            assert node.func.attr not in FORBIDDEN_CALLS, f"{path.name} reads the clock"


def test_the_check_sees_core_modules():
    assert any(p.name == "transfers.py" for p in core_modules())


# -- the layers (STYLE: layout) ------------------------------------------------------------
# Where the code does not hold the shape yet, the module is listed with the reason; a listed
# module that comes to hold it fails the test, so the lists only shrink.

INFRASTRUCTURE = {"aiohttp", "asyncpg", "gateway", "emulator"}
API_IMPORTING_REPO: set[str] = set()  # handlers call one service function; they read no repo
# Services raise gateway.domain_errors, never the request's own refusals (gateway.errors).
SERVICES_RAISING_HTTP_ERRORS: set[str] = set()
SQL_OUTSIDE_REPO = {"gateway/demo/run.py"}  # the demo's summary counts rows
SQL_START = re.compile(r"^\s*(?:--[^\n]*\n\s*)*(SELECT|INSERT INTO|UPDATE|DELETE FROM|WITH)\s")
REPO_MODULES = re.compile(r"^(gateway\.repo(\.|$)|(ledger|splitting|coupons|points)\.repo$)")


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def _python(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def test_core_storage_adapters_import_no_gateway():
    for package in CORE_PACKAGES:
        for path in (ROOT / package).rglob("repo.py"):
            roots = {name.split(".")[0] for name in _imports(path)}
            assert not roots & INFRASTRUCTURE, f"{_rel(path)} imports {roots & INFRASTRUCTURE}"


def test_api_imports_no_repo():
    importing = {_rel(p) for p in _python("gateway/api") if any(REPO_MODULES.match(n) for n in _imports(p))}
    assert importing - API_IMPORTING_REPO == set(), "new handlers reading repos directly"
    assert API_IMPORTING_REPO - importing == set(), "no longer importing a repo: remove from the list"


def test_services_raise_no_http_errors():
    raising = {_rel(p) for p in _python("gateway/services")
               if {"gateway.errors", "gateway.errors.ApiError"} & _imports(p)
               or any(n.startswith("gateway.errors.") for n in _imports(p))}
    assert raising - SERVICES_RAISING_HTTP_ERRORS == set(), "new services raising HTTP errors"
    assert SERVICES_RAISING_HTTP_ERRORS - raising == set(), "no longer raising HTTP errors: remove from the list"


def _sql_strings(path: Path) -> list[str]:
    return [node.value for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and SQL_START.match(node.value)]


def test_sql_only_in_repo_modules_and_migrations():
    with_sql = set()
    for folder in ("gateway", "ledger", "splitting", "coupons", "emulator"):
        for path in _python(folder):
            rel = _rel(path)
            if path.name == "repo.py" or "/repo/" in rel or rel.startswith("gateway/db/"):
                continue
            if _sql_strings(path):
                with_sql.add(rel)
    assert with_sql - SQL_OUTSIDE_REPO == set(), "SQL outside repo modules"
    assert SQL_OUTSIDE_REPO - with_sql == set(), "no more SQL there: remove from the list"


# -- the channel's vocabulary stays in the channel (gateway/channel) ---------------------
# WeChat's error codes mean something only to the channel client and its transformers,
# which raise a kind of ChannelError that says it (ChannelNotFound, SplitNotReady...).

def _wechat_codes() -> set[str]:
    """Every error code the emulator answers with, as WeChat Pay does, plus the codes the
    channel's transformers read that the emulator never sends."""
    codes = set()
    for path in _python("emulator"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "EmulatorError" and len(node.args) > 1
                    and isinstance(node.args[1], ast.Constant)):
                codes.add(node.args[1].value)
    return codes | {"ORDERNOTEXIST", "ORDER_NOT_READY", "SYSTEMERROR", "BANKERROR"}


def _domain_modules() -> list[Path]:
    return _python("gateway/services") + [p for package in CORE_PACKAGES for p in _python(package)]


def test_the_wechat_codes_are_found():
    assert {"ORDER_NOT_EXIST", "NOT_ENOUGH", "STATEMENT_CREATING", "RESOURCE_NOT_EXISTS"} <= _wechat_codes()


def test_services_and_cores_do_not_speak_wechat_codes():
    codes = _wechat_codes()
    speaking = set()
    for path in _domain_modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and node.value in codes:
                speaking.add(f"{_rel(path)}:{node.lineno} {node.value}")
            if isinstance(node, ast.Compare) and any(
                    isinstance(side, ast.Attribute) and side.attr == "code" for side in [node.left, *node.comparators]):
                speaking.add(f"{_rel(path)}:{node.lineno} compares a .code")
    assert speaking == set(), "match a kind of ChannelError (gateway.channel) instead of WeChat's code"


def _attributes(path: Path, names: set[str]) -> list[int]:
    return [node.lineno for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.Attribute) and node.attr in names]


def test_handlers_open_no_database_connections():
    """The edge parses and shapes; a connection (and so a transaction) is a service's."""
    opening = {f"{_rel(p)}:{line}" for p in _python("gateway/api") for line in _attributes(p, {"acquire", "transaction"})}
    assert opening == set(), "handlers opening connections"


# Handlers that still hand the pool to a service rather than Services (the command line
# builds Services on its pool too: gateway.app.database_services).
API_PASSING_THE_POOL: set[str] = set()
POOL_USERS_AT_THE_EDGE = {"gateway/api/middleware.py"}  # authentication reads client keys before any handler


def test_handlers_touch_no_pool():
    touching = {_rel(p) for p in _python("gateway/api") if _attributes(p, {"pool"})} - POOL_USERS_AT_THE_EDGE
    assert touching - API_PASSING_THE_POOL == set(), "new handlers touching the database pool"
    assert API_PASSING_THE_POOL - touching == set(), "no longer touching the pool: remove from the list"
