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


# -- the edge parses, services decide (gateway/api/requests) -------------------------------
# A request body reaches a service only as the command its parser made of it. Handlers are
# checked by data flow: no argument of a call into gateway.services is the JSON body (or a
# name bound to it). Services are checked by name: the names a raw body goes by.

RAW_BODY_NAMES = {"body", "fields", "changes"}
SERVICES_NAMING_A_PARSED_BODY: set[str] = set()


def _service_modules_imported(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "gateway.services":
            names |= {alias.asname or alias.name for alias in node.names}
    return names


def _reads_the_body(node: ast.AST, raw_names: set[str]) -> bool:
    """The expression is the request's JSON body or a value read from it unchecked:
    `await json_body(request)`, a name bound to it, either passed through `body_object`
    (which checks only that it is an object), or `body.get(...)` / `body[...]` of it."""
    if isinstance(node, ast.Await):
        node = node.value
    if isinstance(node, ast.Name):
        return node.id in raw_names
    if isinstance(node, ast.Subscript):
        return _reads_the_body(node.value, raw_names)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get":
        return _reads_the_body(node.func.value, raw_names)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        if node.func.id == "json_body":
            return True
        if node.func.id == "body_object" and node.args:
            return _reads_the_body(node.args[0], raw_names)
    return False


def _raw_bodies_handed_to_services(source: str) -> set[str]:
    """`line module.function` of each call handing a service the raw body."""
    tree = ast.parse(source)
    services = _service_modules_imported(tree)
    handed = set()
    for function in ast.walk(tree):
        if not isinstance(function, ast.AsyncFunctionDef):
            continue
        raw_names: set[str] = set()
        for node in ast.walk(function):
            if isinstance(node, ast.Assign) and _reads_the_body(node.value, raw_names):
                raw_names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        for node in ast.walk(function):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and isinstance(node.func.value, ast.Name) and node.func.value.id in services):
                arguments = [*node.args, *(k.value for k in node.keywords)]
                if any(_reads_the_body(argument, raw_names) for argument in arguments):
                    handed.add(f"{node.lineno} {node.func.value.id}.{node.func.attr}")
    return handed


def test_handlers_hand_services_no_raw_bodies():
    handed = {f"{_rel(p)}:{call}" for p in _python("gateway/api") for call in _raw_bodies_handed_to_services(p.read_text())}
    assert handed == set(), "parse the body in gateway/api/requests and hand the service its command"


def test_the_raw_body_check_sees_a_raw_body():
    handler = ("from gateway.services import onboarding\n"
               "async def h(request):\n"
               "    body = body_object(await json_body(request))\n"
               "    await onboarding.set_points_rule(svc, 'm', 's', body)\n"
               "    await onboarding.create_tenant(svc, await json_body(request))\n"
               "    await onboarding.create_tenant(svc, parse_tenant('m', await json_body(request)))\n"
               "    await onboarding.create_client(svc, role=body.get('role'))\n")
    assert _raw_bodies_handed_to_services(handler) == {
        "4 onboarding.set_points_rule", "5 onboarding.create_tenant", "7 onboarding.create_client"}


def test_services_take_no_raw_bodies():
    naming = set()
    for path in _python("gateway/services"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                arguments = [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs]
                if any(a.arg in RAW_BODY_NAMES for a in arguments):
                    naming.add(_rel(path))
    assert naming - SERVICES_NAMING_A_PARSED_BODY == set(), "services taking a raw body: parse it at the edge"
    assert SERVICES_NAMING_A_PARSED_BODY - naming == set(), "no longer so named: remove from the list"


# A malformed request (a body, a query string, a path value) is refused at the edge with
# InvalidField before any service runs. A service function that still builds one is listed
# with why: the field is checked against stored data, or it has not moved yet (the list only
# shrinks). Functions are named `path:function` (the innermost function building it).
SERVICES_REFUSING_FIELDS = {
    "gateway/services/refunds.py:request_refund",    # amount.total against the order's total
    "gateway/services/coupon_campaigns.py:refused",  # a change against the campaign's terms and commitments
}


def _functions_refusing_fields(source: str) -> set[str]:
    """The functions of `source` that build an InvalidField."""
    refusing = set()

    class Visitor(ast.NodeVisitor):
        def __init__(self):
            self.functions: list[str] = []

        def visit_function(self, node):
            self.functions.append(node.name)
            self.generic_visit(node)
            self.functions.pop()

        visit_FunctionDef = visit_AsyncFunctionDef = visit_function

        def visit_Call(self, node):
            named = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", None)
            if named == "InvalidField":
                refusing.add(self.functions[-1] if self.functions else "<module>")
            self.generic_visit(node)

    Visitor().visit(ast.parse(source))
    return refusing


def test_services_refuse_no_malformed_fields():
    refusing = {f"{_rel(p)}:{name}" for p in _python("gateway/services")
                for name in _functions_refusing_fields(p.read_text())}
    assert refusing - SERVICES_REFUSING_FIELDS == set(), "parse the value in gateway/api/requests"
    assert SERVICES_REFUSING_FIELDS - refusing == set(), "no longer refusing a field: remove from the list"


def test_the_field_check_sees_a_service_reading_a_query_string():
    """The four checks that once sat in services (a job listing's state, a payout listing's
    store, a report's window, a member's openid) are each caught, as is the domain_errors
    module's spelling; a check against stored data in a listed function is not confused."""
    service = (
        "from gateway import domain_errors\n"
        "from gateway.domain_errors import InvalidField\n"
        "async def list_jobs(svc, mall_id, state, limit, offset):\n"
        "    if state not in STATES:\n"
        "        raise InvalidField('state', 'out_of_range', 'state is one of ...')\n"
        "async def subsidy_payouts(svc, caller, sub_mchid, limit, offset):\n"
        "    if sub_mchid is not None and not SUB_MCHID_RE.fullmatch(sub_mchid):\n"
        "        raise domain_errors.InvalidField('sub_mchid', 'bad_format')\n"
        "def window_days_of(raw, settings):\n"
        "    def checked(days):\n"
        "        if not 1 <= days <= 90:\n"
        "            raise InvalidField('window_days', 'out_of_range')\n"
        "        return days\n"
        "    return checked(int(raw))\n"
        "def openid_of(raw):\n"
        "    return raw if OPENID_RE.fullmatch(raw) else fail(InvalidField('openid', 'invalid_openid'))\n"
        "async def points(svc, mall_id, openid):\n"
        "    return await balance(svc, mall_id, openid)\n")
    assert _functions_refusing_fields(service) == {"list_jobs", "subsidy_payouts", "checked", "openid_of"}
