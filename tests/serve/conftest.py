"""Fixtures for the serve tests (defined in serve_harness)."""

from serve_harness import certs, server_factory

__all__ = ["certs", "server_factory"]
