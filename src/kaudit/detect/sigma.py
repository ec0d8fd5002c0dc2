"""Sigma rules (``logsource: product kubernetes, service audit``) as kaudit rules.

pySigma parses the rule and its condition; this walks the parsed condition tree
(AND / OR / NOT over field = value) and writes one SQL condition over the flat
schema. Both field styles map: the audit event's (``objectRef.resource``,
``user.username``, ``responseStatus.code``...) and the short ones (``resource``,
``username``, ``code``...), and ``requestObject.<path>`` / ``responseObject.<path>``
become JSON extraction. Matching is Sigma's: case-insensitive, ``*``/``?``
wildcards, ``|re`` regular expressions. A rule that cannot be mapped - an unknown
field, a keyword search, a modifier that has no SQL form here (``|cidr``,
``|expand``...), a correlation or aggregation - is refused with the reason.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from kaudit.detect.sql import quote

#: Sigma field -> flat-schema column.
FIELD_MAP: dict[str, str] = {
    "verb": "verb",
    "stage": "stage",
    "level": "level",
    "auditID": "audit_id",
    "requestURI": "request_uri",
    "objectRef.resource": "resource",
    "objectRef.subresource": "subresource",
    "objectRef.namespace": "namespace",
    "objectRef.name": "name",
    "objectRef.apiGroup": "api_group",
    "objectRef.apiVersion": "api_version",
    "user.username": "username",
    "user.groups": "groups",
    "impersonatedUser.username": "impersonated_user",
    "sourceIPs": "source_ips",
    "userAgent": "user_agent",
    "responseStatus.code": "code",
    "responseStatus.reason": "status_reason",
    "responseStatus.message": "status_message",
    "annotations.authorization.k8s.io/decision": "decision",
    "annotations.authorization.k8s.io/reason": "authz_reason",
    # short forms
    "resource": "resource",
    "subresource": "subresource",
    "namespace": "namespace",
    "name": "name",
    "apiGroup": "api_group",
    "apiVersion": "api_version",
    "username": "username",
    "user": "username",
    "groups": "groups",
    "sourceIP": "source_ip",
    "src_ip": "source_ip",
    "code": "code",
    "status": "code",
}
_LIST_COLUMNS = {"groups", "source_ips"}
_LEVELS = {
    "informational": "info",
    "low": "low",
    "medium": "medium",
    "high": "high",
    "critical": "critical",
}
_TECHNIQUE = re.compile(r"^t\d{4}(\.\d{3})?$")


class Refused(Exception):
    """A Sigma rule that cannot be converted; the message says why."""


def _column(field: str | None) -> tuple[str, str]:
    """(SQL expression, required level) of a Sigma field."""
    if field is None:
        raise Refused("keyword search (a value without a field) cannot be mapped")
    for prefix, col, level in (
        ("requestObject.", "request_object", "Request"),
        ("responseObject.", "response_object", "RequestResponse"),
    ):
        if field.startswith(prefix):
            path = "$." + field[len(prefix) :]
            return f"json_extract_string({col}, {quote(path)})", level
    from kaudit.query.schema import BY_NAME

    if field in FIELD_MAP:
        return FIELD_MAP[field], "Metadata"
    if field in BY_NAME and field not in ("event", "annotations"):
        return field, "Metadata"
    raise Refused(f"unknown field {field!r} (no flat-schema column for it)")


def _like(value: Any) -> tuple[str, bool]:
    """A SigmaString as an ILIKE pattern; (pattern, has wildcards)."""
    from sigma.types import SpecialChars

    out, wild = [], False
    for part in value.s:
        if part == SpecialChars.WILDCARD_MULTI:
            out.append("%")
            wild = True
        elif part == SpecialChars.WILDCARD_SINGLE:
            out.append("_")
            wild = True
        elif isinstance(part, str):
            out.append(part.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_"))
        else:
            raise Refused(f"placeholder {part!r} in a value cannot be mapped")
    return "".join(out), wild


def _compare(col: str, value: Any) -> str:
    from sigma.types import (
        SigmaBool,
        SigmaNull,
        SigmaNumber,
        SigmaRegularExpression,
        SigmaString,
    )

    is_list = col in _LIST_COLUMNS
    if isinstance(value, SigmaNull):
        return f"len({col}) = 0" if is_list else f"{col} IS NULL"
    if isinstance(value, SigmaString):
        pat, wild = _like(value)
        if wild:
            test = f"x ILIKE {quote(pat)} ESCAPE '\\'"
        else:
            test = f"lower(x) = {quote(str(value.to_plain()).lower())}"
        if is_list:
            return f"len(list_filter({col}, lambda x: {test})) > 0"
        return "coalesce(" + test.replace("x", f"CAST({col} AS VARCHAR)", 1) + ", false)"
    if isinstance(value, SigmaNumber):
        return f"{col} = {value.number}"
    if isinstance(value, SigmaBool):
        return f"CAST({col} AS VARCHAR) = {quote(str(value.boolean).lower())}"
    if isinstance(value, SigmaRegularExpression):
        rx = quote(str(value.regexp))
        if is_list:
            return f"len(list_filter({col}, lambda x: regexp_matches(x, {rx}))) > 0"
        return f"coalesce(regexp_matches({col}, {rx}), false)"
    raise Refused(f"value {value!r} (a modifier without an SQL form here) cannot be mapped")


def _walk(node: Any, levels: list[str]) -> str:
    from sigma.conditions import (
        ConditionAND,
        ConditionFieldEqualsValueExpression,
        ConditionNOT,
        ConditionOR,
        ConditionValueExpression,
    )

    if isinstance(node, ConditionAND):
        return "(" + " AND ".join(_walk(a, levels) for a in node.args) + ")"
    if isinstance(node, ConditionOR):
        return "(" + " OR ".join(_walk(a, levels) for a in node.args) + ")"
    if isinstance(node, ConditionNOT):
        return "NOT " + _walk(node.args[0], levels)
    if isinstance(node, ConditionFieldEqualsValueExpression):
        col, level = _column(node.field)
        levels.append(level)
        return _compare(col, node.value)
    if isinstance(node, ConditionValueExpression):
        raise Refused(f"keyword search (a value without a field: {node.value}) cannot be mapped")
    raise Refused(f"condition element {type(node).__name__} cannot be mapped")


def _slug(text: str) -> str:
    s = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return s or "rule"


def convert_rule(rule: Any) -> dict[str, Any]:
    """One parsed pySigma rule as a kaudit rule mapping; raises :class:`Refused`."""
    from sigma.rule import SigmaRule

    if not isinstance(rule, SigmaRule):
        raise Refused(f"{type(rule).__name__} (correlation/aggregation) is not supported")
    errors = getattr(rule, "errors", [])
    if errors:
        raise Refused("; ".join(str(e) for e in errors))
    ls = rule.logsource
    if ls.product != "kubernetes" or ls.service not in ("audit", None):
        raise Refused(
            f"logsource product={ls.product!r} service={ls.service!r}: expected "
            "product kubernetes, service audit"
        )
    conds = rule.detection.parsed_condition
    if len(conds) != 1:
        raise Refused("more than one condition")
    levels: list[str] = []
    sql = _walk(conds[0].parse(), levels)
    mitre = sorted(
        {
            t.name.upper()
            for t in rule.tags
            if t.namespace == "attack" and _TECHNIQUE.match(t.name.lower())
        }
    )
    if not mitre:
        raise Refused("no ATT&CK technique tag (attack.tNNNN); kaudit rules need one")
    rank = {"Metadata": 0, "Request": 1, "RequestResponse": 2}
    level = max(levels or ["Metadata"], key=rank.__getitem__)
    sev = _LEVELS.get(str(rule.level.name).lower() if rule.level else "medium", "medium")
    out: dict[str, Any] = {
        "id": "sigma." + _slug(rule.title),
        "title": rule.title,
        "description": (rule.description or rule.title).strip(),
        "severity": sev,
        "mitre": mitre,
        "references": [str(r) for r in rule.references],
        "required_level": level,
        "condition": sql,
        "tags": ["sigma", f"sigma-id:{rule.id}"] if rule.id else ["sigma"],
    }
    return out


def convert_text(text: str, source: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(converted [(id, yaml)], refused [(name, reason)]) for one Sigma file."""
    from sigma.collection import SigmaCollection
    from sigma.exceptions import SigmaError

    try:
        coll = SigmaCollection.from_yaml(text, collect_errors=True)
    except (SigmaError, yaml.YAMLError) as exc:
        return [], [(source, f"not a Sigma rule: {exc}")]
    done: list[tuple[str, str]] = []
    refused: list[tuple[str, str]] = []
    for r in coll.rules:
        name = f"{source} ({getattr(r, 'title', '?')})"
        try:
            d = convert_rule(r)
        except Refused as exc:
            refused.append((name, str(exc)))
            continue
        except SigmaError as exc:
            refused.append((name, f"pySigma: {exc}"))
            continue
        body = yaml.safe_dump(d, sort_keys=False, allow_unicode=True, width=100)
        done.append((d["id"], f"# Converted from Sigma: {source}\n{body}"))
    return done, refused


def convert_path(path: Path) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Convert a Sigma file or every ``*.yml``/``*.yaml`` under a directory."""
    files = (
        sorted(p for p in path.rglob("*") if p.suffix in (".yml", ".yaml"))
        if path.is_dir()
        else [path]
    )
    done: list[tuple[str, str]] = []
    refused: list[tuple[str, str]] = []
    for f in files:
        d, r = convert_text(f.read_text(encoding="utf-8"), str(f))
        done += d
        refused += r
    return done, refused
