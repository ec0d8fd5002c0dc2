"""Replay captured traffic under a policy: what it would log, in events and bytes.

The capture is first grouped in DuckDB (:mod:`kaudit.policy.capture`) into events a
policy cannot tell apart, with their byte sums; the policy is then evaluated once per
distinct attribute tuple, not once per event.

Bytes are the size of the event as :func:`kaudit.model.encode_event` writes it
(newline included), computed from the captured line: the level string replaced,
the bodies the new level drops subtracted (``,"requestObject":`` + body), and, with
omitManagedFields, each ``"managedFields":...,`` member subtracted. This equals
``len(encode_event(shape(...)))`` whenever the policy asks for no more than the capture
holds (tested against the one-event-at-a-time path).

When the policy asks for **more** than was captured (a higher level, or a stage the
capture omitted), the missing parts cannot be known: bodies are estimated from the
captured bodies of the same resource, subresource and verb when there are any, else
from :data:`DEFAULT_OBJECT_BYTES`; RequestReceived events are estimated from the
metadata size of the request's final event. Every figure that contains an estimate
says so (``estimated: true``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from kaudit.model.types import LEVEL_NONE, LEVELS, level_rank
from kaudit.policy.attributes import Attributes, User
from kaudit.policy.capture import (
    Capture,
    Group,
    capture_from_connection,
    capture_from_logs,
    capture_from_store,
    names_of,
)
from kaudit.policy.evaluate import Decision, Evaluator
from kaudit.policy.types import Policy

#: Verbs whose request body is logged at level >= Request (spec 2.1).
REQUEST_BODY_VERBS = frozenset({"create", "update", "patch"})
#: Verbs whose response object is logged at RequestResponse (spec 2.1).
RESPONSE_BODY_VERBS = frozenset(
    {"get", "list", "create", "update", "patch", "delete", "deletecollection"}
)
#: Streamed responses are never recorded (spec 2.1).
STREAMED_SUBRESOURCES = frozenset({"exec", "attach", "portforward", "proxy", "log"})
#: Size of one object of a resource when the capture has no body to learn from.
DEFAULT_OBJECT_BYTES: dict[str, int] = {
    "pods": 5000,
    "nodes": 7000,
    "deployments": 4000,
    "replicasets": 3500,
    "statefulsets": 4000,
    "daemonsets": 4000,
    "jobs": 3000,
    "configmaps": 2000,
    "secrets": 1200,
    "services": 1200,
    "endpoints": 1500,
    "endpointslices": 1500,
    "events": 900,
    "leases": 450,
    "serviceaccounts": 600,
    "roles": 800,
    "rolebindings": 700,
    "clusterroles": 1500,
    "clusterrolebindings": 700,
    "namespaces": 500,
}
DEFAULT_BODY_BYTES = 1500
#: A list returns many objects: its response is estimated as this many objects.
LIST_ITEMS_ESTIMATE = 10
#: A RequestReceived event is about this fraction of the final event's metadata.
REQUEST_RECEIVED_RATIO = 0.8
_REQ_KEY = len(b',"requestObject":')
_RESP_KEY = len(b',"responseObject":')
_STAGE_RR = "RequestReceived"
_FINAL_STAGES = ("ResponseComplete", "Panic")
_NO_RULE = "none (no rule)"


# --- estimating what was never captured ------------------------------------------------


@dataclass(slots=True)
class Estimates:
    """Average body sizes learned from the capture, per (resource, subresource, verb)."""

    request: dict[tuple[str, str, str], float] = field(default_factory=dict)
    response: dict[tuple[str, str, str], float] = field(default_factory=dict)

    @classmethod
    def learn(cls, groups: Iterable[Group]) -> Estimates:
        req: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0])
        resp: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0])
        for g in groups:
            a = g.attrs
            key = (a.resource, a.subresource, a.verb)
            if g.req_n:
                acc = req[key]
                acc[0] += g.req_bytes
                acc[1] += g.req_n
            if g.resp_n:
                acc = resp[key]
                acc[0] += g.resp_bytes
                acc[1] += g.resp_n
        return cls(
            {k: s / n for k, (s, n) in req.items()},
            {k: s / n for k, (s, n) in resp.items()},
        )

    def request_body(self, a: Attributes) -> float:
        got = self.request.get((a.resource, a.subresource, a.verb))
        if got is not None:
            return got
        return float(DEFAULT_OBJECT_BYTES.get(a.resource, DEFAULT_BODY_BYTES))

    def response_body(self, a: Attributes) -> float:
        got = self.response.get((a.resource, a.subresource, a.verb))
        if got is not None:
            return got
        one = DEFAULT_OBJECT_BYTES.get(a.resource, DEFAULT_BODY_BYTES)
        if a.verb in ("list", "deletecollection"):
            return float(one * LIST_ITEMS_ESTIMATE)
        return float(one)


# --- one group under one decision --------------------------------------------------------


class Outcome(NamedTuple):
    events: float
    bytes: float
    estimated: bool
    #: Events whose level is above what was captured (bodies estimated).
    above: int


_ZERO = Outcome(0, 0, False, 0)


def outcome(
    g: Group, d: Decision, est: Estimates, request_received_captured: bool
) -> tuple[Outcome, Outcome]:
    """The group's events under ``d``: (the captured events kept, estimated additions)."""
    rank = level_rank(d.level)
    if rank == 0:
        return _ZERO, _ZERO
    a = g.attrs
    added = _ZERO
    if (
        not request_received_captured
        and g.stage in _FINAL_STAGES
        and _STAGE_RR not in d.omit_stages
    ):
        meta = g.bytes - g.req_bytes - g.resp_bytes - _REQ_KEY * g.req_n - _RESP_KEY * g.resp_n
        meta += g.n * (len(d.level) - len(g.level))
        added = Outcome(g.n, meta * REQUEST_RECEIVED_RATIO, True, 0)
    if g.stage in d.omit_stages:
        return _ZERO, added
    size: float = g.bytes + g.n * (len(d.level) - len(g.level))
    resource = a.resource_request
    if rank < 2 or not resource:
        size -= g.req_bytes + _REQ_KEY * g.req_n
    elif d.omit_managed_fields:
        size -= max(g.req_mf, 0)
    if rank < 3 or not resource:
        size -= g.resp_bytes + _RESP_KEY * g.resp_n
    elif d.omit_managed_fields:
        size -= max(g.resp_mf, 0)
    estimated = False
    above = 0
    old = level_rank(g.level)
    if rank > old:
        above = g.n
    if resource and rank > old and g.stage == "ResponseComplete":
        streamed = a.subresource in STREAMED_SUBRESOURCES or a.verb in ("watch", "proxy")
        if not streamed:
            if rank >= 2 > old and a.verb in REQUEST_BODY_VERBS:
                size += g.n * (est.request_body(a) + _REQ_KEY)
                estimated = True
            if rank >= 3 > old and a.verb in RESPONSE_BODY_VERBS:
                size += g.n * (est.response_body(a) + _RESP_KEY)
                estimated = True
    return Outcome(g.n, size, estimated, above), added


