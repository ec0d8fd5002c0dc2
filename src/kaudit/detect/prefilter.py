"""Prefilters: the cheap column tests every event a rule can match must pass.

A rule's condition is arbitrary SQL, but most conditions start with tests on a few
cheap columns (``resource = 'pods' AND subresource = 'exec' AND ...``) before the
expensive ones (JSON paths, regular expressions). :func:`prefilter_of` reads the
condition with DuckDB's own parser (``json_serialize_sql``) and keeps the top-level
conjuncts it understands:

* ``col = const``, ``col IN (consts)``, ``col <> const``, ``NOT col IN (consts)``,
  ``col IS NULL``, ``col IS NOT NULL`` on the plain columns of the flat schema;
* ``succeeded()`` (a 1xx-3xx ``code``) and ``NOT is_system_user()``;
* an ``OR`` whose branches all restrict the same column to values (their union);
* the rule's stages and the exact values (and ``prefix*`` globs) of its allowlist.

Every atom is *sound*: an event it rejects cannot satisfy the condition (an atom on
a null value keeps the event unless SQL's three-valued logic rejects it too). The
streaming engine evaluates the atoms on Arrow columns (:meth:`Prefilter.mask`) and
hands DuckDB only the candidate rows; the retro-hunt puts them (:meth:`Prefilter.sql`)
innermost, where they reach the Parquet scan.
"""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from kaudit.detect.rule import Rule

#: The identities ``is_system_user()`` covers (also the SQL macro's definition).
SYSTEM_USERS: Final = (
    "system:apiserver",
    "system:kube-controller-manager",
    "system:kube-scheduler",
    "system:kube-proxy",
    "kube-apiserver",
    "kube-apiserver-kubelet-client",
)
SYSTEM_USER_PREFIXES: Final = (
    "system:node:",
    "system:serviceaccount:kube-system:",
    "eks:",
    "system:addon-manager",
)
SYSTEM_GROUP: Final = "system:nodes"

_STR_COLUMNS: Final = frozenset(
    {
        "stage",
        "level",
        "verb",
        "username",
        "impersonated_user",
        "source_ip",
        "user_agent",
        "api_group",
        "api_version",
        "resource",
        "subresource",
        "namespace",
        "name",
        "status_reason",
        "decision",
        "authz_reason",
        "cluster",
    }
)
_INT_COLUMNS: Final = frozenset({"code"})

Value = str | int


@dataclass(frozen=True, order=True)
class Atom:
    """One test: ``op`` is in, in_or_null (null counts as ``''``), not_in, null, not_null,
    prefix_not, succeeded or not_system."""

    op: str
    column: str = ""
    values: tuple[Value, ...] = ()

    def sql(self) -> str:
        c = self.column
        if self.op == "in":
            return f"{c} IN ({', '.join(_lit(v) for v in self.values)})"
        if self.op == "in_or_null":
            return f"coalesce({c}, '') IN ({', '.join(_lit(v) for v in self.values)})"
        if self.op == "not_in":
            return f"coalesce({c} NOT IN ({', '.join(_lit(v) for v in self.values)}), true)"
        if self.op == "null":
            return f"{c} IS NULL"
        if self.op == "not_null":
            return f"{c} IS NOT NULL"
        if self.op == "prefix_not":
            return f"NOT coalesce(starts_with({c}, {_lit(self.values[0])}), false)"
        if self.op == "succeeded":
            return "(code >= 100 AND code < 400)"
        if self.op == "not_system":
            return "NOT coalesce(_k_is_system_user(username, groups), false)"
        raise AssertionError(self.op)  # pragma: no cover

    def mask(self, table: pa.Table) -> pa.Array:
        """The atom over ``table`` as a boolean array without nulls."""
        op = self.op
        if op == "not_system":
            return pc.invert(system_user_mask(table))
        if op == "succeeded":
            code = table.column("code")
            m = pc.and_(pc.greater_equal(code, 100), pc.less(code, 400))
            return pc.fill_null(m, False)
        col = table.column(self.column)
        if op == "in_or_null":
            col = pc.fill_null(col, "")
            op = "in"
        if op == "null":
            return pc.is_null(col)
        if op == "not_null":
            return pc.is_valid(col)
        if op == "prefix_not":
            return pc.fill_null(pc.invert(pc.starts_with(col, str(self.values[0]))), True)
        vs = pa.array(list(self.values), col.type)
        hit = pc.is_in(col, value_set=vs)
        if op == "in":
            return pc.fill_null(hit, False)
        return pc.fill_null(pc.invert(hit), True)  # not_in


