"""The rule format: YAML files of detection rules, loaded and validated.

A rule is metadata plus one SQL boolean ``condition`` over the flat schema
(:mod:`kaudit.query.schema`), with optional stateful parts (``threshold``,
``distinct``, ``new_terms``, ``sequence``), ``suppress``, an ``allowlist`` and
embedded ``tests``. ``docs/rules.md`` describes every field; :data:`FIELDS` is
the table that drives validation and that page.

Files hold one rule (a mapping with ``id``) or several (``rules: [...]``). The
built-in pack (``kaudit/detect/builtin/*.yaml``) is loaded through the same
:func:`load_rules` a user's ``--rules DIR`` goes through. Every problem in every
file is reported at once, each as ``file:line:col: field: what (expected ...)``.
"""

from __future__ import annotations

import difflib
import functools
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Final

import yaml

from kaudit.detect.yamlsrc import Positions, load_yaml
from kaudit.errors import RuleError
from kaudit.query.schema import BY_NAME

SEVERITIES: Final = ("info", "low", "medium", "high", "critical")
LEVELS: Final = ("Metadata", "Request", "RequestResponse")
STAGES: Final = ("RequestReceived", "ResponseStarted", "ResponseComplete", "Panic")
DEFAULT_STAGES: Final = ("ResponseComplete", "Panic")
ID_RE: Final = re.compile(r"^[a-z0-9][a-z0-9-]*(\.[a-z0-9][a-z0-9-]*)*$")
MITRE_RE: Final = re.compile(r"^T\d{4}(\.\d{3})?$")
_DURATION_RE: Final = re.compile(r"^(\d+)(s|m|h|d)$")
_UNIT_SECS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400}

#: Every rule field: name -> (type, required, help). Drives validation and docs/rules.md.
FIELDS: Final[dict[str, tuple[str, bool, str]]] = {
    "id": ("string", True, "Unique id, lower-case words joined by `-` and `.`."),
    "title": ("string", True, "One line shown in alerts."),
    "description": ("string", True, "What the rule finds and why it matters."),
    "severity": ("string", True, "One of info, low, medium, high, critical."),
    "mitre": ("list of strings", True, "MITRE ATT&CK technique ids (`T1609`, `T1552.007`)."),
    "references": ("list of strings", False, "Links for the analyst."),
    "required_level": (
        "string",
        True,
        "The audit level the rule needs recorded: Metadata, Request or RequestResponse.",
    ),
    "stages": (
        "list of strings",
        False,
        "Audit stages the rule looks at; default ResponseComplete and Panic.",
    ),
    "condition": (
        "string",
        False,
        "DuckDB SQL boolean over the flat schema, with the helper macros (required unless "
        "`sequence` gives the steps).",
    ),
    "group_by": (
        "list of strings",
        False,
        "SQL expressions (usually columns) that key windows, distinct counts, new terms.",
    ),
    "window": ("duration", False, "Sliding window for `threshold`/`distinct` (`30s`, `5m`)."),
    "threshold": ("integer", False, "Matching events (or distinct values) per window to alert."),
    "distinct": ("string", False, "SQL expression whose distinct values are counted per group."),
    "new_terms": (
        "mapping",
        False,
        "`terms` (SQL expressions) first seen for the `group_by` entity within `lookback`.",
    ),
    "sequence": (
        "mapping",
        False,
        "`by` (SQL expressions), `within` (duration) and two `steps` (SQL conditions): "
        "step 1 then step 2 by the same key.",
    ),
    "suppress": (
        "mapping",
        False,
        "`window` (duration) and optional `key` (SQL expressions): at most one alert per "
        "key per window.",
    ),
    "allowlist": (
        "mapping",
        False,
        "column -> values (`*` globs) whose events never match; extended by `--allowlist`.",
    ),
    "needs": (
        "mapping",
        False,
        "`resources`, `subresources`, `verbs`, `api_groups`, `non_resource_urls`, `users`: "
        "what requests the rule concerns (used by `rules coverage`).",
    ),
    "tests": (
        "list",
        False,
        "Embedded tests: `name`, `match` (true/false), `events`; the built-in pack has a "
        "positive and a negative test for every rule.",
    ),
    "enabled": ("boolean", False, "false keeps the rule loaded but never run."),
    "tags": ("list of strings", False, "Free-form labels."),
}

_SUB_FIELDS: Final = {
    "new_terms": {"terms", "lookback"},
    "sequence": {"by", "within", "steps"},
    "suppress": {"window", "key"},
    "needs": {"resources", "subresources", "verbs", "api_groups", "non_resource_urls", "users"},
    "tests": {"name", "match", "alerts", "events"},
}