def _rr_keys(groups: Iterable[Group]) -> set[Attributes]:
    return {g.attrs for g in groups if g.stage == _STAGE_RR}


# --- the simulation ----------------------------------------------------------------------


@dataclass(slots=True)
class Tally:
    events: float = 0
    bytes: float = 0
    estimated: bool = False

    def add(self, o: Outcome) -> None:
        self.events += o.events
        self.bytes += o.bytes
        self.estimated = self.estimated or o.estimated

    def to_dict(self) -> dict[str, Any]:
        return {
            "events": round(self.events),
            "bytes": round(self.bytes),
            "estimated": self.estimated,
        }


@dataclass(slots=True)
class ClassChange:
    captured: Tally = field(default_factory=Tally)
    simulated: Tally = field(default_factory=Tally)
    captured_levels: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    levels: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    rules: set[int | None] = field(default_factory=set)
    above_capture: int = 0

    def to_dict(self, name: str) -> dict[str, Any]:
        return {
            "class": name,
            "captured": self.captured.to_dict(),
            "simulated": self.simulated.to_dict(),
            "delta_events": round(self.simulated.events - self.captured.events),
            "delta_bytes": round(self.simulated.bytes - self.captured.bytes),
            "captured_levels": dict(sorted(self.captured_levels.items())),
            "levels": dict(sorted(self.levels.items())),
            "rules": [_rule_name(r) for r in sorted(self.rules, key=_rule_sort)],
            "above_capture": self.above_capture,
            "estimated": self.simulated.estimated,
        }


