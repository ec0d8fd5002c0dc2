"""``kaudit setup``: certificates for trying kaudit out, and a kube-apiserver's audit set-up."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import click

from kaudit.errors import ConfigError


@click.group()
def setup() -> None:
    """Write what a kube-apiserver needs to send its audit record to kaudit."""


@setup.command()
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("kaudit-certs"),
    show_default=True,
    help="Directory for ca.crt/key, server.crt/key and client.crt/key.",
)
@click.option(
    "--host",
    "hosts",
    multiple=True,
    help="DNS name or IP the apiserver dials (repeatable; the server certificate's "
    "subjectAltNames). [default: localhost, 127.0.0.1]",
)
@click.option(
    "--client-name",
    default="cluster",
    show_default=True,
    help="CN of the client certificate: the identity (cluster column) of its events.",
)
@click.option("--days", type=click.IntRange(1, 3650), default=365, show_default=True)
@click.option("--force", is_flag=True, help="Replace existing files.")
def certs(out: Path, hosts: tuple[str, ...], client_name: str, days: int, force: bool) -> None:
    """Make a CA, a server and a client certificate for trying kaudit out.

    \b
    Example:
      kaudit setup certs --host audit.example.com --client-name prod-eu-1
      kaudit serve --host 0.0.0.0 --port 8443 --tls-cert kaudit-certs/server.crt \\
          --tls-key kaudit-certs/server.key --client-ca kaudit-certs/ca.crt
    """
    from kaudit.deploy.certs import make_certs

    made = make_certs(out, hosts or ("localhost", "127.0.0.1"), client_name, days=days, force=force)
    click.echo(f"wrote {', '.join(sorted(p.name for p in out.iterdir()))} in {made.directory}")
    click.echo(f"server names: {', '.join(made.hosts)}; client identity: {made.client_name}")


@setup.command()
@click.option(
    "--url",
    required=True,
    help="Where the apiserver POSTs its batches: https://HOST:PORT/audit/webhook.",
)
@click.option(
    "--token-file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="File holding the bearer token the apiserver sends.",
)
@click.option("--token-name", default="cluster", show_default=True, help="Name of that token.")
@click.option(
    "--client-cert",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Client certificate the apiserver presents (PEM).",
)
@click.option(
    "--client-key",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Its private key (PEM).",
)
@click.option(
    "--ca-file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="CA that signed kaudit's server certificate (embedded in the kubeconfig).",
)
@click.option(
    "--policy",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Audit policy to install instead of kaudit's default.",
)
@click.option(
    "--config-dir",
    default="/etc/kubernetes/audit",
    show_default=True,
    help="Where the policy and kubeconfig go on the control-plane node.",
)
@click.option(
    "--log-dir",
    default="/var/log/kubernetes/audit",
    show_default=True,
    help="Where the apiserver also writes audit.log (rotated, compressed).",
)
@click.option("--no-log", is_flag=True, help="Webhook only: no --audit-log-path.")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("kaudit-apiserver"),
    show_default=True,
    help="Directory to write the files into.",
)
@click.option("--force", is_flag=True, help="Replace existing files.")
def apiserver(
    url: str,
    token_file: Path | None,
    token_name: str,
    client_cert: Path | None,
    client_key: Path | None,
    ca_file: Path | None,
    policy: Path | None,
    config_dir: str,
    log_dir: str,
    no_log: bool,
    out: Path,
    force: bool,
) -> None:
    """Write the webhook kubeconfig, audit policy, flags and static-pod additions.

    \b
    Example (with the certificates of `kaudit setup certs`):
      kaudit setup apiserver --url https://audit.example.com:8443/audit/webhook \\
          --ca-file kaudit-certs/ca.crt \\
          --client-cert kaudit-certs/client.crt --client-key kaudit-certs/client.key
    """
    from kaudit.deploy.apiserver import ApiserverSetup
    from kaudit.policy import load_policy

    setup_ = ApiserverSetup(
        url=url,
        token=token_file.read_text() if token_file else None,
        client_cert=client_cert.read_bytes() if client_cert else None,
        client_key=client_key.read_bytes() if client_key else None,
        ca=ca_file.read_bytes() if ca_file else None,
        config_dir=config_dir.rstrip("/"),
        log_dir=None if no_log else log_dir.rstrip("/"),
    )
    if policy is not None:
        load_policy(policy)  # refuse an invalid policy before writing anything
        setup_.policy = policy.read_text()
    parts = urlsplit(url)
    serve = ["kaudit", "serve", "--host", "0.0.0.0", "--port", str(parts.port or 443)]
    if parts.path and parts.path != "/audit/webhook":
        serve += ["--webhook-path", parts.path]
    if parts.scheme == "https":
        serve += ["--tls-cert", "server.crt", "--tls-key", "server.key"]
    if token_file is not None:
        # A file, not a flag: a token on the command line shows in `ps`.
        serve += ["--tokens-file", f"tokens.txt  # one line: {token_name}=<the token>"]
    if client_cert is not None:
        serve += ["--client-ca", str(ca_file or "ca.crt")]
    if token_file is None and client_cert is None:
        raise ConfigError(
            "credentials: give --token-file, or --client-cert and --client-key "
            "(kaudit serve requires authentication)"
        )
    written = setup_.write(out, force=force, serve_hint=" ".join(serve))
    for p in written:
        click.echo(f"wrote {p}")
    click.echo()
    click.echo((out / "NEXT-STEPS.txt").read_text(), nl=False)
