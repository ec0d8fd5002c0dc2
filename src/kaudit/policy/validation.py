"""Policy validation with the apiserver's field paths and messages, verbatim (spec 5.6).

:func:`validate` returns every error at once, in the apiserver's order: policy
``omitStages``, then for each rule its level, nonResourceURLs, resources (group,
resourceNames), omitStages and the "both kinds" check. Messages are rendered as
apimachinery's ``field.Error`` does: string values Go-quoted (``%q``), the level and
list values as compact JSON.

:func:`check` gives the same errors as :class:`FieldError` objects that also carry a
``hint`` (kaudit's own advice, never part of the verbatim message) and the exact
field (``locator``) for ``file:line:col``, since some apiserver paths have no index.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

from kaudit.model.types import LEVELS, STAGES
from kaudit.policy.types import Policy, PolicyRule

_DNS1123_SUBDOMAIN_FMT = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
_DNS1123_SUBDOMAIN = re.compile(_DNS1123_SUBDOMAIN_FMT)
_DNS1123_SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
    "'-' or '.', and must start and end with an alphanumeric character"
)
_DNS1123_SUBDOMAIN_MAX = 253
_STAGES_DETAIL = "allowed stages are " + ",".join(STAGES)


@dataclass(frozen=True, slots=True)
class FieldError:
    """One validation error: ``message`` is exactly what the apiserver says."""

    path: str
    message: str
    hint: str | None = None
    locator: str = ""

    def __str__(self) -> str:
        return self.message


def validate(policy: Policy) -> list[str]:
    """Every validation error of ``policy``, verbatim, in the apiserver's order."""
    return [e.message for e in check(policy)]


def check(policy: Policy) -> list[FieldError]:
    """Like :func:`validate`, with hints and exact locators."""
    errs: list[FieldError] = []
    errs += _omit_stages(policy.omit_stages, "omitStages")
    for i, rule in enumerate(policy.rules):
        errs += _rule(rule, f"rules[{i}]")
    return errs


def _rule(rule: PolicyRule, path: str) -> list[FieldError]:
    errs: list[FieldError] = []
    level_path = f"{path}.level"
    if rule.level == "":
        errs.append(
            FieldError(
                level_path,
                f"{level_path}: Required value",
                f"set level to one of {', '.join(LEVELS)}",
                level_path,
            )
        )
    elif rule.level not in LEVELS:
        supported = ", ".join(go_quote(v) for v in LEVELS)
        errs.append(
            FieldError(
                level_path,
                f"{level_path}: Unsupported value: {go_json(rule.level)}: "
                f"supported values: {supported}",
                _did_you_mean(rule.level, LEVELS),
                level_path,
            )
        )
    urls_path = f"{path}.nonResourceURLs"
    for j, url in enumerate(rule.non_resource_urls):
        if url == "*":
            continue
        p = f"{urls_path}[{j}]"
        if not url.startswith("/"):
            errs.append(
                FieldError(
                    p,
                    _invalid(
                        p, go_quote(url), "non-resource URL rules must begin with a '/' character"
                    ),
                    f'write "/{url}"' if url and not url.startswith("*") else None,
                    p,
                )
            )
        if url and "*" in url[:-1]:
            errs.append(
                FieldError(
                    p,
                    _invalid(
                        p,
                        go_quote(url),
                        "non-resource URL wildcards '*' must be the final character of the rule",
                    ),
                    "a '*' only works as a prefix match at the end, e.g. \"/logs/*\"",
                    p,
                )
            )
    res_path = f"{path}.resources"
    for j, gr in enumerate(rule.resources):
        if gr.group and gr.group != "*":
            msgs = _dns1123_subdomain(gr.group)
            if msgs:
                p = f"{res_path}.group"
                errs.append(
                    FieldError(
                        p,
                        _invalid(p, go_quote(gr.group), ",".join(msgs)),
                        _group_hint(gr.group),
                        f"{res_path}[{j}].group",
                    )
                )
        if gr.resource_names and not gr.resources:
            p = f"{res_path}.resourceNames"
            errs.append(
                FieldError(
                    p,
                    _invalid(
                        p,
                        go_json(list(gr.resource_names)),
                        "using resourceNames requires at least one resource",
                    ),
                    'name the resources these names belong to, e.g. resources: ["configmaps"]',
                    f"{res_path}[{j}].resourceNames",
                )
            )
    errs += _omit_stages(rule.omit_stages, f"{path}.omitStages")
    if rule.non_resource_urls and (rule.resources or rule.namespaces):
        errs.append(
            FieldError(
                urls_path,
                _invalid(
                    urls_path,
                    go_json(list(rule.non_resource_urls)),
                    "rules cannot apply to both regular resources and non-resource URLs",
                ),
                "split it into two rules: one with resources/namespaces, one with nonResourceURLs",
                urls_path,
            )
        )
    return errs