def _rule_name(i: int | None) -> str:
    return _NO_RULE if i is None else f"rules[{i}]"


def _rule_sort(i: int | None) -> int:
    return -1 if i is None else i


def request_class(a: Attributes) -> str:
    """``verb resource[/sub] (group)`` or ``verb /first-segment*`` for non-resource paths."""
    if a.resource_request:
        res = a.resource + (f"/{a.subresource}" if a.subresource else "")
        grp = f" ({a.api_group})" if a.api_group else ""
        return f"{a.verb} {res}{grp}"
    seg = a.path.split("/")[1] if a.path.count("/") >= 1 else a.path
    tail = "*" if a.path.rstrip("/") != f"/{seg}" else ""
    return f"{a.verb} /{seg}{tail}"


def user_class(user: User | None) -> str:
    """Who, in coarse classes: a system component by name, nodes, service accounts, users."""
    if user is None:
        return "(no user)"
    name = user.name
    if name.startswith("system:serviceaccount:"):
        ns = name.split(":")[2] if name.count(":") >= 3 else ""
        return "serviceaccounts (kube-system)" if ns == "kube-system" else "serviceaccounts"
    if name.startswith("system:node:"):
        return "nodes"
    if name.startswith("system:"):
        return name
    return "users"


@dataclass(slots=True)
class Simulation:
    source: str
    policy: str
    captured: Tally = field(default_factory=Tally)
    simulated: Tally = field(default_factory=Tally)
    by_level: dict[str, Tally] = field(default_factory=lambda: defaultdict(Tally))
    captured_by_level: dict[str, Tally] = field(default_factory=lambda: defaultdict(Tally))
    by_rule: dict[int | None, Tally] = field(default_factory=lambda: defaultdict(Tally))
    by_day: dict[str, Tally] = field(default_factory=lambda: defaultdict(Tally))
    by_user: dict[str, Tally] = field(default_factory=lambda: defaultdict(Tally))
    by_resource: dict[str, Tally] = field(default_factory=lambda: defaultdict(Tally))
    by_verb: dict[str, Tally] = field(default_factory=lambda: defaultdict(Tally))
    classes: dict[str, ClassChange] = field(default_factory=lambda: defaultdict(ClassChange))
    added: Tally = field(default_factory=Tally)
    above_capture: int = 0
    dropped_by_rule: dict[int | None, int] = field(default_factory=lambda: defaultdict(int))
    dropped_level: int = 0
    dropped_stage: int = 0
    bad_lines: int = 0
    distinct_attributes: int = 0

    @property
    def estimated(self) -> bool:
        return self.simulated.estimated or self.added.estimated

    def to_dict(self, top: int = 10) -> dict[str, Any]:
        def tallies(d: dict[Any, Tally], key: Callable[[Any], str] = str) -> dict[str, Any]:
            return {key(k): v.to_dict() for k, v in d.items()}

        levels = {lv: self.by_level.get(lv, Tally()) for lv in LEVELS if lv != LEVEL_NONE}
        rules = sorted(self.by_rule.items(), key=lambda kv: _rule_sort(kv[0]))
        changes = sorted(
            self.classes.items(),
            key=lambda kv: -abs(kv[1].simulated.bytes - kv[1].captured.bytes),
        )
        return {
            "source": self.source,
            "policy": self.policy,
            "estimated": self.estimated,
            "captured": self.captured.to_dict(),
            "simulated": self.simulated.to_dict(),
            "added_request_received": self.added.to_dict(),
            "events_by_level": {k: round(v.events) for k, v in levels.items()},
            "bytes_by_level": {k: round(v.bytes) for k, v in levels.items()},
            "estimated_by_level": {k: v.estimated for k, v in levels.items()},
            "captured_by_level": tallies(
                {lv: self.captured_by_level[lv] for lv in LEVELS if lv in self.captured_by_level}
            ),
            "events_by_rule": {_rule_name(k): round(v.events) for k, v in rules},
            "bytes_by_rule": {_rule_name(k): round(v.bytes) for k, v in rules},
            "by_day": tallies(dict(sorted(self.by_day.items()))),
            "top_users": _top(self.by_user, top),
            "top_resources": _top(self.by_resource, top),
            "top_verbs": _top(self.by_verb, top),
            "dropped": {"level_none": self.dropped_level, "omitted_stage": self.dropped_stage},
            "above_capture": {
                "events": self.above_capture,
                "note": "the policy asks for a higher level than was captured: bodies never "
                "recorded are estimated from captured bodies of the same resource and verb, "
                "else from per-resource defaults",
            },
            "changes": [c.to_dict(name) for name, c in changes[:top]],
            "distinct_attributes": self.distinct_attributes,
            "bad_lines": self.bad_lines,
        }


