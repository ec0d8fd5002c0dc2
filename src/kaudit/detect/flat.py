"""Audit events as rows of the flat schema (:mod:`kaudit.query.schema`), in Arrow.

The streaming engine and ``kaudit rules test`` evaluate rules over exactly the
columns the store's ``events`` view has. The table is built by the store's own
:func:`kaudit.store.flatten.flatten` (one implementation, so a rule sees the same
values in a batch as in stored history).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import pyarrow as pa

from kaudit.model.codec import encode_event
from kaudit.model.documents import Record
from kaudit.model.types import Event
from kaudit.store.flatten import SCHEMA, flatten, flatten_events

__all__ = ["SCHEMA", "check_schema", "empty_table", "table_from_events", "table_from_records"]


def table_from_records(records: Iterable[Record], *, cluster: str = "") -> pa.Table:
    """The flat-schema table of ``records`` (``event`` is each record's raw line)."""
    return flatten(records, cluster)


def table_from_events(events: Iterable[Event], *, cluster: str = "") -> pa.Table:
    """The flat-schema table of ``events`` (``event`` is the exact apiserver encoding)."""
    evs = list(events)
    return flatten_events(evs, [encode_event(e)[:-1] for e in evs], cluster)


def empty_table() -> pa.Table:
    return SCHEMA.empty_table()


def check_schema(names: Sequence[str]) -> list[str]:
    """Flat-schema columns missing from ``names``."""
    have = set(names)
    return [f.name for f in SCHEMA if f.name not in have]
