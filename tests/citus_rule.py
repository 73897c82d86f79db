"""Which rows a SQL statement can touch, read from its parse tree (pglast, PostgreSQL's own
parser): the checker behind tests/integration/test_citus_rule.py.

On Citus a statement runs on one shard (one mall) when every distributed table in it is
filtered by its distribution column, directly (`o.mall_id = $1`) or through a chain of
equalities with other tables' distribution columns (`USING (mall_id)`,
`e.mall_id = a.mall_id`, an INSERT's `mall_id` value). `unpinned` names the tables a
statement leaves unfiltered; `uncolocated` the ones joined to others of the same query
level without equating their distribution columns (which Citus would have to repartition).
"""

from __future__ import annotations

import importlib
import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path

import pglast
from pglast import ast, enums

SQL_START = re.compile(r"^\s*(?:--[^\n]*\n\s*)*(SELECT|INSERT|UPDATE|DELETE|WITH)\b", re.IGNORECASE)
PIN = -1  # the component of parameters and constants


@dataclass
class Rel:
    rel_id: int
    table: str | None      # None: a subquery or CTE standing for its own mall_id column
    name: str              # alias, or the table's name


@dataclass
class Scope:
    parent: "Scope | None"
    rels: list[Rel] = field(default_factory=list)
    ctes: dict[str, "Scope"] = field(default_factory=dict)
    outputs: list[Rel] = field(default_factory=list)   # what `x.mall_id` of this scope means


