"""Fixtures for the dashboard tests (defined in ui_harness)."""

from ui_harness import client, fresh_store, ui_store

__all__ = ["client", "fresh_store", "ui_store"]
