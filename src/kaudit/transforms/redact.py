"""``redact``: keep secrets out of the store (on by default).

What is replaced by :data:`MARKER` (the event keeps its shape, so queries and diffs
still show *that* a value was there and changed structure, never the value):

* Secrets (core ``secrets``): ``data`` and ``stringData`` values, in request and
  response bodies, in lists (``items[]``), in merge/strategic/apply patches and in
  JSON patches (``value`` of operations on ``/data``, ``/stringData``); and the
  ``kubectl.kubernetes.io/last-applied-configuration`` annotation, which repeats them.
* TokenRequest (``serviceaccounts/token``): ``status.token`` of the response.
* TokenReview (``tokenreviews``): ``spec.token`` in request and response.
* Any body: a PEM private key block in any string (a TLS key in a ConfigMap), also
  when its END line is missing (a truncated paste), and a whole string that is the
  base64 of a PEM private key (key material pasted into a CertificateSigningRequest's
  ``spec.request``, a ConfigMap's ``binaryData``).

A redacted event gets the audit annotation ``kaudit.io/redacted`` listing the JSON
paths that were replaced.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar

import msgspec
from msgspec import UNSET, Raw

from kaudit.model.codec import encode_event
from kaudit.model.documents import Record
from kaudit.model.types import Event

MARKER = "[REDACTED]"
ANNOTATION = "kaudit.io/redacted"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"

_PEM_KEY = re.compile(
    r"-----BEGIN ([A-Z0-9 ]*)PRIVATE KEY-----(?:.*?-----END \1PRIVATE KEY-----|.*\Z)",
    re.DOTALL,
)
#: base64 of "-----BEGIN": how a base64-encoded PEM block starts.
_B64_PEM = "LS0tLS1CRUdJT"
_JSON_PATCH_SECRET = re.compile(
    r"^/(data|stringData)(/|$)|^/metadata/annotations/kubectl\.kubernetes\.io~1last-applied-configuration$"
)


@dataclass
class Redactor:
    """The ``redact`` transform. Counts what it did in ``events_redacted``."""

    events_redacted: int = 0
    paths: dict[str, int] = field(default_factory=dict)

    name = "redact"
    #: It changes only events with a request or response body (``redact_event``), so
    #: an importer may store the others without handing them to it.
    bodies_only: ClassVar[bool] = True

    def counters(self) -> dict[str, int]:
        return {"redacted": self.events_redacted}

    def __call__(self, batch: list[Record]) -> list[Record]:
        out = batch
        for i, rec in enumerate(batch):
            ev = redact_event(rec.event)
            if ev is not rec.event:
                if out is batch:
                    out = list(batch)
                out[i] = Record(ev, encode_event(ev)[:-1], rec.source, rec.line)
                self.events_redacted += 1
                assert ev.annotations is not UNSET
                for p in ev.annotations[ANNOTATION].split(","):
                    self.paths[p] = self.paths.get(p, 0) + 1
        return out


def redact_event(ev: Event) -> Event:
    """``ev`` with secret material replaced; ``ev`` itself when there is none."""
    if ev.request_object is UNSET and ev.response_object is UNSET:
        return ev
    ref = ev.object_ref
    resource = subresource = group = ""
    if ref is not UNSET:
        resource = ref.resource if ref.resource is not UNSET else ""
        subresource = ref.subresource if ref.subresource is not UNSET else ""
        group = ref.api_group if ref.api_group is not UNSET else ""
    done: list[str] = []
    changes: dict[str, Any] = {}
    for attr, label in (("request_object", "requestObject"), ("response_object", "responseObject")):
        raw: Raw | Any = getattr(ev, attr)
        if raw is UNSET:
            continue
        data = bytes(raw)
        kind = _kind_of(resource, subresource, group)
        keyish = b"PRIVATE KEY" in data or _B64_PEM.encode() in data
        if kind is None and not keyish:
            continue
        try:
            obj = msgspec.json.decode(data)
        except msgspec.DecodeError:
            continue
        paths: list[str] = []
        if kind == "secret":
            if label == "requestObject" and ev.verb == "patch" and isinstance(obj, list):
                _json_patch(obj, label, paths)
            else:
                _secret(obj, label, paths)
                if isinstance(obj, dict) and isinstance(obj.get("items"), list):
                    for j, item in enumerate(obj["items"]):
                        _secret(item, f"{label}.items[{j}]", paths)
        elif kind == "tokenrequest" and label == "responseObject":
            _replace(obj, ("status", "token"), label, paths)
        elif kind == "tokenreview":
            _replace(obj, ("spec", "token"), label, paths)
        if keyish:
            obj = _pem(obj, label, paths)
        if paths:
            changes[attr] = Raw(msgspec.json.encode(obj))
            done.extend(paths)
    if not done:
        return ev
    annotations = dict(ev.annotations) if ev.annotations is not UNSET else {}
    annotations.setdefault(ANNOTATION, ",".join(done))
    changes["annotations"] = annotations
    return msgspec.structs.replace(ev, **changes)


def _kind_of(resource: str, subresource: str, group: str) -> str | None:
    if resource == "secrets" and group == "":
        return "secret"
    if resource == "serviceaccounts" and subresource == "token" and group == "":
        return "tokenrequest"
    if resource == "tokenreviews" and group == "authentication.k8s.io":
        return "tokenreview"
    return None


def _secret(obj: Any, label: str, paths: list[str]) -> None:
    if not isinstance(obj, dict):
        return
    for key in ("data", "stringData"):
        value = obj.get(key)
        if isinstance(value, dict) and value:
            obj[key] = {k: MARKER for k in value}
            paths.append(f"{label}.{key}")
        elif isinstance(value, str) and value:
            obj[key] = MARKER
            paths.append(f"{label}.{key}")
    meta = obj.get("metadata")
    if isinstance(meta, dict):
        ann = meta.get("annotations")
        if isinstance(ann, dict) and LAST_APPLIED in ann:
            ann[LAST_APPLIED] = MARKER
            paths.append(f"{label}.metadata.annotations.{LAST_APPLIED}")


def _json_patch(ops: list[Any], label: str, paths: list[str]) -> None:
    for j, op in enumerate(ops):
        if not (isinstance(op, dict) and isinstance(op.get("path"), str) and "value" in op):
            continue
        where, value = op["path"], op["value"]
        if _JSON_PATCH_SECRET.search(where):
            op["value"] = _mask(value)
            paths.append(f"{label}[{j}].value")
        elif where in ("", "/"):  # the whole Secret replaced
            _secret(value, f"{label}[{j}].value", paths)
        elif where == "/metadata":
            _secret({"metadata": value}, f"{label}[{j}].value", paths)
        elif where == "/metadata/annotations":
            _secret({"metadata": {"annotations": value}}, f"{label}[{j}].value", paths)


def _mask(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: MARKER for k in value}
    return MARKER


def _replace(obj: Any, path: tuple[str, ...], label: str, paths: list[str]) -> None:
    cur = obj
    for key in path[:-1]:
        if not isinstance(cur, dict):
            return
        cur = cur.get(key)
    if isinstance(cur, dict) and isinstance(cur.get(path[-1]), str) and cur[path[-1]]:
        cur[path[-1]] = MARKER
        paths.append(".".join((label, *path)))


def _pem(obj: Any, where: str, paths: list[str]) -> Any:
    if isinstance(obj, str):
        if "PRIVATE KEY-----" in obj:
            new = _PEM_KEY.sub(MARKER, obj)
            if new != obj:
                paths.append(where)
                return new
        elif obj.startswith(_B64_PEM) and _b64_private_key(obj):
            paths.append(where)
            return MARKER
        return obj
    if isinstance(obj, dict):
        for k, v in obj.items():
            obj[k] = _pem(v, f"{where}.{k}", paths)
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            obj[i] = _pem(v, f"{where}[{i}]", paths)
    return obj


def _b64_private_key(text: str) -> bool:
    try:
        decoded = base64.b64decode(text, validate=False)
    except (ValueError, binascii.Error):
        return False
    return b"PRIVATE KEY-----" in decoded


__all__ = ["ANNOTATION", "MARKER", "Redactor", "redact_event"]
