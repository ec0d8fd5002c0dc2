"""What a policy rule looks at: the authorizer attributes of a request (spec 7).

:class:`Attributes` is a named tuple, so it hashes and compares at C speed and can
key the evaluator's decision cache. Build one from an HTTP request with
:func:`from_http` (the apiserver's RequestInfo, spec 7.1) or from a captured audit
event with :func:`from_event` (spec 7.2).
"""

from __future__ import annotations

from typing import Any, NamedTuple
from urllib.parse import unquote, urlsplit

from kaudit.errors import InputError
from kaudit.model.types import Event

#: kube-apiserver's API prefixes; ``api`` is the group-less (legacy) one.
API_PREFIXES = frozenset({"api", "apis"})
GROUPLESS_API_PREFIXES = frozenset({"api"})
_SPECIAL_VERBS = frozenset({"proxy", "watch"})
_SPECIAL_VERBS_NO_SUBRESOURCES = frozenset({"proxy"})
_NAMESPACE_SUBRESOURCES = frozenset({"status", "finalize"})
_METHOD_VERBS = {
    "POST": "create",
    "GET": "get",
    "HEAD": "get",
    "PUT": "update",
    "PATCH": "patch",
    "DELETE": "delete",
}


class User(NamedTuple):
    """The authenticated user: name and groups."""

    name: str
    groups: tuple[str, ...] = ()


class Attributes(NamedTuple):
    """Request attributes as the policy checker sees them. ``user`` None: no user."""

    user: User | None = None
    verb: str = ""
    namespace: str = ""
    api_group: str = ""
    api_version: str = ""
    resource: str = ""
    subresource: str = ""
    name: str = ""
    path: str = ""
    resource_request: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The attributes in kaudit's JSON form (the ``policy eval`` input/output keys)."""
        return {
            "user": None
            if self.user is None
            else {"name": self.user.name, "groups": list(self.user.groups)},
            "verb": self.verb,
            "namespace": self.namespace,
            "apiGroup": self.api_group,
            "apiVersion": self.api_version,
            "resource": self.resource,
            "subresource": self.subresource,
            "name": self.name,
            "path": self.path,
            "resourceRequest": self.resource_request,
        }


#: JSON key -> Attributes field, for the JSON form.
JSON_KEYS = {
    "user": "user",
    "verb": "verb",
    "namespace": "namespace",
    "apiGroup": "api_group",
    "apiVersion": "api_version",
    "resource": "resource",
    "subresource": "subresource",
    "name": "name",
    "path": "path",
    "resourceRequest": "resource_request",
}


def from_event(event: Event) -> Attributes:
    """The attributes a captured event was evaluated with (spec 7.2).

    An empty username means no user; ``objectRef`` present means a resource request;
    the path is ``requestURI`` before ``?``, percent-decoded. Note that on stages after
    the request body was logged, ``objectRef.name`` may have been back-filled from the
    body (spec 2.2), so e.g. a create then carries a name it did not have originally.
    """
    # Hot path (policy simulation over millions of events): no helper calls.
    u = event.user
    name = u.username
    user = None
    if name:  # UNSET is falsy
        groups = u.groups
        user = User(name, tuple(groups) if groups else ())
    uri = event.request_uri
    q = uri.find("?")
    raw_path = uri if q < 0 else uri[:q]
    path = unquote(raw_path) if "%" in raw_path else raw_path
    ref = event.object_ref
    if not ref:
        return Attributes(user, event.verb, path=path)
    return Attributes(
        user,
        event.verb,
        ref.namespace or "",
        ref.api_group or "",
        ref.api_version or "",
        ref.resource or "",
        ref.subresource or "",
        ref.name or "",
        path,
        True,
    )


class RequestInfoError(InputError):
    """A request the apiserver refuses before auditing (RequestInfo fails: HTTP 500)."""


def from_http(method: str, url: str, user: User | None = None) -> Attributes:
    """The attributes of an HTTP request: the apiserver's RequestInfo (spec 7.1).

    ``url`` is a request target (``/api/v1/pods?watch=1``) or a full URL. A verb-in-path
    with nothing after it (``/api/v1/watch``) raises :class:`RequestInfoError`: the
    apiserver's RequestInfo fails there and the request is answered 500 before the
    audit filter runs, so no policy is evaluated and no event is written.
    """
    split = urlsplit(url)
    path = unquote(split.path)
    query = split.query
    info = _request_info(method, path, query)
    if info is None:
        raise RequestInfoError(
            f"{method} {url}: unable to determine kind and namespace from url (the apiserver "
            "answers 500 before auditing: no policy is evaluated, no event is written)"
        )
    return Attributes(user, *info)