def parse_duration(text: object) -> int:
    """Seconds in ``30s``/``5m``/``2h``/``7d``; raises ValueError otherwise."""
    if isinstance(text, str):
        m = _DURATION_RE.match(text.strip())
        if m:
            secs = int(m.group(1)) * _UNIT_SECS[m.group(2)]
            if secs > 0:
                return secs
    raise ValueError(f"expected a duration like 30s, 5m, 2h or 7d, got {text!r}")


@dataclass(frozen=True)
class Needs:
    resources: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ()
    api_groups: tuple[str, ...] = ()
    non_resource_urls: tuple[str, ...] = ()
    users: tuple[str, ...] = ()


@dataclass(frozen=True)
class RuleTest:
    name: str
    match: bool
    events: tuple[dict[str, Any], ...]
    alerts: int | None = None


@dataclass(frozen=True)
class Rule:
    """One validated detection rule. ``kind`` says which evaluation it needs."""

    id: str
    title: str
    description: str
    severity: str
    mitre: tuple[str, ...]
    required_level: str
    condition: str = "true"
    references: tuple[str, ...] = ()
    stages: tuple[str, ...] = DEFAULT_STAGES
    group_by: tuple[str, ...] = ()
    window_secs: int | None = None
    threshold: int | None = None
    distinct: str | None = None
    new_terms: tuple[str, ...] = ()
    lookback_secs: int | None = None
    sequence_by: tuple[str, ...] = ()
    sequence_steps: tuple[str, ...] = ()
    sequence_within_secs: int | None = None
    suppress_secs: int | None = None
    suppress_key: tuple[str, ...] = ()
    allowlist: dict[str, tuple[str, ...]] = field(default_factory=dict)
    needs: Needs = Needs()
    tests: tuple[RuleTest, ...] = ()
    enabled: bool = True
    tags: tuple[str, ...] = ()
    source: str = ""

    @property
    def kind(self) -> str:
        """simple, threshold, distinct, new_terms or sequence."""
        if self.sequence_steps:
            return "sequence"
        if self.new_terms:
            return "new_terms"
        if self.distinct:
            return "distinct"
        if self.threshold is not None:
            return "threshold"
        return "simple"

    def with_allowlist(self, extra: dict[str, tuple[str, ...]]) -> Rule:
        merged = dict(self.allowlist)
        for col, values in extra.items():
            merged[col] = tuple(dict.fromkeys((*merged.get(col, ()), *values)))
        return _replace(self, allowlist=merged)


def _replace(rule: Rule, **changes: Any) -> Rule:
    import dataclasses

    return dataclasses.replace(rule, **changes)


# --- loading ---------------------------------------------------------------------


class _Problems:
    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, pos: Positions, path: tuple[str | int, ...], msg: str) -> None:
        where = _field_path(path)
        self.items.append(f"{pos.at(path)}: {where + ': ' if where else ''}{msg}")


def _field_path(path: Sequence[str | int]) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else p)
    return out