class Analysis:
    """One statement's tables and the mall_id equalities among them."""

    def __init__(self, distribution: dict[str, str]):
        self.distribution = distribution   # table -> its distribution column (mall_id or other)
        self._parents: dict[int, int] = {PIN: PIN}
        self._ids = itertools.count()
        self.scopes: list[Scope] = []

    # union-find over relations, PIN included
    def _find(self, x: int) -> int:
        while self._parents[x] != x:
            self._parents[x] = self._parents[self._parents[x]]
            x = self._parents[x]
        return x

    def _union(self, a: int, b: int) -> None:
        self._parents[self._find(a)] = self._find(b)

    def _rel(self, scope: Scope, table: str | None, name: str) -> Rel:
        rel = Rel(next(self._ids), table, name)
        self._parents[rel.rel_id] = rel.rel_id
        scope.rels.append(rel)
        return rel

    # -- statements -------------------------------------------------------------------
    def statement(self, node, parent: Scope | None) -> Scope:
        scope = Scope(parent)
        self.scopes.append(scope)
        if getattr(node, "withClause", None) is not None:
            for cte in node.withClause.ctes:
                scope.ctes[cte.ctename] = self.statement(cte.ctequery, scope)
        if isinstance(node, ast.SelectStmt):
            self._select(node, scope)
        elif isinstance(node, ast.UpdateStmt):
            self._range(node.relation, scope)
            for item in node.fromClause or ():
                self._range(item, scope)
            self._quals(node.whereClause, scope)
            self._sublinks(node.targetList, scope)
            self._sublinks(node.returningClause, scope)
        elif isinstance(node, ast.DeleteStmt):
            self._range(node.relation, scope)
            for item in node.usingClause or ():
                self._range(item, scope)
            self._quals(node.whereClause, scope)
        elif isinstance(node, ast.InsertStmt):
            self._insert(node, scope)
        else:
            raise ValueError(f"not a query: {type(node).__name__}")
        return scope

    def _select(self, node: ast.SelectStmt, scope: Scope) -> None:
        if node.larg is not None:   # UNION / INTERSECT / EXCEPT: each side on its own
            for side in (node.larg, node.rarg):
                scope.outputs.extend(self.statement(side, scope).outputs)
            return
        for row in node.valuesLists or ():
            self._sublinks(row, scope)
        for item in node.fromClause or ():
            self._range(item, scope)
        self._quals(node.whereClause, scope)
        self._sublinks(node.targetList, scope)
        self._sublinks(node.havingClause, scope)
        for target in node.targetList or ():
            if _names_mall_id(target):
                scope.outputs.extend(self._resolve(target.val, scope))

    def _insert(self, node: ast.InsertStmt, scope: Scope) -> None:
        target = self._range(node.relation, scope)[0]
        column = self.distribution.get(target.table)
        names = [c.name for c in node.cols or ()]
        source = node.selectStmt
        if column is None or source is None:
            return
        assert names, f"INSERT INTO {target.table} names no columns"
        if column not in names:
            return  # left unpinned: reported
        position = names.index(column)
        if source.valuesLists:
            self._sublinks(source.valuesLists, scope)
            if all(_is_value(row[position]) for row in source.valuesLists):
                self._union(target.rel_id, PIN)
            return
        inner = self.statement(source, scope)
        value = source.targetList[position].val if source.targetList else None
        if _is_value(value) or _rows_from_parameters(source):
            self._union(target.rel_id, PIN)
        else:
            for rel in self._resolve(value, inner):
                self._union(target.rel_id, rel.rel_id)

    def _range(self, item, scope: Scope) -> list[Rel]:
        """Add a FROM item to `scope`; the relations it brings."""
        if isinstance(item, ast.RangeVar):
            name = item.alias.aliasname if item.alias else item.relname
            cte = _cte(scope, item.relname)
            if cte is not None:
                rel = self._rel(scope, None, name)
                for output in cte.outputs:
                    self._union(rel.rel_id, output.rel_id)
                return [rel]
            return [self._rel(scope, item.relname, name)]
        if isinstance(item, ast.JoinExpr):
            left = self._range(item.larg, scope)
            right = self._range(item.rarg, scope)
            if item.usingClause and any(s.sval == "mall_id" for s in item.usingClause):
                for a, b in itertools.product(left, right):
                    if self._carries_mall_id(a) and self._carries_mall_id(b):
                        self._union(a.rel_id, b.rel_id)
            self._quals(item.quals, scope)
            return left + right
        if isinstance(item, ast.RangeSubselect):
            inner = self.statement(item.subquery, scope)
            rel = self._rel(scope, None, item.alias.aliasname if item.alias else "")
            for output in inner.outputs:
                self._union(rel.rel_id, output.rel_id)
            return [rel]
        if isinstance(item, ast.RangeFunction):   # unnest($1, $2) and the like: no table
            self._sublinks(item.functions, scope)
            return []
        raise ValueError(f"FROM item not understood: {type(item).__name__}")

    def _carries_mall_id(self, rel: Rel) -> bool:
        return rel.table is None or self.distribution.get(rel.table) == "mall_id"

    # -- expressions ------------------------------------------------------------------
    def _quals(self, expr, scope: Scope) -> None:
        """Equalities of AND-ed conditions pin; anything under OR or NOT does not."""
        self._sublinks(expr, scope)
        for conjunct in _conjuncts(expr):
            if not (isinstance(conjunct, ast.A_Expr) and conjunct.kind == enums.A_Expr_Kind.AEXPR_OP
                    and [n.sval for n in conjunct.name] == ["="]):
                continue
            sides = [conjunct.lexpr, conjunct.rexpr]
            if any(_is_value(side) for side in sides):
                other = sides[1] if _is_value(sides[0]) else sides[0]
                for rel in self._resolve(other, scope):
                    self._union(rel.rel_id, PIN)
            else:
                left, right = (self._resolve(side, scope) for side in sides)
                for a, b in itertools.product(left, right):
                    self._union(a.rel_id, b.rel_id)

    def _sublinks(self, expr, scope: Scope) -> None:
        """Walk subqueries inside an expression as scopes of their own (correlated to `scope`)."""
        for node in _walk(expr):
            if isinstance(node, ast.SubLink):
                self.statement(node.subselect, scope)
                self._sublinks(node.testexpr, scope)

    def _resolve(self, expr, scope: Scope) -> list[Rel]:
        """The relations whose distribution column `expr` is (none when it is not one)."""
        while isinstance(expr, ast.TypeCast):
            expr = expr.arg
        if not isinstance(expr, ast.ColumnRef) or not all(isinstance(f, ast.String) for f in expr.fields):
            return []
        names = [f.sval for f in expr.fields]
        column = names[-1]
        at: Scope | None = scope
        while at is not None:
            if len(names) == 1:
                found = [r for r in at.rels if self._column_of(r) == column]
            else:
                found = [r for r in at.rels if r.name == names[-2] and self._column_of(r) == column]
            if found:
                return found
            at = at.parent
        return []

    def _column_of(self, rel: Rel) -> str | None:
        return "mall_id" if rel.table is None else self.distribution.get(rel.table)

    # -- verdicts ---------------------------------------------------------------------
    def unpinned(self) -> list[str]:
        return sorted({r.table for s in self.scopes for r in s.rels
                       if r.table in self.distribution and self._find(r.rel_id) != self._find(PIN)})

    def uncolocated(self) -> list[str]:
        bad = set()
        for scope in self.scopes:
            mall_scoped = [r for r in scope.rels if self.distribution.get(r.table) == "mall_id"]
            roots = {self._find(r.rel_id) for r in mall_scoped}
            if len(roots) > 1:
                bad.update(r.table for r in mall_scoped)
        return sorted(bad)


