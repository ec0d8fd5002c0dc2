"""The generated parts of ``docs/rules.md``: rule fields, helpers and the built-in pack."""

from __future__ import annotations

from collections.abc import Sequence

from kaudit.detect.rule import FIELDS, Rule
from kaudit.detect.sql import HELPERS

BEGIN = "<!-- BEGIN GENERATED: {} -->"
END = "<!-- END GENERATED: {} -->"


def fields_table() -> str:
    rows = ["| field | type | required | meaning |", "| --- | --- | --- | --- |"]
    for name, (typ, req, doc) in FIELDS.items():
        rows.append(f"| `{name}` | {typ} | {'yes' if req else 'no'} | {doc} |")
    return "\n".join(rows)


def helpers_table() -> str:
    rows = ["| helper | meaning |", "| --- | --- |"]
    for name, (_, _, doc) in HELPERS.items():
        rows.append(f"| `{name}` | {doc.split(': ', 1)[-1]} |")
    return "\n".join(rows)


def pack_table(rules: Sequence[Rule]) -> str:
    rows = [
        "| id | severity | kind | level | ATT&CK | title |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in sorted(rules, key=lambda r: r.id):
        rows.append(
            f"| `{r.id}` | {r.severity} | {r.kind} | {r.required_level} | "
            f"{', '.join(r.mitre)} | {r.title} |"
        )
    return "\n".join(rows)


def sections(rules: Sequence[Rule]) -> dict[str, str]:
    return {"fields": fields_table(), "helpers": helpers_table(), "pack": pack_table(rules)}


def render(text: str, rules: Sequence[Rule]) -> str:
    """``text`` with each generated section replaced by its current content."""
    for name, body in sections(rules).items():
        b, e = BEGIN.format(name), END.format(name)
        head, sep, rest = text.partition(b)
        if not sep:
            continue
        _, sep2, tail = rest.partition(e)
        text = f"{head}{b}\n{body}\n{e}{tail}" if sep2 else text
    return text