def _top(d: dict[str, Tally], n: int) -> list[dict[str, Any]]:
    items = sorted(d.items(), key=lambda kv: (-kv[1].bytes, kv[0]))[:n]
    return [{"name": k, **v.to_dict()} for k, v in items]


class Evaluated(NamedTuple):
    group: Group
    decision: Decision
    kept: Outcome
    added: Outcome


def evaluate_groups(
    policy: Policy, groups: Sequence[Group], est: Estimates | None = None
) -> Iterator[Evaluated]:
    """Each group with the policy's decision and its outcome (one evaluation per tuple)."""
    ev = Evaluator(policy, cache_size=max(65_536, len(groups)))
    est = est or Estimates.learn(groups)
    rr = _rr_keys(groups)
    for g in groups:
        d = ev.evaluate(g.attrs)
        kept, added = outcome(g, d, est, g.attrs in rr)
        yield Evaluated(g, d, kept, added)


def simulate(policy: Policy, capture: Capture) -> Simulation:
    """Replay ``capture`` under ``policy``."""
    capture.ensure_managed_fields([policy])
    sim = Simulation(capture.description, policy.source or "<policy>")
    sim.bad_lines = capture.bad_lines
    sim.distinct_attributes = len({g.attrs for g in capture.groups})
    for e in evaluate_groups(policy, capture.groups):
        g, d, kept, added = e
        a = g.attrs
        cap = Outcome(g.n, g.bytes, False, 0)
        sim.captured.add(cap)
        sim.captured_by_level[g.level].add(cap)
        cls = sim.classes[request_class(a)]
        cls.captured.add(cap)
        cls.captured_levels[g.level] += g.n
        if added.events:
            sim.added.add(added)
            cls.simulated.add(added)
            sim.by_level[d.level].add(added)
            sim.by_rule[d.rule_index].add(added)
            sim.by_day[g.day].add(added)
        if d.level == LEVEL_NONE:
            sim.dropped_level += g.n
            sim.dropped_by_rule[d.rule_index] += g.n
            continue
        if not kept.events:
            sim.dropped_stage += g.n
            continue
        sim.above_capture += kept.above
        cls.above_capture += kept.above
        sim.simulated.add(kept)
        sim.by_level[d.level].add(kept)
        sim.by_rule[d.rule_index].add(kept)
        sim.by_day[g.day].add(kept)
        sim.by_user[a.user.name if a.user else "(no user)"].add(kept)
        sim.by_resource[_resource_name(a)].add(kept)
        sim.by_verb[a.verb].add(kept)
        cls.simulated.add(kept)
        cls.levels[d.level] += g.n
        cls.rules.add(d.rule_index)
    return sim


def _resource_name(a: Attributes) -> str:
    if not a.resource_request:
        return "(non-resource)"
    res = a.resource + (f"/{a.subresource}" if a.subresource else "")
    return f"{res}.{a.api_group}" if a.api_group else res


# --- diff ----------------------------------------------------------------------------


