"""The ``kaudit`` command.

Subcommands live in their own modules and are imported only when used, so that
``kaudit query`` does not pay for the web server's imports (and vice versa).
Errors from the :mod:`kaudit.errors` tree become a message on stderr and the
error's exit code here, in one place.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from typing import Any

import click

from kaudit import __version__
from kaudit.errors import KauditError

# name -> "module:attribute" (relative to kaudit.cli). A module that does not exist
# yet is simply not offered.
COMMANDS: dict[str, str] = {
    "demo": "demo:demo",
    "convert": "convert:convert",
    "policy": "policy:policy",
    "ingest": "ingest:ingest",
    "query": "query:query",
    "sql": "query:sql",
    "history": "investigate:history",
    "timeline": "investigate:timeline",
    "stats": "investigate:stats",
    "verify": "store:verify",
    "retention": "store:retention",
    "compact": "store:compact",
    "serve": "serve:serve",
    "validate": "serve:validate",
    "setup": "setup:setup",
    "doctor": "doctor:doctor",
    "rules": "rules:rules",
    "hunt": "rules:hunt",
    "alerts": "rules:alerts",
    "ui": "ui:ui",
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        lazy = {n for n in COMMANDS if _module_exists(COMMANDS[n])}
        return sorted(lazy | set(self.commands))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.commands:
            return self.commands[cmd_name]
        target = COMMANDS.get(cmd_name)
        if target is None or not _module_exists(target):
            return None
        mod_name, attr = target.split(":")
        module = importlib.import_module(f"kaudit.cli.{mod_name}")
        cmd = getattr(module, attr)
        assert isinstance(cmd, click.Command)
        return cmd

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KauditError as exc:
            report_error(exc)
            ctx.exit(exc.exit_code)


def _module_exists(target: str) -> bool:
    mod_name = target.split(":")[0]
    return importlib.util.find_spec(f"kaudit.cli.{mod_name}") is not None


def report_error(exc: KauditError) -> None:
    """Print an error the way every kaudit command does: one problem per line.

    Errors that collect several problems (configuration, policy decoding, integrity,
    rule sets) carry them in ``problems``.
    """
    found = getattr(exc, "problems", None)
    problems = [str(p) for p in found] if isinstance(found, list) and found else [str(exc)]
    for p in problems:
        click.echo(f"error: {p}", err=True)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="kaudit")
def main() -> None:
    """kaudit: collect, keep, query and watch the Kubernetes audit record."""


def run() -> None:  # pragma: no cover - console entry point alias
    main(prog_name="kaudit")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