def _lit(v: Value) -> str:
    if isinstance(v, int):
        return str(v)
    return "'" + v.replace("'", "''") + "'"


def system_user_mask(table: pa.Table) -> pa.Array:
    """``is_system_user()`` on Arrow columns (nulls as false)."""
    user = table.column("username")
    m = pc.is_in(user, value_set=pa.array(SYSTEM_USERS, pa.string()))
    for p in SYSTEM_USER_PREFIXES:
        m = pc.or_(m, pc.starts_with(user, p))
    groups = table.column("groups")
    flat = pc.list_flatten(groups)
    if len(flat):
        hit = pc.is_in(flat, value_set=pa.array([SYSTEM_GROUP], pa.string()))
        parents = pc.list_parent_indices(groups)
        rows = pc.filter(parents, pc.fill_null(hit, False))
        in_group = pc.is_in(
            pa.array(range(table.num_rows), pa.int64()), value_set=pc.unique(rows).cast(pa.int64())
        )
        m = pc.or_(m, in_group)
    return pc.fill_null(m, False)


@dataclass(frozen=True)
class Prefilter:
    """Atoms that must all hold (none: every event is a candidate)."""

    atoms: tuple[Atom, ...] = ()

    def sql(self) -> str:
        return " AND ".join(a.sql() for a in self.atoms) or "true"

    def mask(self, table: pa.Table, cache: dict[Atom, pa.Array]) -> pa.Array | None:
        """Candidates of ``table`` (None: all rows); ``cache`` shares atoms across rules."""
        out: pa.Array | None = None
        for a in self.atoms:
            m = cache.get(a)
            if m is None:
                m = cache[a] = a.mask(table)
            out = m if out is None else pc.and_(out, m)
        return out


# --- deriving a rule's prefilter ----------------------------------------------------


_PARSER_LOCK = threading.Lock()


@functools.lru_cache(maxsize=1)
def _parser() -> duckdb.DuckDBPyConnection:
    return duckdb.connect()


@functools.lru_cache(maxsize=4096)
def _parse_where(sql: str) -> dict[str, Any] | None:
    with _PARSER_LOCK:
        con = _parser()
        text = con.execute("SELECT json_serialize_sql(?)", [f"SELECT 1 FROM t WHERE {sql}"])
        row = text.fetchone()
    if row is None:
        return None
    doc = json.loads(row[0])
    if doc.get("error"):
        return None
    try:
        where = doc["statements"][0]["node"]["where_clause"]
    except (KeyError, IndexError, TypeError):
        return None
    return where if isinstance(where, dict) else None


def _column_name(node: Any) -> str | None:
    if isinstance(node, dict) and node.get("class") == "COLUMN_REF":
        names = node.get("column_names") or []
        if len(names) == 1 and isinstance(names[0], str):
            return names[0]
    return None


def _column(node: Any) -> str | None:
    name = _column_name(node)
    return name if name in _STR_COLUMNS or name in _INT_COLUMNS else None


def _const(node: Any, column: str) -> Value | None:
    if not isinstance(node, dict) or node.get("class") != "CONSTANT":
        return None
    lit = node.get("literal") or {}
    kind, text = lit.get("kind"), lit.get("text")
    if column in _STR_COLUMNS and kind == "STRING" and isinstance(text, str):
        return text
    if column in _INT_COLUMNS and kind == "INTEGER" and isinstance(text, str):
        return int(text)
    return None


def _values_in(node: Any) -> tuple[str, tuple[Value, ...]] | None:
    """``col = c`` or ``col IN (c, ...)`` as (col, values)."""
    if not isinstance(node, dict):
        return None
    t = node.get("type")
    if t == "COMPARE_EQUAL":
        left, right = node.get("left"), node.get("right")
        col = _column(left)
        if col is None:
            col, right = _column(right), left
        if col is None:
            return None
        v = _const(right, col)
        return (col, (v,)) if v is not None else None
    if t == "COMPARE_IN":
        kids = node.get("children") or []
        col = _column(kids[0]) if kids else None
        if col is None or len(kids) < 2:
            return None
        vals = [_const(k, col) for k in kids[1:]]
        if any(v is None for v in vals):
            return None
        return col, tuple(v for v in vals if v is not None)
    if t == "CONJUNCTION_OR":
        parts = [_values_in(k) for k in node.get("children") or []]
        if not parts or any(p is None for p in parts):
            return None
        cols = {p[0] for p in parts if p is not None}
        if len(cols) != 1:
            return None
        merged: dict[Value, None] = {}
        for p in parts:
            assert p is not None
            merged.update(dict.fromkeys(p[1]))
        return cols.pop(), tuple(merged)
    return None


