"""Evaluation: retro-hunts over stored history and the streaming engine.

:func:`hunt` runs each rule's SQL (:func:`kaudit.detect.sql.hunt_sql`) over the
``events`` view of a DuckDB connection. :class:`Engine` evaluates every rule over
each batch the store made durable, in one DuckDB query per batch, and keeps the
windows, distinct sets, first-seen terms and sequences in
:mod:`kaudit.detect.state`, persisted under ``<store>/detect/`` so they survive a
restart. For the same events, in order, both give the same alerts (same ids).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import duckdb
import msgspec
import pyarrow as pa
import pyarrow.compute as pc

from kaudit.detect.alert import Alert, AlertStore, alert_id, fmt_ts
from kaudit.detect.flat import SCHEMA, table_from_records
from kaudit.detect.prefilter import Atom, prefilter_of
from kaudit.detect.rule import Rule
from kaudit.detect.sql import (
    ENTITY_COLUMNS,
    expand,
    filter_sql,
    hunt_sql,
    install_macros,
    reads_pod_spec,
    rule_sql_texts,
    source_sql,
    suppress_of,
)
from kaudit.detect.state import (
    DistinctState,
    NewTermsState,
    SequenceState,
    StateMachine,
    Suppressor,
    ThresholdState,
    Trigger,
)
from kaudit.errors import QueryError, StoreError
from kaudit.model.documents import Record

STATE_DIR = "detect"
STATE_FILE = "state.json"
STATE_VERSION = 1
DEFAULT_MAX_KEYS = 100_000


def make_alert(rule: Rule, trig: Trigger, entity: dict[str, Any], sk: list[str | None]) -> Alert:
    """The alert of one admitted trigger; ``entity`` holds the trigger event's columns."""
    supp_secs, _ = suppress_of(rule)
    if supp_secs is not None:
        parts: list[object] = [sk, trig.ts_us // (supp_secs * 1_000_000)]
    else:
        parts = [entity["audit_id"], entity["stage"]]
    return Alert(
        id=alert_id(rule.id, parts),
        rule_id=rule.id,
        severity=rule.severity,
        title=rule.title,
        first_ts=fmt_ts(trig.first_ts_us),
        last_ts=fmt_ts(trig.ts_us),
        username=entity["username"],
        source_ip=entity["source_ip"],
        verb=entity["verb"],
        resource=entity["resource"],
        subresource=entity["subresource"],
        namespace=entity["namespace"],
        name=entity["name"],
        cluster=entity["cluster"] or None,
        key=list(trig.key),
        count=trig.count,
        audit_ids=list(trig.audit_ids),
        mitre=list(rule.mitre),
    )


# --- retro-hunt ---------------------------------------------------------------------


def hunt(
    con: duckdb.DuckDBPyConnection,
    rules: Sequence[Rule],
    *,
    since_us: int | None = None,
    until_us: int | None = None,
    table: str = "events",
) -> list[Alert]:
    """Run ``rules`` over ``table`` on ``con`` (which must define it); alerts in time order."""
    install_macros(con)
    out: list[Alert] = []
    for rule in rules:
        if not rule.enabled:
            continue
        sql = hunt_sql(rule, table=table, since_us=since_us, until_us=until_us)
        try:
            rows = con.sql(sql).to_arrow_table().to_pylist()
        except duckdb.Error as exc:
            raise QueryError(f"rule {rule.id} ({rule.source}): {exc}") from None
        supp_secs, supp_key = suppress_of(rule)
        for r in rows:
            trig = Trigger(r["ts_us"], r["first_ts_us"], r["audit_ids"], r["key"], r["count"])
            sk = _sk_of(rule, r)
            out.append(make_alert(rule, trig, r, sk))
    out.sort(key=lambda a: (a.last_ts, a.rule_id, a.id))
    return out


def _sk_of(rule: Rule, row: dict[str, Any]) -> list[str | None]:
    sk = row.get("sk")
    return list(sk) if sk is not None else []


# --- streaming ----------------------------------------------------------------------


class _Compiled:
    def __init__(self, index: int, rule: Rule, max_keys: int) -> None:
        self.i = index
        self.rule = rule
        supp_secs, self.supp_key = suppress_of(rule)
        self.suppressor = Suppressor(
            supp_secs * 1_000_000 if supp_secs is not None else None, max_keys
        )
        self.machine: StateMachine | None = None
        kind = rule.kind
        if kind == "threshold":
            self.machine = ThresholdState(
                rule.threshold or 1, (rule.window_secs or 0) * 1_000_000, max_keys
            )
        elif kind == "distinct":
            self.machine = DistinctState(
                rule.threshold or 1, (rule.window_secs or 0) * 1_000_000, max_keys
            )
        elif kind == "new_terms":
            self.machine = NewTermsState((rule.lookback_secs or 0) * 1_000_000, max_keys)
        elif kind == "sequence":
            self.machine = SequenceState((rule.sequence_within_secs or 0) * 1_000_000, max_keys)

    def conditions(self) -> list[tuple[str, str]]:
        """(column, SQL boolean) of this rule in the batch query: ``m{i}``, or the two
        steps ``a{i}``/``b{i}`` of a sequence (``m{i}`` is then their OR)."""
        r, i = self.rule, self.i
        f = filter_sql(r)
        if r.kind == "sequence":
            a, b = (f"coalesce(({expand(s)}), false)" for s in r.sequence_steps)
            return [(f"a{i}", f"({f}) AND {a}"), (f"b{i}", f"({f}) AND {b}")]
        if r.kind == "distinct":
            return [(f"m{i}", f"({f}) AND (({expand(r.distinct or '')}) IS NOT NULL)")]
        return [(f"m{i}", f)]

    def value_exprs(self) -> list[str]:
        """The SQL expressions whose text values key this rule's state and alerts."""
        r = self.rule
        keys = r.sequence_by if r.kind == "sequence" else r.group_by
        out = [*keys, *self.supp_key]
        if r.kind == "distinct":
            out.append(r.distinct or "")
        if r.kind == "new_terms":
            out += r.new_terms
        return out


#: Columns whose text value is the value itself (``CAST(col AS VARCHAR)`` is ``col``).
_TEXT_COLUMNS: Final = frozenset(
    f.name for f in SCHEMA if f.type == pa.string() and f.name not in ("event",)
)


class _Group:
    """Rules evaluated by one query per batch, over the rows their prefilters keep."""

    def __init__(self, compiled: list[_Compiled]) -> None:
        self.c = compiled
        self.prefilters = [prefilter_of(c.rule) for c in compiled]
        self.pod_spec = any(reads_pod_spec(c.rule) for c in compiled)
        self.sql, self.exprs = _group_sql(compiled, self.pod_spec)
        self.match = [n for c in compiled for n, _ in c.conditions()]
        words = set(_WORD.findall(self.sql))
        self.columns = [n for n in SCHEMA.names if n in words or n in _ALWAYS]

    def candidates(self, table: pa.Table, cache: dict[Atom, pa.Array]) -> pa.Array | None:
        """The rows any rule of the group may match (None: every row)."""
        out: pa.Array | None = None
        for p in self.prefilters:
            m = p.mask(table, cache)
            if m is None:
                return None
            out = m if out is None else pc.or_(out, m)
        return out


_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ALWAYS = frozenset({"ts", *ENTITY_COLUMNS})


def _group_key(rule: Rule) -> tuple[Atom, ...]:
    """Rules restricted to the same resources and subresources share a query."""
    return tuple(
        a
        for a in prefilter_of(rule).atoms
        if a.op == "in" and a.column in ("resource", "subresource")
    )


def _value_column(expr: str, exprs: dict[str, str]) -> str:
    """The result column holding ``expr`` as text (a plain text column is read as is)."""
    e = expr.strip()
    if e in _TEXT_COLUMNS:
        return e
    if e not in exprs:
        exprs[e] = f"_e{len(exprs)}"
    return exprs[e]


def _group_sql(compiled: Sequence[_Compiled], pod_spec: bool) -> tuple[str, dict[str, str]]:
    """One flat SELECT (no layers: binding cost grows fast with nesting in DuckDB):
    the entity columns, each rule's match columns, and the non-column key values."""
    cols = ["epoch_us(ts) AS _t", *ENTITY_COLUMNS]
    exprs: dict[str, str] = {}
    for c in compiled:
        cols += [f"{sql} AS {name}" for name, sql in c.conditions()]
        for e in c.value_exprs():
            _value_column(e, exprs)
    cols += [f"CAST(({expand(e)}) AS VARCHAR) AS {name}" for e, name in exprs.items()]
    for e in {e for c in compiled for e in c.value_exprs()}:
        if e.strip() in _TEXT_COLUMNS and e.strip() not in ENTITY_COLUMNS:
            cols.append(e.strip())
    src = source_sql("batch") if pod_spec else "batch"
    return f"SELECT {', '.join(cols)} FROM {src} ORDER BY _t, audit_id, stage", exprs


class Engine:
    """Streaming evaluation of ``rules``; call :meth:`process` on each durable batch.

    Each batch is first narrowed per rule by its :mod:`prefilter <kaudit.detect.prefilter>`
    on Arrow columns; rules with no candidate row cost nothing, and the others run
    in one DuckDB query per group of rules on the same resources, over their
    candidate rows only, on one connection kept for the engine's life.

    With ``state_dir`` the state is loaded from and saved to ``state_dir/state.json``
    (0600) after a batch (at most every ``save_interval_secs``, and on :meth:`close`);
    with ``alert_store`` new alerts are also stored there.
    """

    def __init__(
        self,
        rules: Sequence[Rule],
        *,
        state_dir: str | os.PathLike[str] | None = None,
        alert_store: AlertStore | None = None,
        max_keys_per_rule: int = DEFAULT_MAX_KEYS,
        save_interval_secs: float = 0.0,
    ) -> None:
        self.rules = [r for r in rules if r.enabled]
        self.alert_store = alert_store
        self.state_path = Path(state_dir) / STATE_FILE if state_dir is not None else None
        self.save_interval_secs = save_interval_secs
        self._c = [_Compiled(i, r, max_keys_per_rule) for i, r in enumerate(self.rules)]
        by_key: dict[tuple[Atom, ...], list[_Compiled]] = {}
        for c in self._c:
            by_key.setdefault(_group_key(c.rule), []).append(c)
        self._groups = [_Group(cs) for cs in by_key.values()]
        self._con = duckdb.connect(config={"threads": 1})
        install_macros(self._con)
        self.events_seen = 0
        self.alerts_raised = 0
        self.watermark_us: int | None = None
        self._saved_at = 0.0
        if self.state_path is not None and self.state_path.exists():
            self._load()

    @classmethod
    def for_store(
        cls,
        store_path: str | os.PathLike[str],
        rules: Sequence[Rule],
        *,
        save_interval_secs: float = 0.0,
    ) -> Engine:
        """An engine whose state lives in ``<store>/detect/`` and alerts in ``<store>/alerts/``."""
        return cls(
            rules,
            state_dir=Path(store_path) / STATE_DIR,
            alert_store=AlertStore(store_path),
            save_interval_secs=save_interval_secs,
        )

    def process(self, batch: pa.Table | Sequence[Record]) -> list[Alert]:
        """Evaluate one batch (a flat-schema table or records); returns the new alerts."""
        table = batch if isinstance(batch, pa.Table) else table_from_records(batch)
        if table.num_rows == 0:
            return []
        missing = [n for n in SCHEMA.names if n not in table.column_names]
        if missing:
            raise QueryError(f"batch: missing flat-schema columns: {', '.join(missing)}")
        cache: dict[Atom, pa.Array] = {}
        found: list[tuple[int, str, str, str, Alert]] = []
        for g in self._groups:
            mask = g.candidates(table, cache)
            sub = table.select(g.columns)
            if mask is not None:
                if not pc.any(mask).as_py():
                    continue
                sub = sub.filter(mask)
            self._con.register("batch", sub)
            try:
                res = self._con.sql(g.sql).to_arrow_table()
            except duckdb.Error as exc:
                raise QueryError(f"detection batch query failed: {exc}") from None
            finally:
                self._con.unregister("batch")
            if res.num_rows:
                hit = res.column(g.match[0])
                for n in g.match[1:]:
                    hit = pc.or_(hit, res.column(n))
                res = res.filter(pc.fill_null(hit, False))
            if res.num_rows:
                found += self._apply(g, res)
        found.sort(key=lambda x: x[:4])
        alerts = [x[4] for x in found]
        self.events_seen += table.num_rows
        ts_max = pc.max(table.column("ts")).value
        if ts_max is not None:
            self.watermark_us = max(self.watermark_us or ts_max, ts_max)
            self._expire(self.watermark_us)
        if self.alert_store is not None and alerts:
            self.alert_store.add(alerts)
        self.alerts_raised += len(alerts)
        if self.state_path is not None:
            now = time.monotonic()
            if now - self._saved_at >= self.save_interval_secs:
                self.save()
                self._saved_at = now
        return alerts

    def _apply(self, g: _Group, res: pa.Table) -> list[tuple[int, str, str, str, Alert]]:
        base_cols = {n: res.column(n).to_pylist() for n in ["_t", *ENTITY_COLUMNS]}
        values: dict[str, list[Any]] = {}

        def column(name: str) -> list[Any]:
            v = values.get(name)
            if v is None:
                v = values[name] = res.column(name).to_pylist()
            return v

        def texts(exprs: Sequence[str]) -> list[list[Any]]:
            return [column(_value_column(e, g.exprs)) for e in exprs]

        out: list[tuple[int, str, str, str, Alert]] = []
        for c in g.c:
            i = c.i
            kind = c.rule.kind
            if kind == "sequence":
                isa, isb = column(f"a{i}"), column(f"b{i}")
                idx = [j for j in range(res.num_rows) if isa[j] or isb[j]]
            else:
                mcol = column(f"m{i}")
                idx = [j for j in range(res.num_rows) if mcol[j]]
            if not idx:
                continue
            key_cols = texts(c.rule.sequence_by if kind == "sequence" else c.rule.group_by)
            sk_cols = texts(c.supp_key)
            vals = texts([c.rule.distinct or ""])[0] if kind == "distinct" else None
            term_cols = texts(c.rule.new_terms) if kind == "new_terms" else []
            m = c.machine
            for j in idx:
                key = tuple(col[j] for col in key_cols)
                t = base_cols["_t"][j]
                aid = base_cols["audit_id"][j]
                trig: Trigger | None
                if m is None:
                    trig = Trigger(t, t, [aid], list(key), 1)
                elif isinstance(m, ThresholdState):
                    trig = m.feed(key, t, aid)
                elif isinstance(m, DistinctState):
                    assert vals is not None
                    trig = m.feed(key, t, aid, vals[j])
                elif isinstance(m, NewTermsState):
                    trig = m.feed(key, tuple(col[j] for col in term_cols), t, aid)
                else:
                    trig = m.feed(key, t, aid, bool(isa[j]), bool(isb[j]))
                if trig is None:
                    continue
                sk = tuple(col[j] for col in sk_cols)
                if not c.suppressor.admit(sk, t):
                    continue
                entity = {n: base_cols[n][j] for n in ENTITY_COLUMNS}
                alert = make_alert(c.rule, trig, entity, list(sk))
                out.append((t, aid, entity["stage"] or "", c.rule.id, alert))
        return out

    def reset(self) -> None:
        """Forget every window, term, sequence and suppression (as a new engine would)."""
        max_keys = self._c[0].suppressor.last.max_keys if self._c else DEFAULT_MAX_KEYS
        for c in self._c:
            fresh = _Compiled(c.i, c.rule, max_keys)
            c.machine, c.suppressor = fresh.machine, fresh.suppressor
        self.events_seen = 0
        self.alerts_raised = 0
        self.watermark_us = None

    def _expire(self, now_us: int) -> None:
        for c in self._c:
            if c.machine is not None:
                c.machine.expire(now_us)
            c.suppressor.expire(now_us)

    # --- persistence --------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        rules: dict[str, Any] = {}
        for c in self._c:
            rules[c.rule.id] = {
                "kind": c.rule.kind,
                "fingerprint": _fingerprint(c.rule),
                "machine": c.machine.dump() if c.machine is not None else None,
                "suppress": c.suppressor.dump(),
            }
        return {
            "version": STATE_VERSION,
            "watermark_us": self.watermark_us,
            "events_seen": self.events_seen,
            "rules": rules,
        }

    def save(self) -> None:
        """Write the state atomically (temp file, fsync, rename; 0600)."""
        assert self.state_path is not None
        path = self.state_path
        data = msgspec.json.encode(self.state_dict())
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            tmp = path.with_name(f".tmp-{path.name}-{os.getpid()}")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except OSError as exc:
            raise StoreError(f"{path}: cannot save detection state: {exc.strerror}") from None

    def _load(self) -> None:
        assert self.state_path is not None
        try:
            data = msgspec.json.decode(self.state_path.read_bytes())
        except (OSError, msgspec.DecodeError) as exc:
            raise StoreError(
                f"{self.state_path}: cannot read detection state: {exc} "
                "(delete the file to start with empty windows)"
            ) from None
        if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
            raise StoreError(
                f"{self.state_path}: version: expected {STATE_VERSION}, "
                f"got {data.get('version') if isinstance(data, dict) else data!r}"
            )
        self.watermark_us = data.get("watermark_us")
        self.events_seen = int(data.get("events_seen", 0))
        saved = data.get("rules", {})
        for c in self._c:
            s = saved.get(c.rule.id)
            # A rule whose definition changed starts with empty state.
            if not s or s.get("fingerprint") != _fingerprint(c.rule):
                continue
            if c.machine is not None and s.get("machine") is not None:
                c.machine.load(s["machine"])
            c.suppressor.load(s.get("suppress", []))

    def state_sizes(self) -> dict[str, int]:
        """Entries held per stateful rule (for metrics and the memory bound)."""
        out = {}
        for c in self._c:
            m = c.machine
            n = len(c.suppressor.last.d)
            if isinstance(m, ThresholdState | DistinctState):
                n += len(m.groups.d)
            elif isinstance(m, NewTermsState):
                n += len(m.entities.d) + len(m.terms.d)
            elif isinstance(m, SequenceState):
                n += len(m.last_a.d)
            out[c.rule.id] = n
        return out

    def close(self) -> None:
        if self.state_path is not None:
            self.save()
        self._con.close()


def _fingerprint(rule: Rule) -> str:
    """What the rule's state depends on (not how the engine happens to evaluate it)."""
    import hashlib

    parts = [
        rule.kind,
        list(rule.stages),
        rule_sql_texts(rule),
        [rule.window_secs, rule.threshold, rule.lookback_secs, rule.sequence_within_secs],
        suppress_of(rule)[0],
        sorted((k, list(v)) for k, v in rule.allowlist.items()),
    ]
    return hashlib.sha256(msgspec.json.encode(parts)).hexdigest()[:16]
