"""Cloud exports of Kubernetes audit logs, as :mod:`kaudit.model.documents` adapters.

Each cloud module (:mod:`.eks`, :mod:`.gke`, :mod:`.aks`) says whether a decoded JSON
object is its format (``matches``) and yields the audit events inside it
(``events``). :func:`adapter` makes one reader hook out of any of them: it decodes
the object once and asks each format in turn. Built-in formats are registered in
:data:`FORMATS` the same way another one would be (:func:`register`).

An object that is recognised but holds no Kubernetes audit event (a GKE entry of
another service, an AKS record of another category, a CloudWatch message from
another log stream) is a :class:`~kaudit.errors.DecodeError` naming why; the
reader sends it to the quarantine. In an envelope of many records (``events``,
``logEvents``, ``records``) each bad record is reported on its own through
``on_error`` and the good ones are kept.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from kaudit.errors import Location
from kaudit.model.documents import Adapter
from kaudit.model.types import Event
from kaudit.sources.cloud import aks, eks, gke
from kaudit.sources.cloud._common import ItemErrorHandler, NotAudit


@dataclass(frozen=True, slots=True)
class CloudFormat:
    """A cloud export format: ``matches(obj)`` and ``events(obj, location, on_error)``."""

    name: str
    title: str
    matches: Callable[[dict[str, Any]], bool]
    events: Callable[[dict[str, Any], Location, ItemErrorHandler | None], Iterator[Event]]


FORMATS: dict[str, CloudFormat] = {}


def register(fmt: CloudFormat) -> None:
    """Make ``fmt`` available to :func:`adapter` (and ``kaudit ingest --format``)."""
    FORMATS[fmt.name] = fmt


register(CloudFormat(gke.NAME, "GKE Cloud Logging entries", gke.matches, gke.events))
register(CloudFormat(aks.NAME, "AKS diagnostic records", aks.matches, aks.events))
register(CloudFormat(eks.NAME, "EKS CloudWatch Logs export", eks.matches, eks.events))

_DECODER = msgspec.json.Decoder()


class CloudAdapter:
    """A reader hook for the given cloud formats (see the module docstring)."""

    def __init__(
        self, formats: Sequence[CloudFormat], on_error: ItemErrorHandler | None = None
    ) -> None:
        self.formats = list(formats)
        self.on_error = on_error

    def __call__(self, data: bytes, loc: Location) -> Iterable[Event] | None:
        if not data.lstrip()[:1] == b"{":
            return None
        try:
            obj = _DECODER.decode(data)
        except msgspec.DecodeError:
            return None
        if not isinstance(obj, dict):
            return None
        for fmt in self.formats:
            if fmt.matches(obj):
                return list(fmt.events(obj, loc, self.on_error))
        return None


def adapter(
    names: Iterable[str] | None = None, on_error: ItemErrorHandler | None = None
) -> Adapter:
    """One adapter for the formats ``names`` (every registered one when ``None``)."""
    chosen = list(FORMATS.values()) if names is None else [FORMATS[n] for n in names]
    return CloudAdapter(chosen, on_error)


__all__ = ["FORMATS", "CloudAdapter", "CloudFormat", "NotAudit", "adapter", "register"]
