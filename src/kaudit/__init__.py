"""kaudit: the system around the Kubernetes audit record."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:  # pragma: no cover
    from kaudit.store import Store


def open_store(path: str | None = None, *, create: bool = False, **kwargs: Any) -> Store:
    """The store at ``path`` (default ``$KAUDIT_STORE`` or ``./kaudit-data``).

    For reading, a path that is not a store is an error (``create=True`` makes one)::

        store = kaudit.open_store("kaudit-data")
        store.find(user="alice@example.com", verb="delete", since="24h")   # pyarrow.Table
        store.history("configmap/app-config", namespace="prod")
        store.query("SELECT username, count(*) FROM events GROUP BY 1")
    """
    from kaudit.store import open_store as _open

    return _open(path, create=create, **kwargs)


__all__ = ["__version__", "open_store"]
