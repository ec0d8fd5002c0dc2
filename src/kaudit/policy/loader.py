"""Reading a policy file: YAML or JSON, strictly, only audit.k8s.io/v1 (spec 5.5).

The apiserver decodes a policy strictly and, when the only problems are unknown or
duplicate fields, **falls back to lenient decoding** that silently drops them (a
``verbs`` indented under a ``resources`` item is lost and the rule then matches
every verb). kaudit never falls back: every unknown field, duplicate key and wrong
type is an error with ``file:line:col`` and, where one is close, a suggestion.
Every problem is reported at once (:class:`~kaudit.errors.PolicyDecodeError`'s
``problems``).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

import yaml

from kaudit.errors import Location, PolicyDecodeError, PolicyError, PolicyInvalidError
from kaudit.policy.types import (
    POLICY_API_VERSION,
    POLICY_KIND,
    GroupResources,
    Policy,
    PolicyRule,
)
from kaudit.policy.validation import validate

#: Said after decode errors that the apiserver would have let through.
LENIENT_HINT = (
    "the apiserver itself would only log 'Audit policy contains errors, falling back to "
    "lenient decoding' and silently drop these fields, changing what the rules match; "
    "kaudit is strict so that this cannot go unnoticed"
)

REMOVED_VERSIONS = ("audit.k8s.io/v1beta1", "audit.k8s.io/v1alpha1")

_POLICY_FIELDS = ("apiVersion", "kind", "metadata", "rules", "omitStages", "omitManagedFields")
_RULE_FIELDS = (
    "level",
    "users",
    "userGroups",
    "verbs",
    "resources",
    "namespaces",
    "nonResourceURLs",
    "omitStages",
    "omitManagedFields",
)
_GROUP_RESOURCES_FIELDS = ("group", "resources", "resourceNames")
_OBJECT_META_FIELDS = (
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
)
_OWNERS = {"": "Policy", "rule": "PolicyRule", "gr": "GroupResources", "meta": "ObjectMeta"}

_NULL = "tag:yaml.org,2002:null"
_STR = "tag:yaml.org,2002:str"
_BOOL = "tag:yaml.org,2002:bool"
_T = TypeVar("_T")


def load_policy(path: str | Path, *, check: bool = True) -> Policy:
    """Read, decode and (unless ``check=False``) validate the policy file at ``path``.

    Raises :class:`PolicyDecodeError` (syntax, fields, version), :class:`PolicyInvalidError`
    (apiserver validation, zero rules) or :class:`PolicyError` (cannot read the file).
    """
    source = str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise PolicyError(f"cannot read policy file: {exc.strerror}", Location(source)) from None
    return load_policy_bytes(data, source, check=check)


def load_policy_bytes(data: bytes | str, source: str = "<policy>", *, check: bool = True) -> Policy:
    """Decode a policy from YAML or JSON text; see :func:`load_policy`."""
    policy = decode_policy(data, source)
    if check:
        errors = validate(policy)
        if not policy.rules:
            errors.append("loaded illegal policy with 0 rules")
        if errors:
            raise PolicyInvalidError(errors, source)
    return policy


def decode_policy(data: bytes | str, source: str = "<policy>") -> Policy:
    """Decode (strictly) without validating. Raises :class:`PolicyDecodeError`."""
    if isinstance(data, bytes):
        if data.startswith(b"\xef\xbb\xbf"):
            data = data[3:]
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _fail(
                [f"{source}: not UTF-8 text (byte {exc.start}): expected YAML or JSON"]
            ) from None
    else:
        text = data
    if text.lstrip().startswith("{"):
        # JSON allows tabs between tokens, YAML's flow style does not; a tab can only
        # appear escaped inside a JSON string, so replacing them keeps every column.
        text = text.replace("\t", " ")
    try:
        docs = list(yaml.compose_all(text, Loader=yaml.SafeLoader))
    except yaml.MarkedYAMLError as exc:
        raise _fail([_yaml_problem(source, exc)]) from None
    except yaml.YAMLError as exc:  # pragma: no cover - PyYAML marks all it raises
        raise _fail([f"{source}: invalid YAML: {exc}"]) from None
    docs = [d for d in docs if d is not None and not _is_null(d)]
    if not docs:
        raise _fail(
            [
                f"{source}: the policy file is empty: expected an audit.k8s.io/v1 Policy "
                "(apiVersion: audit.k8s.io/v1, kind: Policy, rules: [...])"
            ]
        )
    if len(docs) > 1:
        m = docs[1].start_mark
        raise _fail(
            [
                f"{source}:{m.line + 1}:{m.column + 1}: more than one YAML document: a policy "
                "file holds exactly one Policy (the apiserver would read only the first)"
            ]
        )
    return _Decoder(source).policy(docs[0])


def decode_problems_are_lenient(problems: Iterable[str]) -> bool:
    """True when the apiserver would have accepted these problems by lenient decoding."""
    return any(("unknown field" in p or "duplicate field" in p) for p in problems)


def _fail(problems: list[str]) -> PolicyDecodeError:
    first = problems[0]
    return PolicyDecodeError(first, None, problems)


def _yaml_problem(source: str, exc: yaml.MarkedYAMLError) -> str:
    mark = exc.problem_mark or exc.context_mark
    where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
    what = exc.problem or "syntax error"
    if exc.context:
        what = f"{what} ({exc.context})"
    return f"{where}: invalid YAML: {what}"


def _suggest(key: str, known: Iterable[str]) -> str | None:
    known = list(known)
    for k in known:
        if k.lower() == key.lower():
            return k
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    return close[0] if close else None


class _Decoder:
    """Walks the composed YAML nodes with the v1 schema, collecting every problem."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.found: list[tuple[int, int, str]] = []
        self.positions: dict[str, tuple[int, int]] = {}

    # --- reporting ----------------------------------------------------------------

    def _at(self, node: yaml.Node) -> str:
        m = node.start_mark
        return f"{self.source}:{m.line + 1}:{m.column + 1}"

    def problem(self, node: yaml.Node, path: str, message: str) -> None:
        prefix = f"{path}: " if path else ""
        m = node.start_mark
        self.found.append((m.line, m.column, f"{self._at(node)}: {prefix}{message}"))

    @property
    def problems(self) -> list[str]:
        """Every problem found so far, in file order."""
        return [text for _, _, text in sorted(self.found, key=lambda f: (f[0], f[1]))]

    def _mark(self, path: str, node: yaml.Node) -> None:
        m = node.start_mark
        self.positions[path] = (m.line + 1, m.column + 1)

    # --- generic shapes -----------------------------------------------------------

    def mapping(
        self, node: yaml.Node, path: str, known: tuple[str, ...], owner: str
    ) -> dict[str, yaml.Node] | None:
        if _is_null(node):
            return {}
        if not isinstance(node, yaml.MappingNode):
            what = "a Policy" if owner == "" else f"a {_OWNERS[owner]} object"
            self.problem(node, path, f"expected {what} (a mapping), got {_describe(node)}")
            return None
        fields: dict[str, yaml.Node] = {}
        key_nodes: dict[str, yaml.Node] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else None
            if key is None:
                self.problem(key_node, path, f"expected a field name, got {_describe(key_node)}")
                continue
            child = f"{path}.{key}" if path else key
            if key in key_nodes:
                first = key_nodes[key].start_mark.line + 1
                self.problem(
                    key_node, child, f'duplicate field "{key}" (first set on line {first})'
                )
                continue
            key_nodes[key] = key_node
            if key not in known:
                self.problem(key_node, child, self._unknown(key, known, owner, path))
                continue
            fields[key] = value_node
            self._mark(child, value_node)
        return fields

    def _unknown(self, key: str, known: tuple[str, ...], owner: str, path: str) -> str:
        msg = f'unknown field "{key}"'
        guess = _suggest(key, known)
        if guess is not None:
            return f'{msg} (did you mean "{guess}"?)'
        if owner == "gr" and key in _RULE_FIELDS:
            rule = path.rsplit(".resources", 1)[0]
            return (
                f'{msg} ("{key}" is a field of the rule {rule}, not of a resources entry: '
                "check its indentation)"
            )
        if owner == "rule" and key in _GROUP_RESOURCES_FIELDS:
            return f'{msg} ("{key}" belongs inside a resources entry: resources: [{{{key}: ...}}])'
        if owner == "" and key in _RULE_FIELDS:
            return f'{msg} ("{key}" is a rule field: put it under rules: [...])'
        return f"{msg} (known fields: {', '.join(known)})"

    def string(self, node: yaml.Node | None, path: str) -> str:
        if node is None or _is_null(node):
            return ""
        if isinstance(node, yaml.ScalarNode) and node.tag == _STR:
            return str(node.value)
        # As the apiserver: YAML becomes JSON, and a number or boolean does not decode
        # into a string field (quote it: "5").
        self.problem(node, path, f"expected a string, got {_describe(node)}")
        return ""

    def boolean(self, node: yaml.Node | None, path: str) -> bool | None:
        if node is None or _is_null(node):
            return None
        if isinstance(node, yaml.ScalarNode) and node.tag == _BOOL:
            return str(node.value).lower() in ("true", "yes", "on", "y")
        self.problem(node, path, f"expected a boolean (true or false), got {_describe(node)}")
        return None

    def strings(self, node: yaml.Node | None, path: str) -> tuple[str, ...]:
        return self.seq(node, path, "strings", self.string)

    def seq(
        self,
        node: yaml.Node | None,
        path: str,
        what: str,
        item: Callable[[yaml.Node, str], _T],
    ) -> tuple[_T, ...]:
        if node is None or _is_null(node):
            return ()
        if not isinstance(node, yaml.SequenceNode):
            msg = f"expected a list of {what}, got {_describe(node)}"
            if isinstance(node, yaml.ScalarNode) and what == "strings":
                msg += f' (write ["{node.value}"])'
            self.problem(node, path, msg)
            return ()
        out = []
        for i, child in enumerate(node.value):
            child_path = f"{path}[{i}]"
            self._mark(child_path, child)
            out.append(item(child, child_path))
        return tuple(out)

    # --- the schema ---------------------------------------------------------------

    def policy(self, root: yaml.Node) -> Policy:
        self._mark("", root)
        fields = self.mapping(root, "", _POLICY_FIELDS, "")
        if fields is None:
            raise _fail(self.problems)
        self._check_type_meta(root, fields)
        if "metadata" in fields:
            self.mapping(fields["metadata"], "metadata", _OBJECT_META_FIELDS, "meta")
        rules = self.seq(fields.get("rules"), "rules", "rules", self.rule)
        omit_stages = self.strings(fields.get("omitStages"), "omitStages")
        omf = self.boolean(fields.get("omitManagedFields"), "omitManagedFields")
        if self.problems:
            raise _fail(self.problems)
        return Policy(
            rules=rules,
            omit_stages=omit_stages,
            omit_managed_fields=bool(omf),
            source=self.source,
            positions=self.positions,
        )

    def _check_type_meta(self, root: yaml.Node, fields: dict[str, yaml.Node]) -> None:
        av_node, kind_node = fields.get("apiVersion"), fields.get("kind")
        api_version = self.string(av_node, "apiVersion")
        kind = self.string(kind_node, "kind")
        expected = f"expected apiVersion: {POLICY_API_VERSION} and kind: {POLICY_KIND}"
        if not api_version:
            self.problem(
                av_node or root,
                "",
                "unknown group version field audit.k8s.io/__internal, Kind=Policy in policy "
                f"(the apiserver's words for a file without apiVersion{'' if kind else '/kind'}: "
                f"{expected})",
            )
            return
        if api_version in REMOVED_VERSIONS:
            assert av_node is not None
            self.problem(
                av_node,
                "apiVersion",
                f'"{api_version}" is no longer accepted: audit.k8s.io/v1alpha1 and v1beta1 '
                f"were removed in Kubernetes 1.24 (the apiserver fails with 'no kind "
                f'"Policy" is registered for version "{api_version}"\'); change it to '
                f"apiVersion: {POLICY_API_VERSION}, the rule fields are the same",
            )
        elif api_version != POLICY_API_VERSION:
            assert av_node is not None
            self.problem(
                av_node,
                "apiVersion",
                f'unsupported value "{api_version}": {expected}',
            )
        if not kind:
            self.problem(kind_node or root, "kind", f'missing: expected "{POLICY_KIND}"')
        elif kind != POLICY_KIND:
            assert kind_node is not None
            self.problem(kind_node, "kind", f'unsupported value "{kind}": expected "Policy"')

    def rule(self, node: yaml.Node, path: str) -> PolicyRule:
        f = self.mapping(node, path, _RULE_FIELDS, "rule")
        if f is None:
            return PolicyRule()
        return PolicyRule(
            level=self.string(f.get("level"), f"{path}.level"),
            users=self.strings(f.get("users"), f"{path}.users"),
            user_groups=self.strings(f.get("userGroups"), f"{path}.userGroups"),
            verbs=self.strings(f.get("verbs"), f"{path}.verbs"),
            resources=self.seq(
                f.get("resources"), f"{path}.resources", "GroupResources", self.group_resources
            ),
            namespaces=self.strings(f.get("namespaces"), f"{path}.namespaces"),
            non_resource_urls=self.strings(f.get("nonResourceURLs"), f"{path}.nonResourceURLs"),
            omit_stages=self.strings(f.get("omitStages"), f"{path}.omitStages"),
            omit_managed_fields=self.boolean(
                f.get("omitManagedFields"), f"{path}.omitManagedFields"
            ),
        )

    def group_resources(self, node: yaml.Node, path: str) -> GroupResources:
        f = self.mapping(node, path, _GROUP_RESOURCES_FIELDS, "gr")
        if f is None:
            return GroupResources()
        return GroupResources(
            group=self.string(f.get("group"), f"{path}.group"),
            resources=self.strings(f.get("resources"), f"{path}.resources"),
            resource_names=self.strings(f.get("resourceNames"), f"{path}.resourceNames"),
        )


def _is_null(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == _NULL


def _describe(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    tag = str(node.tag).rsplit(":", 1)[-1]
    kind = {"str": "a string", "int": "a number", "float": "a number", "bool": "a boolean"}
    return f'{kind.get(tag, "a " + tag)} "{node.value}"'


__all__ = [
    "LENIENT_HINT",
    "REMOVED_VERSIONS",
    "decode_policy",
    "decode_problems_are_lenient",
    "load_policy",
    "load_policy_bytes",
]
