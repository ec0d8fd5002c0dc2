"""The CLI reference (``docs/cli.md``), generated from the real ``--help`` of every command.

``python -m kaudit.cli.reference > docs/cli.md`` regenerates it; a test fails when the
committed file and the commands disagree, so the reference cannot drift.
"""

from __future__ import annotations

import click

from kaudit.cli import main

HEADER = """# kaudit command reference

Generated from the commands' own `--help` by `python -m kaudit.cli.reference > docs/cli.md`;
a test fails when this page and the commands disagree.
"""


def _walk(cmd: click.Command, path: list[str], ctx: click.Context | None) -> list[str]:
    sub_ctx = click.Context(
        cmd,
        info_name=path[-1],
        parent=ctx,
        terminal_width=100,
        max_content_width=100,
        **cmd.context_settings,
    )
    out = [f"\n## `{' '.join(path)}`\n", "```text", cmd.get_help(sub_ctx).rstrip(), "```"]
    if isinstance(cmd, click.Group):
        for name in cmd.list_commands(sub_ctx):
            child = cmd.get_command(sub_ctx, name)
            if child is not None and not child.hidden:
                out += _walk(child, [*path, name], sub_ctx)
    return out


def render() -> str:
    """The whole reference as Markdown."""
    return HEADER + "\n".join(_walk(main, ["kaudit"], None)) + "\n"


if __name__ == "__main__":  # pragma: no cover
    click.echo(render(), nl=False)
