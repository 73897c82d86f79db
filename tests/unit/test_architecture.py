"""The pure cores (ledger/, splitting/, coupons/, points/) import no I/O and make nothing up: no clock, no
random numbers, no ids, no aiohttp or asyncpg (STYLE habit 2). Storage adapters
(`repo.py`) are the exception by design."""

from __future__ import annotations

import ast
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
