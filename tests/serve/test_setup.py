"""``kaudit setup``: the files it writes really connect an apiserver-like client to kaudit."""

from __future__ import annotations

import base64
import ssl
import stat
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import yaml
from click.testing import CliRunner
from cryptography import x509
from serve_harness import ServerProcess, event_list, events

from kaudit.cli import main
from kaudit.policy import load_policy
from kaudit.store import open_store


def run(*args: str) -> tuple[int, str]:
    r = CliRunner().invoke(main, list(args))
    return r.exit_code, r.output


def as_apiserver(kubeconfig: Path, tmp: Path) -> tuple[str, httpx.Client]:
    """An HTTP client configured from the webhook kubeconfig the way the apiserver is."""
    cfg = yaml.safe_load(kubeconfig.read_text())
    ctx = next(c for c in cfg["contexts"] if c["name"] == cfg["current-context"])["context"]
    cluster = next(c for c in cfg["clusters"] if c["name"] == ctx["cluster"])["cluster"]
    user = next(u for u in cfg["users"] if u["name"] == ctx["user"])["user"]
    ca = tmp / "ca-from-kubeconfig.crt"
    ca.write_bytes(base64.b64decode(cluster["certificate-authority-data"]))
    headers = {"Content-Type": "application/json", "Accept": "application/json, */*"}
    tls = ssl.create_default_context(cafile=str(ca))
    if "token" in user:
        headers["Authorization"] = f"Bearer {user['token']}"
    if "client-certificate-data" in user:
        crt, key = tmp / "c.crt", tmp / "c.key"
        crt.write_bytes(base64.b64decode(user["client-certificate-data"]))
        key.write_bytes(base64.b64decode(user["client-key-data"]))
        tls.load_cert_chain(crt, key)
    client = httpx.Client(verify=tls, headers=headers, timeout=30)
    return cluster["server"] + "?timeout=30s", client


def clusters(store_dir: Path) -> list[str]:
    deadline = time.monotonic() + 10
    while True:
        got = open_store(store_dir, create=False).query("select distinct cluster from events")
        names = sorted(got.column("cluster").to_pylist())
        if names or time.monotonic() > deadline:
            return names
        time.sleep(0.1)


def test_certs_are_private_and_name_the_hosts(tmp_path: Path) -> None:
    out = tmp_path / "certs"
    code, text = run(
        "setup",
        "certs",
        "--out",
        str(out),
        "--host",
        "audit.example.com",
        "--host",
        "10.1.2.3",
        "--client-name",
        "prod-eu-1",
    )
    assert code == 0, text
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    for key in ("ca.key", "server.key", "client.key"):
        assert stat.S_IMODE((out / key).stat().st_mode) == 0o600
    server = x509.load_pem_x509_certificate((out / "server.crt").read_bytes())
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["audit.example.com"]
    assert [str(i) for i in sans.get_values_for_type(x509.IPAddress)] == ["10.1.2.3"]
    client = x509.load_pem_x509_certificate((out / "client.crt").read_bytes())
    assert client.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == "prod-eu-1"
    # Never overwrite keys by accident.
    code, text = run("setup", "certs", "--out", str(out))
    assert code == 78 and "already exist; use --force" in text


