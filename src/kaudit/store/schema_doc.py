"""``docs/schema.md``, generated from :data:`kaudit.query.schema.COLUMNS`.

    python -m kaudit.store.schema_doc > docs/schema.md

A test fails when the checked-in page and the table disagree.
"""

from __future__ import annotations

from kaudit.query.schema import COLUMNS

_HEADER = """# The flat schema

One row per audit event; the same column names in CLI filters, SQL (the view
`events`), detection rules, the HTTP API and the dashboard. This page is generated
from `kaudit.query.schema.COLUMNS` (`python -m kaudit.store.schema_doc`); a test
fails when they disagree.

Strings that the apiserver omits are null unless the column says otherwise; lists
and maps are empty rather than null. `source` names the audit.k8s.io/v1 field the
value comes from.

| column | type | source | meaning and null rules |
|---|---|---|---|
"""


_FOOTER = """
Notes:

* `ts` falls back to `stageTimestamp`, and, for an event with neither timestamp
  (or with unparsable ones), to the time kaudit stored it.
* The Parquet segments also carry the Hive partition directories
  `date=YYYY-MM-DD/hour=HH` (of `ts`, UTC); they are not columns of `events`.
"""


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render() -> str:
    rows = [
        f"| `{c.name}` | `{c.sql_type}` | `{_cell(c.source)}` | {_cell(c.doc)} |" for c in COLUMNS
    ]
    return _HEADER + "\n".join(rows) + "\n" + _FOOTER


if __name__ == "__main__":  # pragma: no cover
    print(render(), end="")
