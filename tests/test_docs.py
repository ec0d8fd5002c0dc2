"""Documentation that cannot drift from the code."""

from __future__ import annotations

from pathlib import Path

from kaudit.cli.reference import render

ROOT = Path(__file__).resolve().parents[1]


def test_cli_reference_is_current() -> None:
    committed = (ROOT / "docs" / "cli.md").read_text()
    assert committed == render(), (
        "docs/cli.md is stale: run `.venv/bin/python -m kaudit.cli.reference > docs/cli.md`"
    )


def test_readme_gives_the_two_commands_first() -> None:
    readme = (ROOT / "README.md").read_text()
    first_block = readme.split("```")[1]
    commands = [ln.split("#")[0].strip() for ln in first_block.splitlines()[1:] if ln.strip()]
    assert commands == ["./scripts/demo", "./scripts/test"]
    for cmd in commands:
        assert (ROOT / cmd).is_file()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "./scripts/test" in ci
