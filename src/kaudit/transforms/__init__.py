"""Transforms: pure functions from a batch of records to a batch of records.

They run at ingest time, between a source and the store (DESIGN.md data flow):
``redact`` (on by default), ``policy`` (shape events to a policy, to store less
than the apiserver sends) and ``truncate`` (as the apiserver's truncate backend).
A transform that changes an event re-encodes its ``raw`` line exactly, so the store
keeps what it would have received from an apiserver doing the same.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from kaudit.model.documents import Record

Transform = Callable[[list[Record]], list[Record]]


def chain(transforms: Sequence[Transform]) -> Transform:
    """One transform applying ``transforms`` in order."""

    def run(batch: list[Record]) -> list[Record]:
        for t in transforms:
            if not batch:
                break
            batch = t(batch)
        return batch

    return run


__all__ = ["Transform", "chain"]
