"""An object's history, with side-by-side diffs between its successive states.

The states and the unified diffs come from :func:`kaudit.query.investigate.history_rows`;
this module only lays each unified diff out in two columns (before | after), a
removed line opposite the added line about the same key.
"""

from __future__ import annotations

import difflib
from datetime import datetime
from typing import Any, Final, TypedDict

from kaudit.query.investigate import history_rows
from kaudit.query.output import iso
from kaudit.web.ui.timerange import TimeRange


class Cell(TypedDict):
    n: int | None
    text: str
    kind: str  # "same" | "del" | "add" | "empty"


class Row(TypedDict):
    left: Cell
    right: Cell


class Hunk(TypedDict):
    header: str
    rows: list[Row]


_EMPTY: Final[Cell] = {"n": None, "text": "", "kind": "empty"}


def _hunk_start(header: str) -> tuple[int, int]:
    # @@ -a,b +c,d @@
    parts = header.split()
    old = parts[1][1:].split(",")[0] if len(parts) > 2 else "1"
    new = parts[2][1:].split(",")[0] if len(parts) > 2 else "1"
    return int(old or 1), int(new or 1)


def _key(text: str) -> str:
    # What a line is about: a YAML/JSON key ("  mode: blue" -> "mode"), else the line.
    head, sep, _ = text.strip().partition(":")
    return head.strip("\"' -") if sep else text.strip()


def pair(dels: list[Cell], adds: list[Cell]) -> list[Row]:
    """Removed and added lines of one change, paired by content: the opcodes of
    :class:`difflib.SequenceMatcher` over what each line is about (its key), so a
    changed key sits opposite its old value and an added key faces an empty cell."""
    rows: list[Row] = []
    sm = difflib.SequenceMatcher(
        None, [_key(c["text"]) for c in dels], [_key(c["text"]) for c in adds], autojunk=False
    )
    for tag, i1, i2, j1, j2 in sm.get_opcodes():
        if tag in ("equal", "replace"):
            left, right = dels[i1:i2], adds[j1:j2]
            for k in range(max(len(left), len(right))):
                rows.append(
                    {
                        "left": left[k] if k < len(left) else _EMPTY,
                        "right": right[k] if k < len(right) else _EMPTY,
                    }
                )
        elif tag == "delete":
            rows.extend({"left": c, "right": _EMPTY} for c in dels[i1:i2])
        else:  # insert
            rows.extend({"left": _EMPTY, "right": c} for c in adds[j1:j2])
    return rows


def side_by_side(diff: str | None) -> list[Hunk]:
    """A unified diff as hunks of aligned rows: removed lines left, added lines right,
    paired by content (:func:`pair`)."""
    if not diff:
        return []
    hunks: list[Hunk] = []
    cur: Hunk | None = None
    old_n = new_n = 0
    dels: list[Cell] = []
    adds: list[Cell] = []

    def flush() -> None:
        if cur is not None:
            cur["rows"].extend(pair(dels, adds))
        dels.clear()
        adds.clear()

    for line in diff.splitlines():
        if line.startswith(("---", "+++")) and cur is None:
            continue
        if line.startswith("@@"):
            flush()
            cur = {"header": line, "rows": []}
            hunks.append(cur)
            old_n, new_n = _hunk_start(line)
            continue
        if cur is None:
            continue
        tag, text = line[:1], line[1:]
        if tag == "-":
            dels.append({"n": old_n, "text": text, "kind": "del"})
            old_n += 1
        elif tag == "+":
            adds.append({"n": new_n, "text": text, "kind": "add"})
            new_n += 1
        elif tag == "\\":
            continue
        else:
            flush()
            cur["rows"].append(
                {
                    "left": {"n": old_n, "text": text, "kind": "same"},
                    "right": {"n": new_n, "text": text, "kind": "same"},
                }
            )
            old_n += 1
            new_n += 1
    flush()
    return hunks


def history(
    store: Any, obj: str, namespace: str | None, rng: TimeRange | None, cluster: str | None
) -> dict[str, Any]:
    rows = history_rows(
        store,
        obj,
        namespace=namespace or None,
        since=rng.since if rng else None,
        until=rng.until if rng else None,
        cluster=cluster or None,
    )
    out = []
    for r in rows:
        d = {k: (iso(v) if isinstance(v, datetime) else v) for k, v in r.items()}
        diff = r.get("diff")
        d["side_by_side"] = (
            side_by_side(diff) if isinstance(diff, str) and r.get("change") != "patch" else []
        )
        out.append(d)
    return {
        "object": obj,
        "namespace": namespace or None,
        "range": rng.to_dict() if rng else None,
        "requests": out,
        "changes": sum(1 for r in out if r["change"] in ("created", "changed", "deleted")),
    }


__all__ = ["history", "side_by_side"]
