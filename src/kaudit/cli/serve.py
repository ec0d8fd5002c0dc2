"""``kaudit serve`` and ``kaudit validate``: options generated from the settings table."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from kaudit.config import SETTINGS, Setting, load_config
from kaudit.config import validate as validate_config

F = TypeVar("F", bound=Callable[..., Any])


def _option(setting: Setting) -> Callable[[F], F]:
    help_text = f"{setting.help} [env {setting.env_var}]"
    param = setting.name
    if setting.type == "bool":
        flag = setting.flag_name
        return click.option(f"{flag}/--no-{flag[2:]}", param, default=None, help=help_text)
    if setting.type in ("list", "tokens"):
        metavar = "NAME=SECRET" if setting.type == "tokens" else "VALUE"
        return click.option(
            setting.flag_name, param, multiple=True, metavar=metavar, help=help_text
        )
    ptype: Any = str
    if setting.type == "int":
        ptype = int
    elif setting.type == "choice":
        ptype = click.Choice(setting.choices)
    return click.option(
        setting.flag_name,
        param,
        type=ptype,
        default=None,
        metavar="PATH" if setting.type == "path" else None,
        help=help_text,
    )


def settings_options(func: F) -> F:
    for setting in reversed(SETTINGS):
        func = _option(setting)(func)
    return click.option(
        "--config",
        "config_file",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        envvar="KAUDIT_CONFIG",
        help="YAML file of settings (kaudit.yaml). [env KAUDIT_CONFIG]",
    )(func)


def _flags(kwargs: dict[str, Any]) -> dict[str, object]:
    return {s.name: kwargs.get(s.name) for s in SETTINGS}


@click.command()
@settings_options
def serve(config_file: Path | None, **kwargs: Any) -> None:
    """Receive audit events from the apiserver's webhook backend into the store.

    Answers 200 only once a batch is durable; the apiserver retries anything else and
    duplicates (the same auditID, stage and bytes) are dropped. Precedence: flags >
    environment (KAUDIT_...) > --config file > defaults.
    """
    from kaudit.web.server import serve as run

    config = load_config(config_file, flags=_flags(kwargs))
    run(config)


@click.command()
@settings_options
def validate(config_file: Path | None, **kwargs: Any) -> None:
    """Check the serve configuration end to end and report every problem (exit 78)."""
    config = validate_config(config_file, flags=_flags(kwargs))
    auth = []
    if config.tokens or config.tokens_file:
        auth.append("bearer tokens")
    if config.client_ca_file:
        auth.append("client certificates")
    scheme = "https" if config.tls else "http"
    click.echo(
        f"ok: {scheme}://{config.listen_address}:{config.port}{config.webhook_path}, "
        f"authentication: {', '.join(auth) or 'none'}"
    )
