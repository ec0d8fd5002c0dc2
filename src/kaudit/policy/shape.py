"""What an event looks like at a given level (spec 2.1, 2.4, 3, 4.4).

* :func:`shape` reduces one event to a level: ``None`` drops it, ``Metadata`` has no
  bodies, ``Request`` no ``responseObject``; non-resource requests never carry
  bodies; with ``omit_managed_fields``, ``managedFields`` is removed from
  ``metadata``, ``items[].metadata`` and Table ``rows[].object.metadata`` of the
  bodies, but never from a patch body.
* :func:`apply` re-evaluates a captured event under a policy and shapes it the way
  the apiserver would have logged it.

Bodies stay :class:`msgspec.Raw`: stripping decodes only the containers on the way to
``metadata`` (as ``dict[str, Raw]``), so every other byte is kept as it was.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import msgspec
from msgspec import UNSET, Raw

from kaudit.model.types import (
    LEVEL_NONE,
    LEVEL_REQUEST,
    LEVEL_REQUEST_RESPONSE,
    Event,
    level_rank,
)
from kaudit.policy.attributes import from_event
from kaudit.policy.evaluate import Decision, Evaluator

_OBJ = msgspec.json.Decoder(dict[str, Raw])
_LIST = msgspec.json.Decoder(list[Raw])
_ENC = msgspec.json.Encoder()
_MANAGED = b'"managedFields"'
_RANK_REQUEST = level_rank(LEVEL_REQUEST)
_RANK_REQUEST_RESPONSE = level_rank(LEVEL_REQUEST_RESPONSE)
#: Annotations the apiserver only records at level >= Request (spec 3).
_REQUEST_LEVEL_ANNOTATION_PREFIX = "patch.webhook.admission.k8s.io/"


def shape(event: Event, level: str, omit_managed_fields: bool) -> Event | None:
    """``event`` as the apiserver would have logged it at ``level`` (None: not logged)."""
    rank = level_rank(level)
    if rank == 0:
        return None
    changes: dict[str, Any] = {}
    if event.level != level:
        changes["level"] = level
    resource = event.object_ref is not UNSET
    req = event.request_object
    if req is not UNSET:
        if rank < _RANK_REQUEST or not resource:
            changes["request_object"] = UNSET
        elif omit_managed_fields and event.verb != "patch":
            stripped = strip_managed_fields(req)
            if stripped is not req:
                changes["request_object"] = stripped
    resp = event.response_object
    if resp is not UNSET:
        if rank < _RANK_REQUEST_RESPONSE or not resource:
            changes["response_object"] = UNSET
        elif omit_managed_fields:
            stripped = strip_managed_fields(resp)
            if stripped is not resp:
                changes["response_object"] = stripped
    if rank < _RANK_REQUEST and event.annotations is not UNSET:
        ann = event.annotations
        kept = {k: v for k, v in ann.items() if not k.startswith(_REQUEST_LEVEL_ANNOTATION_PREFIX)}
        if len(kept) != len(ann):
            changes["annotations"] = kept if kept else UNSET
    if not changes:
        return event
    return msgspec.structs.replace(event, **changes)


def strip_managed_fields(raw: Raw) -> Raw:
    """``raw`` without ``managedFields`` (spec 2.4); ``raw`` itself when nothing changes.

    Removes the key from the top-level ``metadata``, from each ``items[i].metadata``
    and from each ``rows[i].object.metadata``. Anything that does not have that shape
    (or is not valid JSON) is returned unchanged, as the apiserver logs objects it
    cannot strip unstripped.
    """
    data = bytes(raw)
    if _MANAGED not in data:
        return raw
    try:
        obj = _OBJ.decode(data)
    except msgspec.DecodeError:
        return raw
    changed = False
    meta = obj.get("metadata")
    if meta is not None:
        new = _strip_meta(meta)
        if new is not None:
            obj["metadata"] = new
            changed = True
    for key, sub in (("items", None), ("rows", "object")):
        arr = obj.get(key)
        if arr is None:
            continue
        new_arr = _strip_list(arr, sub)
        if new_arr is not None:
            obj[key] = new_arr
            changed = True
    if not changed:
        return raw
    return Raw(_ENC.encode(obj))


def _strip_meta(meta: Raw) -> Raw | None:
    if _MANAGED not in bytes(meta):
        return None
    try:
        m = _OBJ.decode(meta)
    except msgspec.DecodeError:
        return None
    if "managedFields" not in m:
        return None
    del m["managedFields"]
    return Raw(_ENC.encode(m))


def _strip_list(arr: Raw, inner: str | None) -> Raw | None:
    if _MANAGED not in bytes(arr):
        return None
    try:
        elems = _LIST.decode(arr)
    except msgspec.DecodeError:
        return None
    changed = False
    for i, elem in enumerate(elems):
        try:
            item = _OBJ.decode(elem)
        except msgspec.DecodeError:
            continue
        holder = item
        if inner is not None:
            o = item.get(inner)
            if o is None:
                continue  # a Table row without an object
            try:
                holder = _OBJ.decode(o)
            except msgspec.DecodeError:
                continue
        meta = holder.get("metadata")
        if meta is None:
            continue
        new = _strip_meta(meta)
        if new is None:
            continue
        holder["metadata"] = new
        if inner is not None:
            item[inner] = Raw(_ENC.encode(holder))
        elems[i] = Raw(_ENC.encode(item))
        changed = True
    return Raw(_ENC.encode(elems)) if changed else None


class Applied(NamedTuple):
    """The outcome of :func:`apply` for one event."""

    event: Event | None
    decision: Decision
    #: The policy asks for more than the captured event holds (bodies cannot be recovered).
    above_capture: bool


def apply(evaluator: Evaluator, event: Event) -> Applied:
    """Re-evaluate ``event`` under ``evaluator``'s policy and shape it accordingly.

    Dropped (``event`` None) when the level is None or the event's stage is omitted.
    When the policy asks for a higher level than the capture holds, what is there is
    kept (it cannot be recovered) and ``above_capture`` is set so callers can warn.
    The shaped event's ``level`` is the new level.
    """
    decision = evaluator.evaluate(from_event(event))
    if decision.level == LEVEL_NONE or level_rank(decision.level) == 0:
        return Applied(None, decision, False)
    if event.stage in decision.omit_stages:
        return Applied(None, decision, False)
    above = level_rank(decision.level) > level_rank(event.level)
    return Applied(shape(event, decision.level, decision.omit_managed_fields), decision, above)


__all__ = ["Applied", "apply", "shape", "strip_managed_fields"]
