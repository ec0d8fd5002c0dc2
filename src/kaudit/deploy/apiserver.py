"""``kaudit setup apiserver``: everything a kube-apiserver needs to send its audit record.

Writes, into one directory, what guides otherwise walk through by hand:

* ``audit-policy.yaml`` — kaudit's default policy (commented), or the one given;
* ``audit-webhook.kubeconfig`` — the webhook backend's kubeconfig (spec 8.3): the
  receiver's URL, the CA that signed its certificate, and the credentials (bearer
  token or client certificate, embedded so the file is self-contained; 0600);
* ``kube-apiserver-flags.txt`` — the audit flags, one per line;
* ``kube-apiserver-patch.yaml`` — the additions to the kube-apiserver static pod
  manifest: the flags, and the volumes and volumeMounts for the policy, the
  kubeconfig and the log directory;
* ``NEXT-STEPS.txt`` — what to copy where, and the matching ``kaudit serve`` command.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from kaudit.errors import ConfigError

#: Where the files go on a control-plane node (kubeadm's conventions).
DEFAULT_CONFIG_DIR = "/etc/kubernetes/audit"
DEFAULT_LOG_DIR = "/var/log/kubernetes/audit"


def default_policy() -> str:
    """kaudit's default audit policy (YAML text, commented)."""
    return resources.files("kaudit.policies").joinpath("default.yaml").read_text()


