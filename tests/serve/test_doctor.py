"""``kaudit doctor`` finds the reasons an audit log is empty or too big."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import yaml
from click.testing import CliRunner
from serve_harness import ServerProcess

from kaudit.cli import main
from kaudit.deploy.apiserver import ApiserverSetup
from kaudit.traffic import generate_lines


def doctor(*args: str) -> tuple[int, list[dict[str, str]]]:
    r = CliRunner().invoke(main, ["doctor", "--format", "json", *args])
    assert r.exit_code in (0, 1), r.output
    return r.exit_code, json.loads(r.output)


def messages(findings: list[dict[str, str]], status: str) -> str:
    return "\n".join(f["message"] for f in findings if f["status"] == status)


def manifest(tmp: Path, command: list[str], mounts: list[str]) -> Path:
    doc = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "kube-apiserver", "namespace": "kube-system"},
        "spec": {
            "containers": [
                {
                    "name": "kube-apiserver",
                    "command": [
                        "kube-apiserver",
                        "--etcd-servers=https://127.0.0.1:2379",
                        *command,
                    ],
                    "volumeMounts": [
                        {"name": f"v{i}", "mountPath": m} for i, m in enumerate(mounts)
                    ],
                }
            ]
        },
    }
    p = tmp / "kube-apiserver.yaml"
    p.write_text(yaml.safe_dump(doc))
    return p


def test_no_policy_flag_means_nothing_is_audited(tmp_path: Path) -> None:
    code, f = doctor(
        "--manifest", str(manifest(tmp_path, ["--audit-log-path=/var/log/a.log"], ["/var/log"]))
    )
    assert code == 1
    assert "no --audit-policy-file" in messages(f, "fail")


def test_unmounted_paths_and_bad_flags(tmp_path: Path) -> None:
    cmd = [
        "--audit-policy-file=/etc/kubernetes/audit/policy.yaml",
        "--audit-log-path=/var/log/kubernetes/audit/audit.log",
        "--audit-log-maxage=-1",
        "--audit-log-mode=fast",
    ]
    code, f = doctor("--manifest", str(manifest(tmp_path, cmd, ["/etc/kubernetes/pki"])))
    assert code == 1
    fails = messages(f, "fail")
    assert "/etc/kubernetes/audit/policy.yaml is not inside any volumeMount" in fails
    assert "/var/log/kubernetes/audit is not inside any volumeMount" in fails
    assert "--audit-log-maxage -1 can't be a negative number" in fails
    assert (
        'invalid audit log mode fast, allowed modes are "batch,blocking,blocking-strict"' in fails
    )


def test_what_setup_apiserver_writes_passes(tmp_path: Path) -> None:
    s = ApiserverSetup(url="https://audit.example.com/audit/webhook", token="t")
    patch = yaml.safe_load(s.manifest_patch())["spec"]
    c = patch["containers"][0]
    path = manifest(tmp_path, c["command"], [m["mountPath"] for m in c["volumeMounts"]])
    policy = tmp_path / "policy.yaml"
    policy.write_text(s.policy)
    code, f = doctor("--manifest", str(path), "--policy", str(policy))
    assert code == 0, f
    assert messages(f, "warn") == ""


def test_policies_that_record_nothing_or_too_much(tmp_path: Path) -> None:
    none = tmp_path / "none.yaml"
    none.write_text("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: None\n")
    code, f = doctor("--policy", str(none))
    assert code == 1 and "the audit log stays empty" in messages(f, "fail")

    everything = tmp_path / "all.yaml"
    everything.write_text(
        "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: RequestResponse\n"
    )
    code, f = doctor("--policy", str(everything))
    assert code == 1
    assert "secrets are recorded at RequestResponse" in messages(f, "fail")
    warns = messages(f, "warn")
    assert "RequestReceived is not in omitStages" in warns
    assert "expect a very large log" in warns

    invalid = tmp_path / "bad.yaml"
    invalid.write_text("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metdata\n")
    code, f = doctor("--policy", str(invalid))
    assert code == 1 and 'Unsupported value: "Metdata"' in messages(f, "fail")


def test_log_checks(tmp_path: Path) -> None:
    missing_dir = tmp_path / "nope" / "audit.log"
    code, f = doctor("--log", str(missing_dir))
    assert code == 1 and "neither the file nor its directory" in messages(f, "fail")

    empty = tmp_path / "empty.log"
    empty.write_bytes(b"")
    code, f = doctor("--log", str(empty))
    assert code == 1 and "empty" in messages(f, "fail")

    log = tmp_path / "audit.log"
    log.write_bytes(b"".join(generate_lines(3000, seed=2)))
    code, f = doctor("--log", str(log))
    assert code == 0
    assert "recent events" in messages(f, "ok")
    # The generated traffic is from the past: the log looks stale now.
    assert "is the apiserver still writing here?" in messages(f, "warn")


def test_webhook_credentials_are_tried_for_real(
    tmp_path: Path, server_factory: Callable[..., ServerProcess]
) -> None:
    server = server_factory(["--store", str(tmp_path / "store"), "--token", "c=right"]).start()
    url = f"http://127.0.0.1:{server.port}/audit/webhook"
    good, bad = tmp_path / "good", tmp_path / "bad"
    good.write_text("right")
    bad.write_text("wrong")
    # Over http the apiserver never sends a token: doctor says so, and the receiver refuses.
    code, f = doctor("--url", url, "--token-file", str(good))
    assert code == 1 and "never sent by the apiserver" in messages(f, "fail")
    server.stop()
    code, f = doctor("--url", url)
    assert code == 1 and "cannot reach it" in messages(f, "fail")


def test_nothing_to_check_is_a_usage_error() -> None:
    r = CliRunner().invoke(main, ["doctor"])
    assert r.exit_code == 2 and "nothing to check" in r.output


def test_webhook_over_tls_with_the_setup_kubeconfig(
    tmp_path: Path, server_factory: Callable[..., ServerProcess]
) -> None:
    certs = tmp_path / "certs"
    assert CliRunner().invoke(main, ["setup", "certs", "--out", str(certs)]).exit_code == 0
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
            "prod=right",
        ]
    ).start()
    url = f"https://localhost:{server.port}/audit/webhook"
    for token, expect in (("right", 0), ("wrong", 1)):
        tok = tmp_path / f"{token}.tok"
        tok.write_text(token)
        out = tmp_path / f"setup-{token}"
        r = CliRunner().invoke(
            main,
            [
                "setup",
                "apiserver",
                "--url",
                url,
                "--ca-file",
                str(certs / "ca.crt"),
                "--token-file",
                str(tok),
                "--out",
                str(out),
            ],
        )
        assert r.exit_code == 0, r.output
        code, f = doctor("--kubeconfig", str(out / "audit-webhook.kubeconfig"))
        assert code == expect, f
        if expect == 0:
            assert "reachable, authenticated, accepts batches" in messages(f, "ok")
        else:
            assert "401: the receiver refuses these credentials" in messages(f, "fail")


def test_flags_given_as_separate_arguments(tmp_path: Path) -> None:
    cmd = [
        "--audit-policy-file",
        "/etc/kubernetes/audit/policy.yaml",
        "--audit-webhook-config-file",
        "/etc/kubernetes/audit/hook.kubeconfig",
        "--audit-log-compress",
    ]
    code, f = doctor("--manifest", str(manifest(tmp_path, cmd, ["/etc/kubernetes/audit"])))
    assert code == 0, f
    assert "no --audit-policy-file" not in messages(f, "fail")
    assert "webhook backend configured" in messages(f, "ok")


def test_a_directory_given_as_the_log(tmp_path: Path) -> None:
    from kaudit.deploy.doctor import check_log

    r = CliRunner().invoke(main, ["doctor", "--log", str(tmp_path)])
    assert r.exit_code == 2 and "is a directory" in r.output
    # As the manifest's --audit-log-path (a mistake seen in the wild): a finding, no crash.
    (finding,) = check_log(tmp_path)
    assert finding.status == "fail" and "a directory, not the audit log file" in finding.message
