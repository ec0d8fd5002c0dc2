"""An object's history, with side-by-side diffs between its successive states.

The states and the unified diffs come from :func:`kaudit.query.investigate.history_rows`;
this module only lays each unified diff out in two columns (before | after).
"""

from __future__ import annotations

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


def side_by_side(diff: str | None) -> list[Hunk]:
    """A unified diff as hunks of aligned rows: removed lines left, added lines right."""
    if not diff:
        return []
    hunks: list[Hunk] = []
    cur: Hunk | None = None
    old_n = new_n = 0
    dels: list[Cell] = []
    adds: list[Cell] = []

    def flush() -> None:
        if cur is None:
            return
        for i in range(max(len(dels), len(adds))):
            cur["rows"].append(
                {
                    "left": dels[i] if i < len(dels) else _EMPTY,
                    "right": adds[i] if i < len(adds) else _EMPTY,
                }
            )
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