@dataclass
class ApiserverSetup:
    url: str
    token: str | None = None
    client_cert: bytes | None = None
    client_key: bytes | None = None
    ca: bytes | None = None
    policy: str = field(default_factory=default_policy)
    config_dir: str = DEFAULT_CONFIG_DIR
    log_dir: str | None = DEFAULT_LOG_DIR
    batch_max_wait_secs: int = 5
    log_maxage_days: int = 30
    log_maxbackup: int = 10
    log_maxsize_mb: int = 100
    name: str = "kaudit"

    def check(self) -> None:
        problems: list[str] = []
        parts = urlsplit(self.url)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            problems.append(
                f"--url: {self.url!r} is not an http(s) URL "
                "(expected https://HOST:PORT/audit/webhook)"
            )
        elif parts.scheme == "http" and self.token:
            problems.append(
                "--url: the apiserver sends a bearer token only over https; "
                "use an https:// URL (or client certificates)"
            )
        elif parts.scheme == "http" and self.client_cert is not None:
            problems.append("--url: client certificates need TLS: use an https:// URL")
        if parts.query:
            problems.append("--url: the apiserver drops the query string of the server URL")
        if self.token is None and self.client_cert is None:
            problems.append(
                "credentials: give --token-file, or --client-cert and --client-key "
                "(kaudit serve requires authentication)"
            )
        if (self.client_cert is None) != (self.client_key is None):
            problems.append("--client-cert and --client-key go together")
        if self.token is not None and not self.token.strip():
            problems.append("--token-file: the file is empty")
        if problems:
            raise ConfigError(problems[0], problems)

    # --- the files -------------------------------------------------------------------

    def kubeconfig(self) -> str:
        cluster: dict[str, object] = {"server": self.url}
        if self.ca is not None:
            cluster["certificate-authority-data"] = base64.b64encode(self.ca).decode()
        user: dict[str, object] = {}
        if self.token is not None:
            user["token"] = self.token.strip()
        if self.client_cert is not None and self.client_key is not None:
            user["client-certificate-data"] = base64.b64encode(self.client_cert).decode()
            user["client-key-data"] = base64.b64encode(self.client_key).decode()
        doc = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": self.name, "cluster": cluster}],
            "users": [{"name": self.name, "user": user}],
            "contexts": [{"name": self.name, "context": {"cluster": self.name, "user": self.name}}],
            "current-context": self.name,
        }
        header = (
            "# The kube-apiserver's audit webhook kubeconfig (--audit-webhook-config-file).\n"
            "# It holds a credential: keep it 0600, readable by the apiserver only.\n"
        )
        return header + yaml.safe_dump(doc, sort_keys=False)

    def flags(self) -> list[str]:
        flags = [
            f"--audit-policy-file={self.config_dir}/audit-policy.yaml",
            f"--audit-webhook-config-file={self.config_dir}/audit-webhook.kubeconfig",
            "--audit-webhook-mode=batch",
            "--audit-webhook-batch-max-size=400",
            f"--audit-webhook-batch-max-wait={self.batch_max_wait_secs}s",
            "--audit-webhook-truncate-enabled=true",
        ]
        if self.log_dir is not None:
            flags += [
                f"--audit-log-path={self.log_dir}/audit.log",
                f"--audit-log-maxage={self.log_maxage_days}",
                f"--audit-log-maxbackup={self.log_maxbackup}",
                f"--audit-log-maxsize={self.log_maxsize_mb}",
                "--audit-log-compress=true",
            ]
        return flags

    def manifest_patch(self) -> str:
        mounts: list[dict[str, object]] = [
            {"name": "kaudit-audit-config", "mountPath": self.config_dir, "readOnly": True}
        ]
        volumes: list[dict[str, object]] = [
            {
                "name": "kaudit-audit-config",
                "hostPath": {"path": self.config_dir, "type": "DirectoryOrCreate"},
            }
        ]
        if self.log_dir is not None:
            mounts.append({"name": "kaudit-audit-log", "mountPath": self.log_dir})
            volumes.append(
                {
                    "name": "kaudit-audit-log",
                    "hostPath": {"path": self.log_dir, "type": "DirectoryOrCreate"},
                }
            )
        doc = {
            "spec": {
                "containers": [
                    {"name": "kube-apiserver", "command": self.flags(), "volumeMounts": mounts}
                ],
                "volumes": volumes,
            }
        }
        header = (
            "# Additions to /etc/kubernetes/manifests/kube-apiserver.yaml (static pod).\n"
            "# Append the command entries to the kube-apiserver container's command, and the\n"
            "# volumeMounts and volumes to the existing lists. The kubelet restarts the\n"
            "# apiserver when the manifest changes.\n"
        )
        return header + yaml.safe_dump(doc, sort_keys=False)

    def next_steps(self, out: Path, serve_hint: str) -> str:
        lines = [
            "1. On each control-plane node, copy the policy and the kubeconfig:",
            f"     install -d -m 0700 {self.config_dir}",
            f"     install -m 0600 {out}/audit-policy.yaml {out}/audit-webhook.kubeconfig "
            f"{self.config_dir}/",
        ]
        if self.log_dir is not None:
            lines.append(f"     install -d -m 0700 {self.log_dir}")
        lines += [
            "2. Add kube-apiserver-patch.yaml to /etc/kubernetes/manifests/kube-apiserver.yaml",
            "   (flags, volumeMounts, volumes). The kubelet restarts the apiserver.",
            "3. Run the receiver where the URL points:",
            f"     {serve_hint}",
            "4. Check the whole path, as the apiserver sees it:",
            "     kaudit doctor --manifest /etc/kubernetes/manifests/kube-apiserver.yaml "
            f"--kubeconfig {self.config_dir}/audit-webhook.kubeconfig",
        ]
        return "\n".join(lines) + "\n"

    def write(self, out: Path, *, force: bool = False, serve_hint: str = "") -> list[Path]:
        """Write every file into ``out``; refuses to overwrite unless ``force``."""
        self.check()
        out.mkdir(parents=True, exist_ok=True, mode=0o700)
        files = {
            "audit-policy.yaml": (self.policy, 0o600),
            "audit-webhook.kubeconfig": (self.kubeconfig(), 0o600),
            "kube-apiserver-flags.txt": ("\n".join(self.flags()) + "\n", 0o644),
            "kube-apiserver-patch.yaml": (self.manifest_patch(), 0o644),
            "NEXT-STEPS.txt": (self.next_steps(out, serve_hint), 0o644),
        }
        existing = [n for n in files if (out / n).exists()]
        if existing and not force:
            raise ConfigError(
                f"{out}: {', '.join(existing)} already exist; use --force to replace them"
            )
        written = []
        for name, (text, mode) in files.items():
            path = out / name
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
            with os.fdopen(fd, "w") as f:
                f.write(text)
            os.chmod(path, mode)
            written.append(path)
        return written


__all__ = ["DEFAULT_CONFIG_DIR", "DEFAULT_LOG_DIR", "ApiserverSetup", "default_policy"]
