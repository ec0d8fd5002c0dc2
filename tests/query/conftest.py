"""A real store holding hand-built events, for the query tests."""

from __future__ import annotations

from collections.abc import Iterable

import pytest
from query_events import (
    MakeStore,  # noqa: E402
    day,
)

from kaudit.model import Event
from kaudit.store import Store, open_store


@pytest.fixture(scope="session")
def make_store(tmp_path_factory: pytest.TempPathFactory) -> MakeStore:
    def make(events: Iterable[Event], cluster: str = "") -> Store:
        store = open_store(tmp_path_factory.mktemp("store") / "kaudit-data")
        with store.writer() as w:
            w.append_events(list(events), cluster=cluster)
        return store

    return make


@pytest.fixture(scope="session")
def day_store(make_store: MakeStore) -> Store:
    """The day of :func:`query_events.day`, from cluster ``prod`` (read-only: do not write)."""
    return make_store(day(), cluster="prod")
