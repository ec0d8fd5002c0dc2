"""Which requests a rule can match, as sets: containment and covering by earlier rules.

A rule's match set is a product of independent selectors (spec 5.2, 5.3): users,
userGroups, verbs and either the resource side (namespaces x group/resource/name
entries) or the non-resource side (URL specs); a rule with neither matches both
kinds. Rule ``a`` *contains* rule ``b`` when every request ``b`` matches, ``a``
matches too (checked per selector, which is sound: a ``True`` is always right).

:func:`covering_rules` decides whether the earlier rules of a policy together match
everything a later rule matches (so that the later rule can never be reached). It
splits the later rule into *pieces* along its finite selectors (one user, one group,
one verb, one namespace, one resource atom, one URL each), which is exact since a
request matches a list selector exactly when it matches one of its entries, and
looks for a single earlier rule containing each piece. Selectors that are empty
(any value) cannot be split, so a union that covers "any verb" with ``verbs:
[get]`` plus ``verbs: [list, ...]`` is not recognised (reported as not covered:
lint stays quiet rather than wrong).

Resource atoms: ``(group, spec, name)`` where ``spec`` is one of ``r``, ``r/s``,
``*``, ``r/*``, ``*/s`` or ``ALL`` (an entry without resources) and ``name`` is one
name or any. Wildcard semantics are the apiserver's: ``pods/*`` also matches plain
``pods``, ``*/scale`` needs a subresource, ``group: "*"`` matches every group.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import product
from typing import TypeVar

from kaudit.policy.types import GroupResources, PolicyRule

#: Spec for a group entry with no ``resources``: every resource and subresource.
ALL = "\x00all"
#: A name-free atom (the rule has no ``resourceNames`` for it).
ANY_NAME: str | None = None
#: Beyond this many pieces, only single-rule containment is tried.
MAX_PIECES = 20_000

_RESOURCE, _NON_RESOURCE, _BOTH = "resource", "non-resource", "both"
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class Atom:
    """One group, one resource spec, one name (``None``: any name)."""

    group: str
    spec: str
    name: str | None = None


@dataclass(frozen=True, slots=True)
class MatchSet:
    """A rule's selectors as sets; ``None`` means "any"."""

    users: frozenset[str] | None
    groups: frozenset[str] | None
    verbs: frozenset[str] | None
    kind: str  # _RESOURCE, _NON_RESOURCE or _BOTH
    namespaces: frozenset[str] | None
    atoms: frozenset[Atom] | None  # None: every resource of every group
    urls: frozenset[str] | None  # None: every path

    @classmethod
    def of(cls, rule: PolicyRule) -> MatchSet:
        if rule.namespaces or rule.resources:
            kind = _RESOURCE
        elif rule.non_resource_urls:
            kind = _NON_RESOURCE
        else:
            kind = _BOTH
        atoms: frozenset[Atom] | None = None
        if kind == _RESOURCE and rule.resources:
            atoms = frozenset(a for gr in rule.resources for a in atoms_of(gr))
        urls: frozenset[str] | None = None
        if kind == _NON_RESOURCE and "*" not in rule.non_resource_urls:
            urls = frozenset(rule.non_resource_urls)
        return cls(
            _set(rule.users),
            _set(rule.user_groups),
            _set(rule.verbs),
            kind,
            _set(rule.namespaces) if kind == _RESOURCE else None,
            atoms,
            urls,
        )

    def contains(self, other: MatchSet) -> bool:
        """Every request ``other`` matches, ``self`` matches too (sound, per selector)."""
        if not _sub(other.users, self.users):
            return False
        if not _sub(other.groups, self.groups):
            return False
        if not _sub(other.verbs, self.verbs):
            return False
        if self.kind == _BOTH:
            return True
        if self.kind != other.kind:
            return False
        if self.kind == _NON_RESOURCE:
            if self.urls is None:
                return True
            if other.urls is None:
                return False
            return all(any(url_covers(a, b) for a in self.urls) for b in other.urls)
        if not _sub(other.namespaces, self.namespaces):
            return False
        if self.atoms is None:
            return True
        if other.atoms is None:
            return any(atom_covers(a, Atom("*", ALL)) for a in self.atoms)
        return all(any(atom_covers(a, b) for a in self.atoms) for b in other.atoms)

    def pieces(self) -> list[MatchSet] | None:
        """An exact split into single-valued pieces (None if there would be too many)."""
        users = _split(self.users)
        groups = _split(self.groups)
        verbs = _split(self.verbs)
        if self.kind == _BOTH:
            # Every request is either a resource or a non-resource request.
            sides = [
                MatchSet(None, None, None, _RESOURCE, None, None, None),
                MatchSet(None, None, None, _NON_RESOURCE, None, None, None),
            ]
        elif self.kind == _RESOURCE:
            sides = [
                MatchSet(None, None, None, _RESOURCE, ns, at, None)
                for ns, at in product(_split(self.namespaces), _split(self.atoms))
            ]
        else:
            sides = [
                MatchSet(None, None, None, _NON_RESOURCE, None, None, u) for u in _split(self.urls)
            ]
        total = len(users) * len(groups) * len(verbs) * len(sides)
        if total > MAX_PIECES:
            return None
        return [
            MatchSet(u, g, v, s.kind, s.namespaces, s.atoms, s.urls)
            for u, g, v, s in product(users, groups, verbs, sides)
        ]