def test_client_certificate_path_end_to_end(
    tmp_path: Path, server_factory: Callable[..., ServerProcess]
) -> None:
    certs = tmp_path / "certs"
    assert run("setup", "certs", "--out", str(certs), "--client-name", "prod-eu-1")[0] == 0
    store = tmp_path / "store"
    server = server_factory(
        [
            "--store",
            str(store),
            "--tls-cert",
            str(certs / "server.crt"),
            "--tls-key",
            str(certs / "server.key"),
            "--client-ca",
            str(certs / "ca.crt"),
        ]
    ).start()
    out = tmp_path / "apiserver"
    code, text = run(
        "setup",
        "apiserver",
        "--url",
        f"https://localhost:{server.port}/audit/webhook",
        "--ca-file",
        str(certs / "ca.crt"),
        "--client-cert",
        str(certs / "client.crt"),
        "--client-key",
        str(certs / "client.key"),
        "--out",
        str(out),
    )
    assert code == 0, text
    assert stat.S_IMODE((out / "audit-webhook.kubeconfig").stat().st_mode) == 0o600
    url, client = as_apiserver(out / "audit-webhook.kubeconfig", tmp_path)
    with client:
        r = client.post(url, content=event_list(events(50)))
    assert r.status_code == 200, r.text
    assert clusters(store) == ["prod-eu-1"]
    server.stop()
    # The policy written is valid, and the flags point at the files written.
    load_policy(out / "audit-policy.yaml")
    flags = (out / "kube-apiserver-flags.txt").read_text().splitlines()
    assert "--audit-policy-file=/etc/kubernetes/audit/audit-policy.yaml" in flags
    assert "--audit-webhook-config-file=/etc/kubernetes/audit/audit-webhook.kubeconfig" in flags
    patch = yaml.safe_load((out / "kube-apiserver-patch.yaml").read_text())
    mounts = patch["spec"]["containers"][0]["volumeMounts"]
    assert {m["mountPath"] for m in mounts} == {
        "/etc/kubernetes/audit",
        "/var/log/kubernetes/audit",
    }


def test_token_path_end_to_end(
    tmp_path: Path, server_factory: Callable[..., ServerProcess]
) -> None:
    certs = tmp_path / "certs"
    assert run("setup", "certs", "--out", str(certs))[0] == 0
    token = tmp_path / "token"
    token.write_text("t0ken-value\n")
    store = tmp_path / "store"
    server = server_factory(
        [
            "--store",
            str(store),
            "--tls-cert",
            str(certs / "server.crt"),
            "--tls-key",
            str(certs / "server.key"),
            "--token",
            "staging=t0ken-value",
        ]
    ).start()
    out = tmp_path / "apiserver"
    code, text = run(
        "setup",
        "apiserver",
        "--url",
        f"https://127.0.0.1:{server.port}/audit/webhook",
        "--ca-file",
        str(certs / "ca.crt"),
        "--token-file",
        str(token),
        "--no-log",
        "--out",
        str(out),
    )
    assert code == 0, text
    assert "t0ken-value" not in text  # the token is not echoed
    url, client = as_apiserver(out / "audit-webhook.kubeconfig", tmp_path)
    with client:
        assert client.post(url, content=event_list(events(10))).status_code == 200
    assert clusters(store) == ["staging"]
    assert not any("audit-log" in f for f in (out / "kube-apiserver-flags.txt").read_text().split())


def test_setup_apiserver_refuses_what_would_not_work(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("x")
    code, text = run(
        "setup", "apiserver", "--url", "https://h/audit/webhook", "--out", str(tmp_path / "a")
    )
    assert code == 78 and "give --token-file, or --client-cert and --client-key" in text
    code, text = run(
        "setup",
        "apiserver",
        "--url",
        "http://h:80/audit/webhook",
        "--token-file",
        str(token),
        "--out",
        str(tmp_path / "b"),
    )
    assert code == 78 and "only over https" in text
    code, text = run(
        "setup",
        "apiserver",
        "--url",
        "audit.example.com",
        "--token-file",
        str(token),
        "--out",
        str(tmp_path / "c"),
    )
    assert code == 78 and "is not an http(s) URL" in text
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metdata\n")
    code, text = run(
        "setup",
        "apiserver",
        "--url",
        "https://h/audit/webhook",
        "--token-file",
        str(token),
        "--policy",
        str(bad),
        "--out",
        str(tmp_path / "d"),
    )
    assert code == 1 and "Unsupported value" in text
    assert not (tmp_path / "d").exists()


def test_client_certificates_need_https(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    assert run("setup", "certs", "--out", str(certs))[0] == 0
    code, text = run(
        "setup",
        "apiserver",
        "--url",
        "http://h:8080/audit/webhook",
        "--client-cert",
        str(certs / "client.crt"),
        "--client-key",
        str(certs / "client.key"),
        "--out",
        str(tmp_path / "o"),
    )
    assert code == 78 and "client certificates need TLS" in text