def _omit_stages(stages: Sequence[str], path: str) -> list[FieldError]:
    errs = []
    for k, stage in enumerate(stages):
        if stage not in STAGES:
            p = f"{path}[{k}]"
            errs.append(
                FieldError(
                    p, _invalid(p, go_quote(stage), _STAGES_DETAIL), _did_you_mean(stage, STAGES), p
                )
            )
    return errs


def _invalid(path: str, value: str, detail: str) -> str:
    return f"{path}: Invalid value: {value}: {detail}"


def _dns1123_subdomain(value: str) -> list[str]:
    msgs = []
    if len(value.encode("utf-8")) > _DNS1123_SUBDOMAIN_MAX:
        msgs.append(f"must be no more than {_DNS1123_SUBDOMAIN_MAX} characters")
    if not _DNS1123_SUBDOMAIN.fullmatch(value):
        msgs.append(
            f"{_DNS1123_SUBDOMAIN_MSG} (e.g. 'example.com', regex used for validation is "
            f"'{_DNS1123_SUBDOMAIN_FMT}')"
        )
    return msgs


def _group_hint(group: str) -> str | None:
    if "/" in group:
        head = group.split("/", 1)[0]
        return f'group is the API group without its version: write "{head}"'
    if group.lower() != group and _DNS1123_SUBDOMAIN.fullmatch(group.lower()):
        return f'API groups are lower case: write "{group.lower()}"'
    return None


def _did_you_mean(value: str, allowed: Sequence[str]) -> str | None:
    for a in allowed:
        if a.lower() == value.lower():
            return f'did you mean "{a}"? (values are case-sensitive)'
    lowered = {a.lower(): a for a in allowed}
    close = difflib.get_close_matches(value.lower(), list(lowered), n=1, cutoff=0.6)
    if close:
        return f'did you mean "{lowered[close[0]]}"?'
    return None


# --- Go's renderings ---------------------------------------------------------------

_GO_ESCAPES = {
    "\a": "\\a",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\v": "\\v",
    "\\": "\\\\",
    '"': '\\"',
}


def go_quote(s: str) -> str:
    """Go's ``strconv.Quote`` (``%q``) of a string."""
    out = ['"']
    for ch in s:
        esc = _GO_ESCAPES.get(ch)
        if esc is not None:
            out.append(esc)
            continue
        cp = ord(ch)
        if 0xD800 <= cp <= 0xDFFF:  # lone surrogate: Go sees invalid UTF-8
            out.append("\\ufffd")
        elif cp < 0x20 or cp == 0x7F:
            out.append(f"\\x{cp:02x}")
        elif ch.isprintable():
            out.append(ch)
        elif cp < 0x10000:
            out.append(f"\\u{cp:04x}")
        else:
            out.append(f"\\U{cp:08x}")
    out.append('"')
    return "".join(out)


_JSON_HTML = (
    ("<", "\\u003c"),
    (">", "\\u003e"),
    ("&", "\\u0026"),
    ("\u2028", "\\u2028"),
    ("\u2029", "\\u2029"),
)


def go_json(value: object) -> str:
    """Compact JSON as Go's ``json.Marshal`` writes it (HTML characters escaped)."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    for raw, esc in _JSON_HTML:
        text = text.replace(raw, esc)
    return text


__all__ = ["FieldError", "check", "go_json", "go_quote", "validate"]