def _set(values: Iterable[str]) -> frozenset[str] | None:
    s = frozenset(values)
    return s or None


def _sub(inner: frozenset[_T] | None, outer: frozenset[_T] | None) -> bool:
    if outer is None:
        return True
    return inner is not None and inner <= outer


def _split(values: frozenset[_T] | None) -> list[frozenset[_T] | None]:
    if values is None:
        return [None]
    return [frozenset((v,)) for v in sorted(values, key=repr)]


def atoms_of(gr: GroupResources) -> list[Atom]:
    specs = list(gr.resources) or [ALL]
    if not gr.resources or not gr.resource_names:
        # Names are ignored when an entry lists no resources (spec 5.3).
        return [Atom(gr.group, s) for s in specs]
    return [Atom(gr.group, s, n) for s in specs for n in gr.resource_names]


def spec_covers(a: str, b: str) -> bool:
    """Every (resource, subresource) that spec ``b`` matches, spec ``a`` matches."""
    if a in ("*", ALL):
        return True
    if b in ("*", ALL):
        return False
    if a == b:
        return True
    if a.endswith("/*"):
        base = a[:-2]
        return b == base or (b.startswith(base + "/") and not b.startswith("*/"))
    if a.startswith("*/"):
        # Only concrete "r/s" specs: "r/*" also matches other subresources and bare r.
        return "/" in b and not b.endswith("/*") and b.split("/", 1)[1] == a[2:]
    return False


def atom_covers(a: Atom, b: Atom) -> bool:
    if a.group != "*" and a.group != b.group:
        return False
    if a.spec != ALL and a.name is not None and (b.name is None or b.name != a.name):
        return False
    return spec_covers(a.spec, b.spec)


def url_covers(a: str, b: str) -> bool:
    """Every path URL spec ``b`` matches, spec ``a`` matches."""
    if a == "*":
        return True
    if b == "*":
        return False
    if a.endswith("*"):
        return b.startswith(a.rstrip("*"))
    return not b.endswith("*") and a == b


def covering_rules(
    rule: PolicyRule | MatchSet, earlier: Sequence[tuple[int, PolicyRule | MatchSet]]
) -> list[int] | None:
    """Indexes of earlier rules that together match everything ``rule`` matches.

    A single rule containing ``rule`` is preferred (and returned alone); otherwise each
    piece of ``rule`` must be contained in one earlier rule. None when not covered.
    """
    target = rule if isinstance(rule, MatchSet) else MatchSet.of(rule)
    sets = [(i, r if isinstance(r, MatchSet) else MatchSet.of(r)) for i, r in earlier]
    for i, s in sets:
        if s.contains(target):
            return [i]
    pieces = target.pieces()
    if pieces is None or len(pieces) < 2:
        return None
    used: list[int] = []
    for piece in pieces:
        for i, s in sets:
            if s.contains(piece):
                if i not in used:
                    used.append(i)
                break
        else:
            return None
    return sorted(used)


__all__ = [
    "ALL",
    "Atom",
    "MatchSet",
    "atom_covers",
    "atoms_of",
    "covering_rules",
    "spec_covers",
    "url_covers",
]
