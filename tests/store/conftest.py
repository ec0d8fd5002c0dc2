"""Fixtures for the store tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from store_helpers import make_records

from kaudit.model.documents import Record
from kaudit.store import Store, open_store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    yield open_store(tmp_path / "store")


@pytest.fixture
def records() -> Callable[..., list[Record]]:
    return make_records