def _suggest(key: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(key, list(known), n=1)
    return f' (did you mean "{close[0]}"?)' if close else ""


class RuleSetError(RuleError):
    """Rules that failed to load or validate: ``problems`` holds every one."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


def builtin_dir() -> Path:
    """The directory of the built-in pack (package data)."""
    return Path(str(resources.files("kaudit.detect").joinpath("builtin")))


def rule_files(path: str | os.PathLike[str]) -> list[Path]:
    p = Path(path)
    if p.is_dir():
        return sorted(f for f in p.rglob("*") if f.suffix in (".yaml", ".yml") and f.is_file())
    return [p]


def load_rules(
    paths: Sequence[str | os.PathLike[str]] = (),
    *,
    builtin: bool = True,
    allowlist: str | os.PathLike[str] | None = None,
) -> list[Rule]:
    """Load the built-in pack (unless ``builtin=False``) and every rule file under ``paths``.

    A user rule with the id of a built-in rule replaces it. Raises :class:`RuleSetError`
    with every problem found in every file.
    """
    from kaudit.detect.sql import check_rules_sql

    problems = _Problems()
    by_id: dict[str, Rule] = {}
    origin: dict[str, str] = {}
    if builtin:
        for rule in _builtin_rules():
            by_id[rule.id] = rule
            origin[rule.id] = "builtin"
    sources: list[Path] = []
    for p in paths:
        if not Path(p).exists():
            problems.items.append(f"{p}: no such file or directory")
            continue
        sources += rule_files(p)
    for path in sources:
        is_builtin = False
        for rule in _load_file(path, problems):
            prev = origin.get(rule.id)
            if prev is not None and not (prev == "builtin" and not is_builtin):
                problems.items.append(
                    f"{rule.source}: id: duplicate rule id {rule.id!r} (also in {prev})"
                )
                continue
            by_id[rule.id] = rule
            origin[rule.id] = "builtin" if is_builtin else rule.source
    if allowlist is not None:
        extra = load_allowlist(allowlist, set(by_id), problems)
        for rid, cols in extra.items():
            targets = list(by_id) if rid == "*" else [rid]
            for t in targets:
                by_id[t] = by_id[t].with_allowlist(cols)
    rules = list(by_id.values())
    if not problems.items:
        # The built-in pack's SQL is checked by its own tests; an allowlist only adds
        # quoted literals. A user's rules are bound here.
        problems.items += check_rules_sql([r for r in rules if origin[r.id] != "builtin"])
    if problems.items:
        raise RuleSetError(problems.items)
    return rules


@functools.lru_cache(maxsize=1)
def _builtin_rules() -> tuple[Rule, ...]:
    """The built-in pack, parsed once per process (rules are immutable)."""
    problems = _Problems()
    rules = [r for f in rule_files(builtin_dir()) for r in _load_file(f, problems)]
    if problems.items:  # pragma: no cover - the pack's tests keep it valid
        raise RuleSetError(problems.items)
    return tuple(rules)


def load_rule_text(text: str, source: str) -> list[Rule]:
    """Rules from YAML text (no SQL check); raises :class:`RuleSetError`."""
    problems = _Problems()
    rules = _load_text(text, source, problems)
    if problems.items:
        raise RuleSetError(problems.items)
    return rules


def _load_file(path: Path, problems: _Problems) -> list[Rule]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        problems.items.append(f"{path}: cannot read: {exc}")
        return []
    return _load_text(text, str(path), problems)


def _load_text(text: str, source: str, problems: _Problems) -> list[Rule]:
    try:
        doc, pos = load_yaml(text, source)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        problems.items.append(f"{where}: invalid YAML: {exc.problem}")
        return []
    for dpath, (line, col) in pos.duplicates:
        problems.items.append(f"{source}:{line}:{col}: {_field_path(dpath)}: duplicate key")
    if isinstance(doc, dict) and "rules" in doc and "id" not in doc:
        items = doc["rules"]
        if not isinstance(items, list):
            problems.add(pos, ("rules",), "expected a list of rules")
            return []
        out = []
        for i, item in enumerate(items):
            r = _build_rule(item, pos.sub(("rules", i)), problems, source)
            if r is not None:
                out.append(r)
        return out
    r = _build_rule(doc, pos, problems, source)
    return [r] if r is not None else []


def _build_rule(doc: object, pos: Positions, problems: _Problems, source: str) -> Rule | None:
    before = len(problems.items)
    if not isinstance(doc, dict):
        problems.add(pos, (), "expected a rule (a mapping with id, title, condition, ...)")
        return None
    for key in doc:
        if key not in FIELDS:
            problems.add(pos, (str(key),), f"unknown field{_suggest(str(key), FIELDS)}")
    for name, (_, required, _) in FIELDS.items():
        if required and name not in doc:
            problems.add(pos, (), f"{name}: required field is missing")
    if "condition" not in doc and "sequence" not in doc:
        problems.add(pos, (), "condition: required field is missing")

    def s(name: str, default: str | None = None) -> str | None:
        v = doc.get(name, default)
        if v is None:
            return None
        if not isinstance(v, str) or not v.strip():
            problems.add(pos, (name,), f"expected a non-empty string, got {v!r}")
            return None
        return v.strip()

    def strs(v: object, path: tuple[str | int, ...]) -> tuple[str, ...]:
        if v is None:
            return ()
        if isinstance(v, str):
            v = [v]
        if not isinstance(v, list) or not all(isinstance(x, str) and x for x in v):
            problems.add(pos, path, f"expected a list of non-empty strings, got {v!r}")
            return ()
        return tuple(v)

    def enum(v: object, path: tuple[str | int, ...], allowed: Sequence[str]) -> str:
        if v not in allowed:
            sugg = _suggest(str(v), allowed)
            supported = ", ".join(f'"{a}"' for a in allowed)
            problems.add(
                pos, path, f'Unsupported value: "{v}": supported values: {supported}{sugg}'
            )
            return allowed[0]
        return str(v)

    def duration(v: object, path: tuple[str | int, ...]) -> int | None:
        if v is None:
            return None
        try:
            return parse_duration(v)
        except ValueError as exc:
            problems.add(pos, path, str(exc))
            return None

    def sub(name: str) -> dict[str, Any]:
        v = doc.get(name)
        if v is None:
            return {}
        if not isinstance(v, dict):
            problems.add(pos, (name,), "expected a mapping")
            return {}
        for k in v:
            if k not in _SUB_FIELDS[name]:
                problems.add(
                    pos, (name, str(k)), f"unknown field{_suggest(str(k), _SUB_FIELDS[name])}"
                )
        return v

    rid = s("id") or ""
    if rid and not ID_RE.match(rid):
        problems.add(pos, ("id",), f"{rid!r} must match {ID_RE.pattern}")
    title = s("title") or ""
    description = s("description") or ""
    severity = enum(doc.get("severity"), ("severity",), SEVERITIES) if "severity" in doc else ""
    mitre = strs(doc.get("mitre"), ("mitre",))
    if "mitre" in doc and not mitre:
        problems.add(pos, ("mitre",), "expected at least one ATT&CK technique id")
    for i, t in enumerate(mitre):
        if not MITRE_RE.match(t):
            problems.add(pos, ("mitre", i), f"{t!r} is not an ATT&CK technique id (like T1609)")
    level = (
        enum(doc.get("required_level"), ("required_level",), LEVELS)
        if "required_level" in doc
        else "Metadata"
    )
    stages = strs(doc.get("stages"), ("stages",)) or DEFAULT_STAGES
    for i, st in enumerate(stages):
        if st not in STAGES:
            enum(st, ("stages", i), STAGES)
    condition = s("condition") or "true"
    group_by = strs(doc.get("group_by"), ("group_by",))
    window = duration(doc.get("window"), ("window",))
    threshold = doc.get("threshold")
    if threshold is not None and (
        not isinstance(threshold, int) or isinstance(threshold, bool) or threshold < 1
    ):
        problems.add(pos, ("threshold",), f"expected a positive integer, got {threshold!r}")
        threshold = None
    distinct = s("distinct")
    nt = sub("new_terms")
    terms = strs(nt.get("terms"), ("new_terms", "terms"))
    lookback = duration(nt.get("lookback"), ("new_terms", "lookback"))
    if nt and (not terms or lookback is None):
        problems.add(pos, ("new_terms",), "needs terms (a list) and lookback (a duration)")
    sq = sub("sequence")
    seq_by = strs(sq.get("by"), ("sequence", "by"))
    steps = strs(sq.get("steps"), ("sequence", "steps"))
    within = duration(sq.get("within"), ("sequence", "within"))
    if sq and (len(steps) != 2 or not seq_by or within is None):
        problems.add(pos, ("sequence",), "needs by (a list), within (a duration) and 2 steps")
    sp = sub("suppress")
    suppress = duration(sp.get("window"), ("suppress", "window"))
    if sp and suppress is None:
        problems.add(pos, ("suppress", "window"), "required field is missing")
    suppress_key = strs(sp.get("key"), ("suppress", "key"))

    stateful = [k for k in ("distinct", "new_terms", "sequence") if doc.get(k) is not None]
    if len(stateful) > 1:
        problems.add(pos, (), f"{' and '.join(stateful)} cannot be combined in one rule")
    if distinct is not None or threshold is not None:
        if threshold is None or window is None or not group_by:
            problems.add(pos, (), "threshold/distinct rules need group_by, window and threshold")
    elif window is not None:
        problems.add(pos, ("window",), "window is only used with threshold or distinct")
    if nt and not group_by:
        problems.add(pos, ("new_terms",), "new_terms needs group_by (the entity)")
    if sq and threshold is not None:
        problems.add(pos, ("sequence",), "sequence cannot be combined with threshold")

    allow: dict[str, tuple[str, ...]] = {}
    al = doc.get("allowlist")
    if al is not None:
        if not isinstance(al, dict):
            problems.add(pos, ("allowlist",), "expected a mapping of column -> values")
        else:
            allow = _allowlist_columns(al, pos, ("allowlist",), problems)

    nd = sub("needs")
    needs = Needs(**{k: strs(nd.get(k), ("needs", k)) for k in _SUB_FIELDS["needs"]})
    tests = _tests(doc.get("tests"), pos, problems)
    enabled = doc.get("enabled", True)
    if not isinstance(enabled, bool):
        problems.add(pos, ("enabled",), f"expected true or false, got {enabled!r}")
        enabled = True
    if len(problems.items) > before:
        return None
    line = pos.at(()).line
    return Rule(
        id=rid,
        title=title,
        description=description,
        severity=severity,
        mitre=mitre,
        required_level=level,
        condition=condition,
        references=strs(doc.get("references"), ("references",)),
        stages=stages,
        group_by=group_by,
        window_secs=window,
        threshold=threshold if distinct is not None or threshold is not None else None,
        distinct=distinct,
        new_terms=terms,
        lookback_secs=lookback,
        sequence_by=seq_by,
        sequence_steps=steps,
        sequence_within_secs=within,
        suppress_secs=suppress,
        suppress_key=suppress_key,
        allowlist=allow,
        needs=needs,
        tests=tests,
        enabled=enabled,
        tags=strs(doc.get("tags"), ("tags",)),
        source=f"{source}:{line}",
    )


def _allowlist_columns(
    al: dict[Any, Any], pos: Positions, path: tuple[str | int, ...], problems: _Problems
) -> dict[str, tuple[str, ...]]:
    out: dict[str, tuple[str, ...]] = {}
    for col, values in al.items():
        if col not in BY_NAME or col in ("event", "annotations", "request_object"):
            problems.add(
                pos, (*path, str(col)), f"not a flat-schema column{_suggest(str(col), BY_NAME)}"
            )
            continue
        if isinstance(values, str):
            values = [values]
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            problems.add(pos, (*path, str(col)), "expected a list of strings")
            continue
        out[str(col)] = tuple(values)
    return out


def _tests(v: object, pos: Positions, problems: _Problems) -> tuple[RuleTest, ...]:
    if v is None:
        return ()
    if not isinstance(v, list):
        problems.add(pos, ("tests",), "expected a list of tests")
        return ()
    out = []
    for i, t in enumerate(v):
        path: tuple[str | int, ...] = ("tests", i)
        if not isinstance(t, dict):
            problems.add(pos, path, "expected a mapping with name, match, events")
            continue
        for k in t:
            if k not in _SUB_FIELDS["tests"]:
                problems.add(
                    pos, (*path, str(k)), f"unknown field{_suggest(str(k), _SUB_FIELDS['tests'])}"
                )
        name, match, events = t.get("name"), t.get("match"), t.get("events")
        alerts = t.get("alerts")
        if not isinstance(name, str) or not name:
            problems.add(pos, (*path, "name"), "expected a non-empty string")
        if not isinstance(match, bool):
            problems.add(pos, (*path, "match"), f"expected true or false, got {match!r}")
        if alerts is not None and (not isinstance(alerts, int) or isinstance(alerts, bool)):
            problems.add(pos, (*path, "alerts"), "expected an integer")
        if (
            not isinstance(events, list)
            or not events
            or not all(isinstance(e, dict) for e in events)
        ):
            problems.add(pos, (*path, "events"), "expected a non-empty list of events")
            continue
        if isinstance(name, str) and isinstance(match, bool):
            out.append(RuleTest(name, match, tuple(events), alerts))
    if v and not any(t.match for t in out) and len(out) == len(v):
        problems.add(pos, ("tests",), "needs at least one test with match: true")
    if v and not any(not t.match for t in out) and len(out) == len(v):
        problems.add(pos, ("tests",), "needs at least one test with match: false")
    return tuple(out)


def load_allowlist(
    path: str | os.PathLike[str], known_ids: set[str], problems: _Problems
) -> dict[str, dict[str, tuple[str, ...]]]:
    """An allowlist file: ``allowlist: {RULE_ID or "*": {column: [values]}}``."""
    source = str(path)
    try:
        doc, pos = load_yaml(Path(path).read_text(encoding="utf-8"), source)
    except OSError as exc:
        problems.items.append(f"{source}: cannot read: {exc}")
        return {}
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        problems.items.append(f"{where}: invalid YAML: {exc.problem}")
        return {}
    if (
        not isinstance(doc, dict)
        or set(doc) != {"allowlist"}
        or not isinstance(doc["allowlist"], dict)
    ):
        problems.add(pos, (), 'expected `allowlist:` mapping rule ids (or "*") to columns')
        return {}
    out: dict[str, dict[str, tuple[str, ...]]] = {}
    for rid, cols in doc["allowlist"].items():
        path_: tuple[str | int, ...] = ("allowlist", str(rid))
        if rid != "*" and rid not in known_ids:
            problems.add(pos, path_, f"unknown rule id{_suggest(str(rid), known_ids)}")
            continue
        if not isinstance(cols, dict):
            problems.add(pos, path_, "expected a mapping of column -> values")
            continue
        out[str(rid)] = _allowlist_columns(cols, pos, path_, problems)
    return out
