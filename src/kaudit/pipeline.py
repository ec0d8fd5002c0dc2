"""The ingest pipeline of ``kaudit serve``, assembled from its settings.

Sources other than the webhook (``tail_paths``) and the built-in transforms, in the
order they run on each batch: ``policy`` (``policy_file``), ``redact`` (``redact``,
on by default), ``truncate`` (``truncate_max_event_bytes``); then the user's own
``transforms``. Built-ins are registered exactly the way a user's are: as
callables from a list of records to a list of records.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from kaudit.config import ServeConfig
from kaudit.errors import DecodeError
from kaudit.transforms import Transform

if TYPE_CHECKING:
    from kaudit.web.server import Source

log = logging.getLogger("kaudit.serve")


def builtin_transforms(config: ServeConfig) -> list[Transform]:
    chain: list[Transform] = []
    if config.policy_file is not None:
        from kaudit.policy import load_policy
        from kaudit.transforms.policy import PolicyFilter

        chain.append(PolicyFilter.from_policy(load_policy(config.policy_file)))
    if config.redact:
        from kaudit.transforms.redact import Redactor

        chain.append(Redactor())
    if config.truncate_max_event_bytes:
        from kaudit.transforms.truncate import Truncator

        chain.append(Truncator(max_event_bytes=config.truncate_max_event_bytes))
    return chain


def tail_sources(config: ServeConfig, store_path: Path) -> list[Source]:
    from kaudit.sources.tail import TailSource

    def report(err: DecodeError, raw: bytes) -> None:
        log.warning("bad line in a tailed log", extra={"fields": {"error": err.message}})

    return [
        TailSource(p, store_path / "tail", cluster=config.tail_cluster, on_error=report)
        for p in config.tail_paths
    ]


__all__ = ["builtin_transforms", "tail_sources"]
