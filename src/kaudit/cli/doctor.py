"""``kaudit doctor``: diagnose an apiserver's audit set-up end to end."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.option(
    "--manifest",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The kube-apiserver static pod manifest (flags, volumes).",
)
@click.option(
    "--policy",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The audit policy file (default: the one the manifest names, if readable here).",
)
@click.option(
    "--log",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The audit log file (default: the manifest's --audit-log-path, if readable here).",
)
@click.option("--url", help="The webhook URL to try (an empty EventList is POSTed).")
@click.option(
    "--kubeconfig",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="The webhook kubeconfig: try the webhook exactly as the apiserver would.",
)
@click.option(
    "--token-file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="With --url: the bearer token to send.",
)
@click.option(
    "--ca-file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="With --url: the CA that signed the receiver's certificate.",
)
@click.option(
    "--store",
    type=click.Path(file_okay=False, path_type=Path),
    help="A kaudit store: are events arriving?",
)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
def doctor(
    manifest: Path | None,
    policy: Path | None,
    log: Path | None,
    url: str | None,
    kubeconfig: Path | None,
    token_file: Path | None,
    ca_file: Path | None,
    store: Path | None,
    fmt: str,
) -> None:
    """Why is the audit log empty, or too big? Check each link of the chain.

    Exit status 1 when any check fails.

    \b
    Examples:
      kaudit doctor --manifest /etc/kubernetes/manifests/kube-apiserver.yaml
      kaudit doctor --kubeconfig /etc/kubernetes/audit/audit-webhook.kubeconfig --store kaudit-data
    """
    from kaudit.deploy import doctor as d

    findings: list[d.Finding] = []
    if manifest is not None:
        found, flags = d.check_manifest(manifest)
        findings += found
        flags = {k: v for k, v in flags.items() if v}
        if policy is None and flags.get("--audit-policy-file"):
            candidate = Path(flags["--audit-policy-file"])
            if candidate.is_file():
                policy = candidate
        if log is None and flags.get("--audit-log-path", "-") != "-":
            candidate = Path(flags["--audit-log-path"])
            if candidate.parent.is_dir():
                log = candidate
        if kubeconfig is None and url is None and flags.get("--audit-webhook-config-file"):
            candidate = Path(flags["--audit-webhook-config-file"])
            if candidate.is_file():
                kubeconfig = candidate
    if policy is not None:
        findings += d.check_policy(policy)
    if log is not None:
        findings += d.check_log(log)
    if kubeconfig is not None:
        try:
            hook = d.Webhook.from_kubeconfig(kubeconfig)
        except (OSError, KeyError, IndexError, StopIteration, TypeError, ValueError) as exc:
            findings.append(
                d.Finding(d.FAIL, "webhook", f"{kubeconfig}: unusable kubeconfig: {exc}")
            )
        else:
            findings += d.check_webhook(hook)
    elif url is not None:
        findings += d.check_webhook(
            d.Webhook(
                url,
                token=token_file.read_text().strip() if token_file else None,
                ca=ca_file.read_bytes() if ca_file else None,
            )
        )
    if store is not None:
        findings += d.check_store(store)
    if not findings:
        raise click.UsageError(
            "nothing to check: give --manifest, --policy, --log, --url/--kubeconfig or --store"
        )
    if fmt == "json":
        click.echo(d.to_json(findings))
    else:
        colour = {d.OK: "green", d.WARN: "yellow", d.FAIL: "red"}
        for f in findings:
            click.echo(
                click.style(f"{f.status:4}", fg=colour[f.status]) + f"  {f.check:8} {f.message}"
            )
            if f.fix:
                click.echo(f"{'':14} fix: {f.fix}")
    if any(f.status == d.FAIL for f in findings):
        raise SystemExit(1)
