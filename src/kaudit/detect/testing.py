"""Embedded rule tests: compact audit events, and running a rule over them.

A test event is an audit event in its JSON shape with defaults filled in, so a
test says only what matters::

    - verb: create
      user: {username: alice}          # or just `user: alice`
      objectRef: {resource: pods, namespace: default, name: web}
      requestObject: {spec: {hostPID: true}}

Defaults: ``level: RequestResponse``, ``stage: ResponseComplete``, a unique
``auditID``, ``responseStatus: {code: 200}``, a ``requestURI`` built from
``objectRef``, and timestamps one second apart from 2024-01-01T00:00:00Z.
Two extra keys shape sequences: ``repeat: N`` repeats the event N times
(``{i}`` in any string becomes 0..N-1) and ``after: 10m`` sets the gap before it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import duckdb
import pyarrow as pa

from kaudit.detect.alert import Alert
from kaudit.detect.engine import Engine, hunt
from kaudit.detect.flat import table_from_events
from kaudit.detect.rule import Rule, RuleTest, parse_duration
from kaudit.errors import DecodeError, Location, RuleError
from kaudit.model.codec import decode_event, format_micro
from kaudit.model.types import Event

BASE_US = 1_704_067_200_000_000  # 2024-01-01T00:00:00Z


def _subst(v: Any, i: int) -> Any:
    if isinstance(v, str):
        return v.replace("{i}", str(i))
    if isinstance(v, list):
        return [_subst(x, i) for x in v]
    if isinstance(v, dict):
        return {k: _subst(x, i) for k, x in v.items()}
    return v


def _uri(d: dict[str, Any]) -> str:
    ref = d.get("objectRef") or {}
    res = ref.get("resource")
    if not res:
        return "/"
    group, version = ref.get("apiGroup", ""), ref.get("apiVersion", "v1")
    path = "/api/v1" if not group else f"/apis/{group}/{version}"
    if ref.get("namespace"):
        path += f"/namespaces/{ref['namespace']}"
    path += f"/{res}"
    if ref.get("name"):
        path += f"/{ref['name']}"
    if ref.get("subresource"):
        path += f"/{ref['subresource']}"
    return path


def expand_events(events: Sequence[dict[str, Any]], source: str = "<test>") -> list[Event]:
    """Compact test events (see the module doc) as full audit events."""
    out: list[Event] = []
    t = BASE_US
    n = 0
    for k, spec in enumerate(events):
        spec = dict(spec)
        repeat = int(spec.pop("repeat", 1))
        gap = parse_duration(spec.pop("after")) * 1_000_000 if "after" in spec else 1_000_000
        for i in range(repeat):
            d = _subst(spec, i)
            if isinstance(d.get("user"), str):
                d["user"] = {"username": d["user"]}
            d.setdefault("level", "RequestResponse")
            d.setdefault("stage", "ResponseComplete")
            d.setdefault("auditID", f"00000000-0000-4000-8000-{n:012d}")
            d.setdefault("requestURI", _uri(d))
            d.setdefault("verb", "get")
            d.setdefault("user", {"username": "alice", "groups": ["system:authenticated"]})
            if d["stage"] in ("ResponseComplete", "ResponseStarted", "Panic"):
                d.setdefault("responseStatus", {"metadata": {}, "code": 200})
            d.setdefault("sourceIPs", ["10.0.0.1"])
            t += gap if (k or i) else 0
            ts = format_micro(t)
            d.setdefault("requestReceivedTimestamp", ts)
            d.setdefault("stageTimestamp", ts)
            try:
                out.append(decode_event(json.dumps(d), Location(source)))
            except DecodeError as exc:
                raise RuleError(f"test event {k}: {exc.detail}", Location(source)) from None
            n += 1
    return out


@dataclass(frozen=True)
class TestResult:
    rule_id: str
    name: str
    ok: bool
    detail: str
    alerts: int


class Evaluator:
    """Hunt and streaming over small event sets, reusing one engine and one connection
    for a rule set (the engine is reset between evaluations)."""

    def __init__(self, rules: Sequence[Rule]) -> None:
        self.rules = list(rules)
        self.engine = Engine(self.rules)
        self.con = duckdb.connect()

    def hunt(self, table: pa.Table) -> list[Alert]:
        self.con.register("events", table)
        try:
            return hunt(self.con, self.rules)
        finally:
            self.con.unregister("events")

    def stream(self, table: pa.Table, batch_size: int = 0) -> list[Alert]:
        self.engine.reset()
        out: list[Alert] = []
        step = batch_size or max(1, table.num_rows)
        for off in range(0, table.num_rows, step):
            out += self.engine.process(table.slice(off, step))
        return out

    def close(self) -> None:
        self.engine.close()
        self.con.close()


def evaluate_events(
    rules: Sequence[Rule], events: Sequence[Event], *, batch_size: int = 0
) -> tuple[list[Alert], list[Alert]]:
    """(hunt alerts, streaming alerts) of ``rules`` over ``events``."""
    ev = Evaluator(rules)
    try:
        table = table_from_events(events)
        return ev.hunt(table), ev.stream(table, batch_size)
    finally:
        ev.close()


def run_test(rule: Rule, test: RuleTest, evaluator: Evaluator | None = None) -> TestResult:
    """Run one embedded test: hunt, streaming in one batch and one event at a time agree."""
    ev = evaluator or Evaluator([rule])
    try:
        events = expand_events(test.events, f"{rule.source} test {test.name!r}")
        table = table_from_events(events)
        hunted = ev.hunt(table)
        streamed = ev.stream(table)
        streamed_1 = ev.stream(table, 1)
    finally:
        if evaluator is None:
            ev.close()
    n = len(hunted)
    problems = []
    if test.match and n == 0:
        problems.append("expected an alert, got none")
    if not test.match and n:
        problems.append(f"expected no alert, got {n}")
    if test.alerts is not None and n != test.alerts:
        problems.append(f"expected {test.alerts} alerts, got {n}")
    key = sorted(a.id for a in hunted)
    if sorted(a.id for a in streamed) != key or sorted(a.id for a in streamed_1) != key:
        problems.append(
            f"streaming disagrees with hunt: hunt {len(hunted)}, streaming {len(streamed)} "
            f"(batch of 1: {len(streamed_1)})"
        )
    return TestResult(rule.id, test.name, not problems, "; ".join(problems), n)


def run_rule_tests(rule: Rule) -> list[TestResult]:
    """Every embedded test of ``rule``, on one engine."""
    ev = Evaluator([rule])
    try:
        return [run_test(rule, t, ev) for t in rule.tests]
    finally:
        ev.close()


def run_tests(rules: Sequence[Rule]) -> list[TestResult]:
    return [res for r in rules for res in run_rule_tests(r)]