def analyse(sql: str, distribution: dict[str, str]) -> Analysis:
    statements = pglast.parse_sql(sql)
    assert len(statements) == 1, f"one statement per constant: {sql[:60]!r}"
    analysis = Analysis(distribution)
    analysis.statement(statements[0].stmt, None)
    return analysis


def _cte(scope: Scope | None, name: str) -> Scope | None:
    while scope is not None:
        if name in scope.ctes:
            return scope.ctes[name]
        scope = scope.parent
    return None


def _rows_from_parameters(select) -> bool:
    """`SELECT ... FROM unnest($1, $2)`: rows the caller sends, each routed by its own value."""
    items = select.fromClause or ()
    return bool(items) and all(
        isinstance(item, ast.RangeFunction)
        and all(_is_value(arg) for node in _walk(item.functions) if isinstance(node, ast.FuncCall)
                for arg in node.args or ())
        for item in items)


def _names_mall_id(target: ast.ResTarget) -> bool:
    if target.name is not None:
        return target.name == "mall_id"
    value = target.val
    return (isinstance(value, ast.ColumnRef) and isinstance(value.fields[-1], ast.String)
            and value.fields[-1].sval == "mall_id")


def _is_value(expr) -> bool:
    while isinstance(expr, ast.TypeCast):
        expr = expr.arg
    return isinstance(expr, (ast.ParamRef, ast.A_Const))


def _conjuncts(expr):
    if isinstance(expr, ast.BoolExpr) and expr.boolop == enums.BoolExprType.AND_EXPR:
        for arg in expr.args:
            yield from _conjuncts(arg)
    elif expr is not None:
        yield expr


def _walk(node):
    """Every node below `node`, not descending into subqueries' own statements."""
    if node is None:
        return
    if isinstance(node, (list, tuple)):
        for item in node:
            yield from _walk(item)
        return
    if not isinstance(node, ast.Node):
        return
    yield node
    if isinstance(node, ast.SubLink):
        return   # its subselect is a scope of its own
    for name in node.__slots__:
        value = getattr(node, name, None)
        if isinstance(value, (ast.Node, list, tuple)):
            yield from _walk(value)


# -- where the queries are --------------------------------------------------------------

def repo_modules(root: Path) -> list[str]:
    """Every repo module of the project: `*/repo.py` and `*/repo/*.py` of its packages."""
    names = []
    for path in sorted(root.glob("*/repo.py")) + sorted(root.glob("*/repo/*.py")):
        relative = path.relative_to(root)
        if relative.parts[0] in ("tests", "loadtests") or relative.parts[0].startswith("."):
            continue
        if path.name == "__init__.py":
            continue
        names.append(".".join(relative.with_suffix("").parts))
    return names


def sql_constants(module_name: str) -> dict[str, str]:
    """Module-level SQL constants (strings, or strings inside dicts/tuples), by dotted name."""
    module = importlib.import_module(module_name)
    found: dict[str, str] = {}
    for name, value in vars(module).items():
        if not name.isupper():
            continue
        for suffix, text in _strings(value):
            if SQL_START.match(text):
                found[f"{module_name}.{name}{suffix}"] = text
    return found


def _strings(value, suffix: str = ""):
    if isinstance(value, str):
        yield suffix, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, f"{suffix}[{key}]")
    elif isinstance(value, (tuple, list)):
        for index, item in enumerate(value):
            yield from _strings(item, f"{suffix}[{index}]")
