"""Realistic, deterministic Kubernetes audit traffic, for demos, tests and benchmarks.

::

    from kaudit.traffic import generate, generate_lines, Traffic

    for ev in generate(10_000, seed=1):          # kaudit.model.Event structs
        ...
    data = b"".join(generate_lines(1000))        # exact apiserver JSON log lines

    tr = Traffic(seed=1)                         # the same stream, plus its incidents
    events = list(tr.events(50_000))
    [inc for inc in tr.incidents if inc.complete]

The same seed gives the same bytes: all randomness comes from ``random.Random(seed)``
and the clock is simulated (``start``, default :data:`DEFAULT_START`). The mix is that
of a production cluster's log under a GCE-like policy (see :mod:`.background`), with
the incidents of :data:`INCIDENTS` sprinkled in (see :mod:`.incidents`). Events come
out in ``stageTimestamp`` order; a stream cut at ``n`` events leaves the requests still
in flight (watches, mostly) without their later stages, as a real log file does.

Events share sub-objects (``user``, ``objectRef``, ``responseStatus``) with other events
of the same identity or outcome: treat them as read-only, and use
:func:`msgspec.structs.replace` to change one.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from kaudit.model import Event
from kaudit.traffic.cluster import ClusterProfile
from kaudit.traffic.engine import DEFAULT_START, Incident, Traffic
from kaudit.traffic.incidents import INCIDENTS, IncidentKind


def generate(
    n: int | None = None,
    *,
    seed: int = 0,
    start: datetime | None = None,
    rate_per_s: float = 1000.0,
    cluster_profile: ClusterProfile | None = None,
) -> Iterator[Event]:
    """``n`` audit events (or an endless stream), deterministic for ``seed``."""
    tr = Traffic(seed=seed, start=start, rate_per_s=rate_per_s, cluster_profile=cluster_profile)
    return tr.events(n)


def generate_lines(
    n: int | None = None,
    *,
    seed: int = 0,
    start: datetime | None = None,
    rate_per_s: float = 1000.0,
    cluster_profile: ClusterProfile | None = None,
) -> Iterator[bytes]:
    """The events of :func:`generate` as JSON log lines (each ending in ``\\n``)."""
    tr = Traffic(seed=seed, start=start, rate_per_s=rate_per_s, cluster_profile=cluster_profile)
    return tr.lines(n)


__all__ = [
    "DEFAULT_START",
    "INCIDENTS",
    "ClusterProfile",
    "Incident",
    "IncidentKind",
    "Traffic",
    "generate",
    "generate_lines",
]