def _function(node: Any) -> str | None:
    if isinstance(node, dict) and node.get("class") == "FUNCTION":
        name = node.get("function_name")
        return str(name) if isinstance(name, str) else None
    return None


def _atoms(node: Any) -> list[Atom]:
    if not isinstance(node, dict):
        return []
    t = node.get("type")
    if t == "CONJUNCTION_AND":
        return [a for k in node.get("children") or [] for a in _atoms(k)]
    vin = _values_in(node)
    if vin is not None:
        return [Atom("in", vin[0], vin[1])]
    if t in ("OPERATOR_IS_NULL", "OPERATOR_IS_NOT_NULL"):
        kids = node.get("children") or []
        col = _column(kids[0]) if len(kids) == 1 else None
        if col is not None:
            return [Atom("null" if t == "OPERATOR_IS_NULL" else "not_null", col)]
        return []
    if t == "COMPARE_NOTEQUAL":
        col, other = _column(node.get("left")), node.get("right")
        if col is None:
            col, other = _column(other), node.get("left")
        v = _const(other, col) if col is not None else None
        if col is not None and v is not None:
            # NULL <> x is not true: the value must be present and different.
            return [Atom("not_null", col), Atom("not_in", col, (v,))]
        return []
    if t == "OPERATOR_NOT":
        kids = node.get("children") or []
        if len(kids) == 1:
            if _function(kids[0]) == "_k_is_system_user" and _args_are(
                kids[0], ("username", "groups")
            ):
                return [Atom("not_system")]
            if _function(kids[0]) == "starts_with":
                args = kids[0].get("arguments") or []
                if len(args) == 2:
                    col = _column(args[0].get("expression"))
                    v = _const(args[1].get("expression"), col) if col else None
                    if col in _STR_COLUMNS and isinstance(v, str):
                        return [Atom("prefix_not", col, (v,))]
            inner = _values_in(kids[0])
            if inner is not None:
                return [Atom("not_null", inner[0]), Atom("not_in", inner[0], inner[1])]
        return []
    if _function(node) == "_k_succeeded" and _args_are(node, ("code",)):
        return [Atom("succeeded")]
    return []


def _args_are(node: dict[str, Any], names: Sequence[str]) -> bool:
    args = node.get("arguments") or []
    got = [_column_name(a.get("expression")) if isinstance(a, dict) else None for a in args]
    return got == list(names)


def condition_atoms(sql: str) -> list[Atom]:
    """The sound atoms of a condition (already expanded to macros)."""
    where = _parse_where(sql)
    return _atoms(where) if where is not None else []


def prefilter_of(rule: Rule) -> Prefilter:
    """The prefilter of ``rule`` (stages, condition conjuncts, exact allowlist values)."""
    from kaudit.detect.sql import expand

    atoms: list[Atom] = []
    stages: list[Value] = list(rule.stages)
    if "ResponseComplete" in stages:
        stages.append("")  # an event without a stage counts as ResponseComplete
        atoms.append(Atom("in_or_null", "stage", tuple(stages)))
    else:
        atoms.append(Atom("in", "stage", tuple(stages)))
    atoms += condition_atoms(expand(rule.condition))
    if rule.kind == "sequence":
        steps = [condition_atoms(expand(s)) for s in rule.sequence_steps]
        # Step 1 OR step 2: only a column both restrict to values narrows the union.
        ins = [{a.column: a.values for a in st if a.op == "in"} for st in steps]
        for col in sorted(set(ins[0]) & set(ins[1])):
            atoms.append(Atom("in", col, tuple(dict.fromkeys((*ins[0][col], *ins[1][col])))))
    for col, values in sorted(rule.allowlist.items()):
        if col not in _STR_COLUMNS:
            continue
        exact = tuple(v for v in values if "*" not in v)
        if exact:
            atoms.append(Atom("not_in", col, exact))
        for g in values:
            if g.count("*") == 1 and g.endswith("*") and len(g) > 1:
                atoms.append(Atom("prefix_not", col, (g[:-1],)))
    return Prefilter(tuple(sorted(set(atoms))))


__all__ = ["Atom", "Prefilter", "condition_atoms", "prefilter_of", "system_user_mask"]
