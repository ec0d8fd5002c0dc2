"""Retention: delete whole partitions older than a cutoff, and say so in the manifest.

A partition (``date=…/hour=…``) goes when its whole hour ends at or before the
cutoff. The manifest entry (``op: retention``) is written first, then the files
are removed: ``verify`` stays green, and a crash in between is finished by the
next writer.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from kaudit.store.layout import fsync_dir
from kaudit.store.manifest import Manifest, ManifestState
from kaudit.store.segments import hour_of_partition


@dataclass(frozen=True, slots=True)
class RetentionResult:
    partitions: list[str]
    segments: int
    rows: int
    bytes: int


def expired(state: ManifestState, cutoff: float) -> RetentionResult:
    """What retention at ``cutoff`` (seconds since the epoch) would delete."""
    paths: list[str] = []
    parts: set[str] = set()
    rows = size = 0
    for seg in state.segments.values():
        h = hour_of_partition(seg.path)
        if h is not None and (h + 1) * 3600 <= cutoff:
            paths.append(seg.path)
            parts.add(seg.partition)
            rows += seg.rows
            size += seg.size
    return RetentionResult(sorted(parts), len(paths), rows, size)


def apply_retention(root: Path, manifest: Manifest, cutoff: float) -> RetentionResult:
    result = expired(manifest.state, cutoff)
    if not result.segments:
        return result
    doomed = sorted(
        s.path for s in manifest.state.segments.values() if s.partition in set(result.partitions)
    )
    manifest.append(
        "retention",
        remove=doomed,
        cutoff=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(cutoff)),
        rows=result.rows,
    )
    for rel in doomed:
        (root / rel).unlink(missing_ok=True)
    for part in result.partitions:
        _remove_empty(root / part)
        _remove_empty((root / part).parent)
    return result


def _remove_empty(d: Path) -> None:
    try:
        d.rmdir()
        fsync_dir(d.parent)
    except OSError:
        pass  # not empty (or already gone)


def parse_duration_secs(text: str) -> float:
    """``365d``, ``12h``, ``30m``, ``90s``, ``2w`` -> seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
    t = text.strip().lower()
    if len(t) >= 2 and t[-1] in units:
        try:
            value = float(t[:-1])
        except ValueError:
            value = -1
        if value > 0:
            return value * units[t[-1]]
    raise ValueError(
        f"invalid duration {text!r}: expected a positive number followed by s, m, h, d or w "
        "(e.g. 365d)"
    )


__all__ = ["RetentionResult", "apply_retention", "expired", "parse_duration_secs"]
