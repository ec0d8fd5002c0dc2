"""kaudit: the system around the Kubernetes audit record."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:  # pragma: no cover
    from kaudit.store import Store


def open_store(path: str | None = None, **kwargs: Any) -> Store:
    """Open (or create) the store at ``path`` (default ``$KAUDIT_STORE`` or ``./kaudit-data``)."""
    from kaudit.store import open_store as _open

    return _open(path, **kwargs)


__all__ = ["__version__", "open_store"]