@dataclass(slots=True)
class DiffRow:
    old: Tally = field(default_factory=Tally)
    new: Tally = field(default_factory=Tally)
    old_levels: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    new_levels: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    old_rules: set[int | None] = field(default_factory=set)
    new_rules: set[int | None] = field(default_factory=set)

    def changed(self) -> bool:
        # A rule index that moves (a rule inserted above) alone is not a change.
        return round(self.old.bytes) != round(self.new.bytes) or set(self.old_levels) != set(
            self.new_levels
        )

    def to_dict(self, key: tuple[str, str, str]) -> dict[str, Any]:
        return {
            "user_class": key[0],
            "resource": key[1],
            "verb": key[2],
            "old_levels": sorted(self.old_levels, key=level_rank),
            "new_levels": sorted(self.new_levels, key=level_rank),
            "old_rules": [_rule_name(r) for r in sorted(self.old_rules, key=_rule_sort)],
            "new_rules": [_rule_name(r) for r in sorted(self.new_rules, key=_rule_sort)],
            "old": self.old.to_dict(),
            "new": self.new.to_dict(),
            "delta_events": round(self.new.events - self.old.events),
            "delta_bytes": round(self.new.bytes - self.old.bytes),
        }


@dataclass(slots=True)
class PolicyDiff:
    old_policy: str
    new_policy: str
    source: str
    old: Tally
    new: Tally
    rows: dict[tuple[str, str, str], DiffRow]
    #: Attribute tuples seen in the capture whose decision differs (level or rule).
    changed_attributes: int

    def to_dict(self, limit: int | None = None) -> dict[str, Any]:
        rows = [(k, r) for k, r in self.rows.items() if r.changed()]
        rows.sort(key=lambda kv: (-abs(kv[1].new.bytes - kv[1].old.bytes), kv[0]))
        return {
            "old_policy": self.old_policy,
            "new_policy": self.new_policy,
            "source": self.source,
            "old": self.old.to_dict(),
            "new": self.new.to_dict(),
            "delta_events": round(self.new.events - self.old.events),
            "delta_bytes": round(self.new.bytes - self.old.bytes),
            "changed_attributes": self.changed_attributes,
            "changes": [r.to_dict(k) for k, r in rows[:limit]],
            "unchanged_classes": len(self.rows) - len(rows),
        }


def diff(old: Policy, new: Policy, capture: Capture) -> PolicyDiff:
    """How the level, rule and volume of each request class change from ``old`` to ``new``."""
    capture.ensure_managed_fields([old, new])
    est = Estimates.learn(capture.groups)
    rows: dict[tuple[str, str, str], DiffRow] = defaultdict(DiffRow)
    total_old, total_new = Tally(), Tally()
    changed: set[Attributes] = set()
    pairs = zip(
        evaluate_groups(old, capture.groups, est),
        evaluate_groups(new, capture.groups, est),
        strict=True,
    )
    for o, n in pairs:
        a = o.group.attrs
        key = (user_class(a.user), _resource_name(a), a.verb)
        row = rows[key]
        for side, tally, levels, rules, total in (
            (o, row.old, row.old_levels, row.old_rules, total_old),
            (n, row.new, row.new_levels, row.new_rules, total_new),
        ):
            for part in (side.kept, side.added):
                tally.add(part)
                total.add(part)
            events = side.kept.events + side.added.events
            levels[side.decision.level] += events if events else 0
            if events or side.decision.level == LEVEL_NONE:
                levels.setdefault(side.decision.level, 0)
            rules.add(side.decision.rule_index)
        if (o.decision.level, o.decision.rule_index) != (n.decision.level, n.decision.rule_index):
            changed.add(a)
    return PolicyDiff(
        old.source or "<old>",
        new.source or "<new>",
        capture.description,
        total_old,
        total_new,
        dict(rows),
        len(changed),
    )


__all__ = [
    "DEFAULT_BODY_BYTES",
    "DEFAULT_OBJECT_BYTES",
    "Capture",
    "Estimates",
    "Group",
    "PolicyDiff",
    "Simulation",
    "Tally",
    "capture_from_connection",
    "capture_from_logs",
    "capture_from_store",
    "diff",
    "evaluate_groups",
    "names_of",
    "outcome",
    "request_class",
    "simulate",
    "user_class",
]
