"""The ``kaudit`` command shell: lazy subcommands and one place for errors and exit codes."""

from __future__ import annotations

import subprocess
import sys

import click
from click.testing import CliRunner

import kaudit
from kaudit.cli import COMMANDS, LazyGroup, main
from kaudit.errors import ConfigError, DecodeError, KauditError, Location


def test_version() -> None:
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert kaudit.__version__ in result.output


def test_help_lists_every_available_command() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    listed = main.list_commands(click.Context(main))
    assert listed, "no subcommand is available"
    for name in listed:
        assert name in result.output
        assert name in COMMANDS


def test_unknown_command_is_a_usage_error() -> None:
    result = CliRunner().invoke(main, ["no-such-command"])
    assert result.exit_code == 2
    assert "No such command" in result.output


def _group_raising(exc: KauditError) -> click.Group:
    @click.group(cls=LazyGroup)
    def g() -> None:
        pass

    @g.command()
    def boom() -> None:
        raise exc

    return g


def test_errors_become_messages_and_exit_codes() -> None:
    r = CliRunner().invoke(
        _group_raising(DecodeError("expected an object", Location("a.log", 3))), ["boom"]
    )
    assert r.exit_code == 1
    assert r.output.strip() == "error: a.log:3: expected an object"

    r = CliRunner().invoke(_group_raising(ConfigError("bad", ["x: unknown", "y: bad"])), ["boom"])
    assert r.exit_code == 78
    assert r.output.splitlines() == ["error: x: unknown", "error: y: bad"]


def test_module_entry_point_runs() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "kaudit", "--version"], capture_output=True, text=True, check=True
    )
    assert kaudit.__version__ in out.stdout