def _request_info(
    method: str, path: str, query: str
) -> tuple[str, str, str, str, str, str, str, str, bool] | None:
    verb = method.lower()
    parts = _split_path(path)
    if len(parts) < 3 or parts[0] not in API_PREFIXES:
        return verb, "", "", "", "", "", "", path, False
    prefix = parts[0]
    parts = parts[1:]
    group = ""
    if prefix not in GROUPLESS_API_PREFIXES:
        if len(parts) < 3:
            return verb, "", "", "", "", "", "", path, False
        group = parts[0]
        parts = parts[1:]
    version = parts[0]
    parts = parts[1:]
    if parts[0] in _SPECIAL_VERBS:
        if len(parts) < 2:
            return None  # RequestInfo fails; the apiserver refuses the request (500)
        verb = parts[0]
        parts = parts[1:]
    else:
        verb = _METHOD_VERBS.get(method.upper(), "")
    namespace = ""
    if parts[0] == "namespaces":
        if len(parts) > 1:
            namespace = parts[1]
            if len(parts) > 2 and parts[2] not in _NAMESPACE_SUBRESOURCES:
                parts = parts[2:]
    resource = subresource = name = ""
    n = len(parts)
    if n >= 3 and verb not in _SPECIAL_VERBS_NO_SUBRESOURCES:
        subresource = parts[2]
    if n >= 2:
        name = parts[1]
    if n >= 1:
        resource = parts[0]
    if not name and verb == "get":
        verb, name = _list_options(query)
    if not name and verb == "delete":
        verb = "deletecollection"
    return verb, namespace, group, version, resource, subresource, name, path, True


def _split_path(path: str) -> list[str]:
    path = path.strip("/")
    return path.split("/") if path else []


# --- ListOptions, as far as RequestInfo reads them ----------------------------------


def _list_options(query: str) -> tuple[str, str]:
    """Verb (list/watch) and name (from fieldSelector metadata.name) of a collection GET.

    Mirrors decoding ``metav1.ListOptions`` from the query: a bool is false only for
    ``0`` or ``false`` (any case), and if any option fails to decode, the name is not
    taken from the field selector and only ``watch`` is looked at.
    """
    values = _parse_query(query)
    watch_vals = values.get("watch")
    watch = watch_vals is not None and watch_vals[0].lower() not in ("false", "0")
    verb = "watch" if watch else "list"
    try:
        for key in ("timeoutSeconds", "limit"):
            v = values.get(key)
            if v and (key == "limit" or v[0] != ""):
                _go_parse_int(v[0])
        selector = values.get("fieldSelector")
        label = values.get("labelSelector")
        if label:
            _check_label_selector(label[0])
        name = ""
        if selector:
            terms = _parse_field_selector(selector[0])
            for field, op, value in terms:
                if field == "metadata.name" and op != "!=":
                    if _is_valid_path_segment(value):
                        name = value
                    break
    except ValueError:
        return verb, ""
    return verb, name


def _parse_query(query: str) -> dict[str, list[str]]:
    """Go's ``url.ParseQuery``: pairs with ``;`` or bad escapes are dropped."""
    out: dict[str, list[str]] = {}
    for pair in query.split("&"):
        if not pair or ";" in pair:
            continue
        key, _, value = pair.partition("=")
        try:
            k = _query_unescape(key)
            v = _query_unescape(value)
        except ValueError:
            continue
        out.setdefault(k, []).append(v)
    return out


_HEX = "0123456789abcdefABCDEF"


def _query_unescape(s: str) -> str:
    i = s.find("%")
    while i >= 0:
        if i + 2 >= len(s) or s[i + 1] not in _HEX or s[i + 2] not in _HEX:
            raise ValueError("invalid URL escape")
        i = s.find("%", i + 3)
    return unquote(s.replace("+", " "), errors="surrogateescape")


def _go_parse_int(s: str) -> int:
    body = s[1:] if s[:1] in ("+", "-") else s
    if not body or not body.isascii() or not body.isdigit():
        raise ValueError(f"invalid integer {s!r}")
    v = int(s)
    if not -(2**63) <= v < 2**63:
        raise ValueError("out of range")
    return v


def _parse_field_selector(selector: str) -> list[tuple[str, str, str]]:
    """apimachinery ``fields.ParseSelector``: terms sorted, ``!=``/``==``/``=``."""
    terms = []
    for part in sorted(_split_terms(selector)):
        if part == "":
            continue
        lhs, op, rhs = _split_term(part)
        terms.append((lhs, "==" if op == "=" else op, _unescape_value(rhs)))
    return terms


def _split_terms(s: str) -> list[str]:
    if s == "":
        return []
    terms = []
    start = 0
    escaped = False
    for i, ch in enumerate(s):
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == ",":
            terms.append(s[start:i])
            start = i + 1
    terms.append(s[start:])
    return terms


def _split_term(term: str) -> tuple[str, str, str]:
    for i in range(len(term)):
        rest = term[i:]
        for op in ("!=", "==", "="):
            if rest.startswith(op):
                return term[:i], op, term[i + len(op) :]
    raise ValueError(f"invalid selector: can't understand {term!r}")


def _unescape_value(s: str) -> str:
    if "\\" not in s:
        return s
    out = []
    escaped = False
    for ch in s:
        if escaped:
            if ch not in ("\\", ",", "="):
                raise ValueError("invalid escape sequence")
            out.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        else:
            out.append(ch)
    if escaped:
        raise ValueError("unterminated escape sequence")
    return "".join(out)


def _check_label_selector(s: str) -> None:
    """A coarse check of a label selector: unbalanced parentheses fail to parse.

    (kaudit does not reimplement the full label-selector grammar; see the docs.)
    """
    if s.count("(") != s.count(")"):
        raise ValueError("invalid label selector")


def _is_valid_path_segment(name: str) -> bool:
    return name not in (".", "..") and "/" not in name and "%" not in name


__all__ = ["API_PREFIXES", "Attributes", "JSON_KEYS", "User", "from_event", "from_http"]
