"""``truncate``: the apiserver's truncate backend, exactly (spec 8.5).

For each event: if its JSON encoding (``kind``/``apiVersion`` and the newline
included) is larger than ``max_event_bytes`` and its level is Request or above,
``requestObject`` and ``responseObject`` are removed and the audit annotation
``audit.k8s.io/truncated: "true"`` is added; if it is still too large it is dropped
and counted. Metadata-level events are never truncated (only dropped).
:func:`split_batches` groups events as the backend does before handing them on.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import msgspec
from msgspec import UNSET

from kaudit.model.codec import encode_event
from kaudit.model.documents import Record
from kaudit.model.types import LEVEL_REQUEST, Event, level_rank

DEFAULT_MAX_EVENT_BYTES = 102_400
DEFAULT_MAX_BATCH_BYTES = 10_485_760
ANNOTATION = "audit.k8s.io/truncated"


def event_size(ev: Event) -> int:
    """The size the apiserver measures: the typed JSON encoding with its newline."""
    return len(encode_event(ev))


def truncate_event(ev: Event, max_event_bytes: int) -> tuple[Event | None, bool]:
    """``(event, truncated)``: the event to keep (``None`` = drop) and whether bodies went."""
    if event_size(ev) <= max_event_bytes:
        return ev, False
    if level_rank(ev.level) < level_rank(LEVEL_REQUEST):
        return None, False
    annotations = dict(ev.annotations) if ev.annotations is not UNSET else {}
    annotations[ANNOTATION] = "true"
    cut = msgspec.structs.replace(
        ev, request_object=UNSET, response_object=UNSET, annotations=annotations
    )
    if event_size(cut) > max_event_bytes:
        return None, True
    return cut, True


@dataclass
class Truncator:
    """The ``truncate`` transform; counts ``truncated`` and ``dropped`` events."""

    max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES
    truncated: int = 0
    dropped: int = 0

    name = "truncate"

    def counters(self) -> dict[str, int]:
        return {"truncated": self.truncated, "dropped": self.dropped}

    def __post_init__(self) -> None:
        if self.max_event_bytes <= 0:
            raise ValueError(
                f"invalid truncate max event size {self.max_event_bytes}, must be a positive number"
            )

    def __call__(self, batch: list[Record]) -> list[Record]:
        out: list[Record] = []
        limit = self.max_event_bytes
        for rec in batch:
            # Fast path: the encoding can only grow by escaping (at most 6x) plus the
            # kind/apiVersion prefix and newline.
            if len(rec.raw) * 6 + 64 <= limit:
                out.append(rec)
                continue
            ev, cut = truncate_event(rec.event, limit)
            if ev is None:
                self.dropped += 1
                continue
            if cut:
                self.truncated += 1
                out.append(Record(ev, encode_event(ev)[:-1], rec.source, rec.line))
            else:
                out.append(rec)
        return out


def split_batches(events: Iterable[Event], max_batch_bytes: int) -> Iterator[list[Event]]:
    """Group events as the truncate backend does: a new batch starts when the next event
    would take the running size over ``max_batch_bytes``; an event larger than that on
    its own still goes, alone."""
    batch: list[Event] = []
    size = 0
    for ev in events:
        n = event_size(ev)
        if batch and size + n > max_batch_bytes:
            yield batch
            batch, size = [], 0
        batch.append(ev)
        size += n
    if batch:
        yield batch


__all__ = [
    "ANNOTATION",
    "DEFAULT_MAX_BATCH_BYTES",
    "DEFAULT_MAX_EVENT_BYTES",
    "Truncator",
    "event_size",
    "split_batches",
    "truncate_event",
]
