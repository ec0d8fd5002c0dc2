"""docs/rules.md documents every rule field, helper and built-in rule."""

from __future__ import annotations

from pathlib import Path

from kaudit.detect.docs import render
from kaudit.detect.rule import FIELDS, load_rules
from kaudit.detect.sql import HELPERS

DOC = Path(__file__).resolve().parents[2] / "docs" / "rules.md"


def test_rules_doc_is_current() -> None:
    text = DOC.read_text()
    assert render(text, load_rules()) == text, (
        "docs/rules.md is stale: regenerate with kaudit.detect.docs.render(text, load_rules())"
    )


def test_every_field_helper_and_rule_is_documented() -> None:
    text = DOC.read_text()
    for name in FIELDS:
        assert f"| `{name}` |" in text, name
    for name in HELPERS:
        assert f"| `{name}` |" in text, name
    for r in load_rules():
        assert f"| `{r.id}` |" in text, r.id
