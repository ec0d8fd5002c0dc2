"""Verification: prove that no segment was altered, removed or slipped in.

Checks, reporting every problem at once:

* the manifest chain: each line parses, its ``hash`` is the SHA-256 of its
  canonical JSON, and its ``prev`` is the previous line's ``hash``;
* every live segment exists with the recorded size and SHA-256;
* no file under ``events/`` is unaccounted for (temporary files of a flush in
  progress excepted).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from kaudit.errors import IntegrityError
from kaudit.store.layout import EVENTS_DIR, MANIFEST, TMP_PREFIX
from kaudit.store.manifest import GENESIS, ManifestState, apply, entry_hash, read_lines
from kaudit.store.segments import sha256_file


@dataclass(frozen=True, slots=True)
class VerifyReport:
    entries: int
    segments: int
    rows: int
    bytes: int
    last_hash: str


def verify(root: Path) -> VerifyReport:
    """Check the store at ``root``; raise :class:`IntegrityError` listing every problem."""
    problems: list[str] = []
    mpath = root / MANIFEST
    lines, torn = read_lines(root)
    state = ManifestState()
    prev = GENESIS
    for i, line in enumerate(lines, 1):
        where = f"{mpath}:{i}"
        try:
            entry = json.loads(line)
        except ValueError as exc:
            problems.append(f"{where}: manifest entry is not valid JSON ({exc}); chain broken")
            continue
        if not isinstance(entry, dict):
            problems.append(f"{where}: manifest entry is not a JSON object; chain broken")
            continue
        recorded = entry.get("hash")
        actual = entry_hash(entry)
        if recorded != actual:
            problems.append(
                f"{where}: manifest entry altered: hash {recorded!r} does not match its "
                f"content (expected {actual})"
            )
        if entry.get("prev") != prev:
            problems.append(
                f"{where}: manifest chain broken: prev is {entry.get('prev')!r}, expected "
                f"{prev} (an entry was removed, reordered or altered)"
            )
        prev = str(recorded)
        apply(state, entry)
    if torn:
        problems.append(f"{mpath}:{len(lines) + 1}: incomplete manifest entry (torn write)")

    for rel, seg in sorted(state.segments.items()):
        path = root / rel
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            problems.append(f"{path}: missing segment (recorded with {seg.rows} rows)")
            continue
        if size != seg.size:
            problems.append(f"{path}: altered segment: size {size} bytes, expected {seg.size}")
            continue
        digest = sha256_file(path)
        if digest != seg.sha256:
            problems.append(f"{path}: altered segment: sha256 {digest}, expected {seg.sha256}")

    events = root / EVENTS_DIR
    if events.is_dir():
        for path in sorted(events.rglob("*")):
            if path.is_dir() or path.name.startswith(TMP_PREFIX):
                continue
            rel = path.relative_to(root).as_posix()
            if rel not in state.segments:
                problems.append(f"{path}: unexpected file (not in the manifest)")

    if problems:
        n = len(problems)
        raise IntegrityError(
            f"{root}: verification failed: {n} problem{'s' if n != 1 else ''}", problems
        )
    return VerifyReport(
        len(lines),
        len(state.segments),
        sum(s.rows for s in state.segments.values()),
        sum(s.size for s in state.segments.values()),
        prev,
    )


__all__ = ["VerifyReport", "verify"]
