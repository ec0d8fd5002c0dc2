"""``kaudit ui``: the dashboard alone, read-only over a store (no webhook, no writer lock)."""

from __future__ import annotations

import asyncio
import secrets
import sys
from pathlib import Path
from typing import Any

import click

from kaudit.errors import ConfigError


def build_ui_app(config: Any, store: Any) -> Any:
    """The dashboard and its JSON twins as an ASGI app (authentication from ``config``)."""
    from starlette.applications import Starlette
    from starlette.routing import Route

    from kaudit.web.errors import EXCEPTION_HANDLERS
    from kaudit.web.server import make_authenticator
    from kaudit.web.ui.app import root_redirect, ui_routes

    routes = ui_routes(store, make_authenticator(config), tls=config.tls)
    routes.append(Route("/", root_redirect, methods=["GET"]))
    return Starlette(routes=routes, exception_handlers=EXCEPTION_HANDLERS)


@click.command()
@click.option(
    "--store",
    "store_path",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    envvar="KAUDIT_STORE",
    help="Directory of the store. Unset: $KAUDIT_STORE or ./kaudit-data.",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", type=int, default=8080, show_default=True, help="TCP port (0 picks a free one)."
)
@click.option(
    "--token",
    "tokens",
    multiple=True,
    metavar="NAME=SECRET",
    help="A bearer token that may log in (repeatable); NAME is the identity. Without any "
    "token, client CA or --insecure, a random token is made and printed.",
)
@click.option(
    "--tokens-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="File of bearer tokens: lines NAME=SECRET or a YAML map.",
)
@click.option(
    "--tls-cert",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="PEM certificate (chain) served over TLS.",
)
@click.option(
    "--tls-key",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="PEM private key of --tls-cert.",
)
@click.option(
    "--client-ca",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="PEM CA bundle: browsers presenting a certificate it signed are logged in.",
)
@click.option(
    "--read-identity",
    "read_identities",
    multiple=True,
    help="Identities allowed in (repeatable); empty: every authenticated identity.",
)
@click.option(
    "--insecure",
    is_flag=True,
    default=False,
    help="No authentication at all (everyone is the anonymous identity).",
)
def ui(
    store_path: Path | None,
    host: str,
    port: int,
    tokens: tuple[str, ...],
    tokens_file: Path | None,
    tls_cert: Path | None,
    tls_key: Path | None,
    client_ca: Path | None,
    read_identities: tuple[str, ...],
    insecure: bool,
) -> None:
    """Serve the dashboard over a store: overview, search, events, object history,
    timelines, alerts and policy checks (also as JSON under /api/v1).

    Read-only: it can run next to `kaudit serve` on the same store. Log in with a
    bearer token (or a client certificate); `kaudit serve` offers the same pages
    under /ui.
    """
    import uvicorn

    from kaudit.config import check_config, load_config
    from kaudit.store import open_store
    from kaudit.web.server import uvicorn_config

    generated = None
    token_list = list(tokens)
    if not insecure and not tokens and tokens_file is None and client_ca is None:
        generated = secrets.token_urlsafe(24)
        token_list = [f"ui={generated}"]
    flags: dict[str, object] = {
        "store_path": str(store_path) if store_path else None,
        "listen_address": host,
        "port": port,
        "tokens": token_list,
        "tokens_file": str(tokens_file) if tokens_file else None,
        "tls_cert_file": str(tls_cert) if tls_cert else None,
        "tls_key_file": str(tls_key) if tls_key else None,
        "client_ca_file": str(client_ca) if client_ca else None,
        "read_identities": list(read_identities),
        "insecure": insecure,
    }
    config = load_config(None, flags={k: v for k, v in flags.items() if v not in (None, [])})
    problems = [p for p in check_config(config) if "transform" not in p]
    if problems:
        raise ConfigError(
            problems[0] if len(problems) == 1 else f"{len(problems)} configuration problems",
            problems,
        )
    from kaudit.config import resolve_store_path

    path = resolve_store_path(config)
    if not Path(path).is_dir():
        raise ConfigError(f"--store: {path}: no such store directory: expected a kaudit store")
    store = open_store(path, create=False)
    app = build_ui_app(config, store)
    server = uvicorn.Server(uvicorn_config(config, app))
    scheme = "https" if config.tls else "http"

    async def main() -> None:
        task = asyncio.create_task(server.serve())
        while not server.started and not task.done():
            await asyncio.sleep(0.02)
        if server.started:
            bound = port
            for s in server.servers:
                for sock in s.sockets:
                    bound = sock.getsockname()[1]
            url = f"{scheme}://{host}:{bound}/ui"
            click.echo(f"kaudit ui: serving {store.path} on {url}", err=True)
            if generated is not None:
                click.echo(f"kaudit ui: log in with the token {generated}", err=True)
            sys.stderr.flush()
        await task

    asyncio.run(main())
    if not server.started:
        raise ConfigError(f"cannot listen on {host}:{port}")
