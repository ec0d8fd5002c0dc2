"""audit.k8s.io/v1 ``Policy``, ``PolicyRule`` and ``GroupResources`` (spec 5.1, 5.2).

Python names are snake_case; :meth:`Policy.to_dict` gives the v1 JSON names
(``omitStages``, ``userGroups``, ``nonResourceURLs``, ``resourceNames``...).

``PolicyRule.omit_managed_fields`` is ``None`` when the field is absent, which is not
the same as ``False``: absent means "use the policy's value", ``false`` overrides a
policy-wide ``true`` (spec 5.4).

A policy read from a file remembers where each field was (``positions``: field path
to 1-based line and column) so that errors can say ``file:line:col``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

POLICY_API_VERSION = "audit.k8s.io/v1"
POLICY_KIND = "Policy"


@dataclass(frozen=True, slots=True)
class GroupResources:
    """``rules[i].resources[j]``: a group and, optionally, resources and names in it."""

    group: str = ""
    resources: tuple[str, ...] = ()
    resource_names: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.group:
            out["group"] = self.group
        if self.resources:
            out["resources"] = list(self.resources)
        if self.resource_names:
            out["resourceNames"] = list(self.resource_names)
        return out


@dataclass(frozen=True, slots=True)
class PolicyRule:
    """One rule; every populated selector must match (spec 5.2)."""

    level: str = ""
    users: tuple[str, ...] = ()
    user_groups: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ()
    resources: tuple[GroupResources, ...] = ()
    namespaces: tuple[str, ...] = ()
    non_resource_urls: tuple[str, ...] = ()
    omit_stages: tuple[str, ...] = ()
    omit_managed_fields: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"level": self.level}
        for name, key in _RULE_LISTS:
            value = getattr(self, name)
            if value:
                out[key] = list(value)
        if self.resources:
            out["resources"] = [g.to_dict() for g in self.resources]
        if self.omit_managed_fields is not None:
            out["omitManagedFields"] = self.omit_managed_fields
        return out


_RULE_LISTS = (
    ("users", "users"),
    ("user_groups", "userGroups"),
    ("verbs", "verbs"),
    ("namespaces", "namespaces"),
    ("non_resource_urls", "nonResourceURLs"),
    ("omit_stages", "omitStages"),
)


@dataclass(frozen=True, slots=True)
class Policy:
    """An audit policy: ordered rules, the first match wins (spec 5.1, 5.3)."""

    rules: tuple[PolicyRule, ...] = ()
    omit_stages: tuple[str, ...] = ()
    omit_managed_fields: bool = False
    source: str | None = field(default=None, compare=False)
    positions: Mapping[str, tuple[int, int]] = field(
        default_factory=dict, compare=False, repr=False
    )

    def to_dict(self) -> dict[str, Any]:
        """The policy as audit.k8s.io/v1 JSON data (empty fields left out)."""
        out: dict[str, Any] = {"apiVersion": POLICY_API_VERSION, "kind": POLICY_KIND}
        if self.rules:
            out["rules"] = [r.to_dict() for r in self.rules]
        if self.omit_stages:
            out["omitStages"] = list(self.omit_stages)
        if self.omit_managed_fields:
            out["omitManagedFields"] = True
        return out

    def position(self, path: str) -> tuple[int, int] | None:
        """Line and column (1-based) of the field at ``path``, or of its nearest parent."""
        while path:
            pos = self.positions.get(path)
            if pos is not None:
                return pos
            cut = max(path.rfind("."), path.rfind("["))
            if cut <= 0:
                break
            path = path[:cut]
        return self.positions.get("")

    def where(self, path: str) -> str:
        """``source:line:col`` for ``path`` (what is known of it), or ``""``."""
        if self.source is None:
            return ""
        pos = self.position(path)
        if pos is None:
            return self.source
        return f"{self.source}:{pos[0]}:{pos[1]}"


__all__ = ["POLICY_API_VERSION", "POLICY_KIND", "GroupResources", "Policy", "PolicyRule"]
