"""Policy evaluation: first matching rule wins, exact wildcard semantics (spec 5.3, 5.4).

:class:`Evaluator` compiles the rules once (selectors become frozensets, the
policy's ``omitStages`` are unioned into each rule, each rule's :class:`Decision` is
built ahead of time) and caches decisions per :class:`Attributes` with a bounded
dict, so repeated traffic costs one hash lookup.

:meth:`Evaluator.explain` says, for each rule up to the one that matched, why it did
or did not match (``kaudit policy eval --explain``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from itertools import islice
from typing import NamedTuple

from kaudit.model.types import LEVEL_NONE
from kaudit.policy.attributes import Attributes
from kaudit.policy.types import GroupResources, Policy, PolicyRule

DEFAULT_CACHE_SIZE = 65_536


class Decision(NamedTuple):
    """What the policy says about one request."""

    level: str
    omit_stages: frozenset[str]
    omit_managed_fields: bool
    rule_index: int | None


_MATCH_ALL, _RESOURCE, _NON_RESOURCE = 0, 1, 2


class _Resources(NamedTuple):
    group: str
    all: bool  # no resources listed: the whole group
    names: frozenset[str]
    any: bool  # "*"
    exact: frozenset[str]  # "pods", "pods/log"
    sub_wild: frozenset[str]  # "*/scale" -> "scale"
    res_wild: frozenset[str]  # "pods/*" -> "pods"


class _Rule(NamedTuple):
    users: frozenset[str] | None
    groups: frozenset[str] | None
    verbs: frozenset[str] | None
    mode: int
    namespaces: frozenset[str] | None
    resources: tuple[_Resources, ...]
    url_all: bool
    url_exact: frozenset[str]
    url_prefixes: tuple[str, ...]
    decision: Decision


def _set(values: Iterable[str]) -> frozenset[str] | None:
    s = frozenset(values)
    return s or None


def _compile_resources(gr: GroupResources) -> _Resources:
    rs = gr.resources
    return _Resources(
        gr.group,
        not rs,
        frozenset(gr.resource_names),
        "*" in rs,
        frozenset(rs),
        frozenset(r[2:] for r in rs if r.startswith("*/")),
        frozenset(r[:-2] for r in rs if r.endswith("/*")),
    )


def _compile(index: int, rule: PolicyRule, policy: Policy) -> _Rule:
    if rule.namespaces or rule.resources:
        mode = _RESOURCE
    elif rule.non_resource_urls:
        mode = _NON_RESOURCE
    else:
        mode = _MATCH_ALL
    urls = rule.non_resource_urls
    omf = rule.omit_managed_fields
    decision = Decision(
        rule.level,
        frozenset(policy.omit_stages) | frozenset(rule.omit_stages),
        policy.omit_managed_fields if omf is None else omf,
        index,
    )
    return _Rule(
        _set(rule.users),
        _set(rule.user_groups),
        _set(rule.verbs),
        mode,
        _set(rule.namespaces),
        tuple(_compile_resources(g) for g in rule.resources),
        "*" in urls,
        frozenset(urls),
        tuple(u.rstrip("*") for u in urls if u.endswith("*")),
        decision,
    )


def _match_resources(entries: tuple[_Resources, ...], a: Attributes) -> bool:
    sub = a.subresource
    combined = f"{a.resource}/{sub}" if sub else a.resource
    for e in entries:
        if e.group != a.api_group and e.group != "*":
            continue
        if e.all:
            return True
        if e.names and a.name not in e.names:
            continue
        if e.any or combined in e.exact or a.resource in e.res_wild:
            return True
        if sub and sub in e.sub_wild:
            return True
    return False


def _matches(r: _Rule, a: Attributes) -> bool:
    user = a.user
    if r.users is not None and (user is None or user.name not in r.users):
        return False
    if r.groups is not None:
        if user is None or r.groups.isdisjoint(user.groups):
            return False
    if r.verbs is not None and a.verb not in r.verbs:
        return False
    mode = r.mode
    if mode == _MATCH_ALL:
        return True
    if mode == _RESOURCE:
        if not a.resource_request:
            return False
        if r.namespaces is not None and a.namespace not in r.namespaces:
            return False
        return not r.resources or _match_resources(r.resources, a)
    if a.resource_request:
        return False
    path = a.path
    if r.url_all or path in r.url_exact:
        return True
    return any(path.startswith(p) for p in r.url_prefixes)


class Evaluator:
    """Evaluates one policy; thread-compatible (the cache is a plain dict)."""

    def __init__(self, policy: Policy, *, cache_size: int = DEFAULT_CACHE_SIZE) -> None:
        self.policy = policy
        self._rules = tuple(_compile(i, r, policy) for i, r in enumerate(policy.rules))
        self.default = Decision(
            LEVEL_NONE, frozenset(policy.omit_stages), policy.omit_managed_fields, None
        )
        self._cache: dict[Attributes, Decision] = {}
        self._cap = max(1, cache_size)

    def evaluate(self, attrs: Attributes) -> Decision:
        """The decision for ``attrs``: the first matching rule's, else level None."""
        try:
            return self._cache[attrs]
        except KeyError:
            pass
        decision = self.evaluate_uncached(attrs)
        cache = self._cache
        if len(cache) >= self._cap:
            # Evict the oldest quarter (dicts keep insertion order).
            for key in list(islice(cache, max(1, self._cap // 4))):
                del cache[key]
        cache[attrs] = decision
        return decision

    def evaluate_uncached(self, attrs: Attributes) -> Decision:
        for r in self._rules:
            if _matches(r, attrs):
                return r.decision
        return self.default

    def explain(self, attrs: Attributes) -> list[RuleTrace]:
        """Why each rule, up to the first that matches, did or did not match."""
        out = []
        for i, rule in enumerate(self.policy.rules):
            ok, reason = explain_rule(rule, attrs)
            out.append(RuleTrace(i, ok, reason))
            if ok:
                break
        return out


@dataclass(frozen=True, slots=True)
class RuleTrace:
    index: int
    matched: bool
    reason: str


def _list(values: Iterable[str]) -> str:
    return "[" + ", ".join(f'"{v}"' for v in values) + "]"


def explain_rule(rule: PolicyRule, a: Attributes) -> tuple[bool, str]:
    """Whether ``rule`` matches ``a`` and, in words, why (the first deciding selector)."""
    said: list[str] = []
    if rule.users:
        if a.user is None:
            return False, f"users {_list(rule.users)}: the request has no user"
        if a.user.name not in rule.users:
            return False, f'users: "{a.user.name}" is not in {_list(rule.users)}'
        said.append(f'user "{a.user.name}"')
    if rule.user_groups:
        if a.user is None:
            return False, f"userGroups {_list(rule.user_groups)}: the request has no user"
        common = [g for g in a.user.groups if g in rule.user_groups]
        if not common:
            return False, (
                f"userGroups: none of the user's groups {_list(a.user.groups)} is in "
                f"{_list(rule.user_groups)}"
            )
        said.append(f'group "{common[0]}"')
    if rule.verbs:
        if a.verb not in rule.verbs:
            return False, f'verbs: "{a.verb}" is not in {_list(rule.verbs)}'
        said.append(f'verb "{a.verb}"')
    if rule.namespaces or rule.resources:
        if not a.resource_request:
            return False, f'resources/namespaces: "{a.path}" is a non-resource request'
        if rule.namespaces:
            if a.namespace not in rule.namespaces:
                ns = f'"{a.namespace}"' if a.namespace else '"" (cluster-scoped or all namespaces)'
                return False, f"namespaces: {ns} is not in {_list(rule.namespaces)}"
            said.append(f'namespace "{a.namespace}"')
        if rule.resources:
            why = _explain_resources(rule.resources, a)
            if why is None:
                combined = f"{a.resource}/{a.subresource}" if a.subresource else a.resource
                group = a.api_group or '"" (core)'
                return False, (
                    f"resources: {combined} in group {group}"
                    + (f' named "{a.name}"' if a.name else "")
                    + " is not matched by any entry"
                )
            said.append(why)
    elif rule.non_resource_urls:
        if a.resource_request:
            return False, "nonResourceURLs: this is a resource request"
        spec = next(
            (
                u
                for u in rule.non_resource_urls
                if u == "*" or u == a.path or (u.endswith("*") and a.path.startswith(u.rstrip("*")))
            ),
            None,
        )
        if spec is None:
            return (
                False,
                f'nonResourceURLs: "{a.path}" matches none of {_list(rule.non_resource_urls)}',
            )
        said.append(f'path "{a.path}" by "{spec}"')
    if not said:
        return True, "the rule has no selectors: it matches every request"
    return True, "matched: " + ", ".join(said)


def _explain_resources(entries: tuple[GroupResources, ...], a: Attributes) -> str | None:
    for j, gr in enumerate(entries):
        entry = _compile_resources(gr)
        if _match_resources((entry,), a):
            shown = gr.group or '""'
            if not gr.resources:
                return f"resources[{j}]: every resource of group {shown}"
            return f"resources[{j}]: group {shown}, resources {_list(gr.resources)}"
    return None


__all__ = ["DEFAULT_CACHE_SIZE", "Decision", "Evaluator", "RuleTrace", "explain_rule"]
