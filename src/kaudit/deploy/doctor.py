"""``kaudit doctor``: why is the audit log empty, or too big?

Each check returns :class:`Finding` rows (``ok``, ``warn`` or ``fail``) that say what
was found and, when something is wrong, how to fix it. The checks follow the
apiserver's own rules (spec sections 5.5, 8 and 9): no policy file means no
auditing at all; a policy whose every rule is None records nothing; a path the
apiserver container does not mount is invisible to it; RequestResponse everywhere
and RequestReceived kept multiply the volume.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import tempfile
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

OK, WARN, FAIL = "ok", "warn", "fail"

EMPTY_EVENT_LIST = b'{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":[]}\n'


@dataclass(frozen=True)
class Finding:
    status: str
    check: str
    message: str
    fix: str = ""


# --- the kube-apiserver manifest ---------------------------------------------------


def _apiserver_flags(doc: Any) -> tuple[dict[str, str], list[str]] | None:
    """The kube-apiserver container's ``--flag=value`` map and its mount paths."""
    spec = doc.get("spec", {}) if isinstance(doc, dict) else {}
    for c in spec.get("containers") or []:
        cmd = [str(x) for x in (c.get("command") or []) + (c.get("args") or [])]
        if c.get("name") == "kube-apiserver" or any("kube-apiserver" in x for x in cmd[:1]):
            flags: dict[str, str] = {}
            i = 0
            while i < len(cmd):
                arg = cmd[i]
                i += 1
                if not arg.startswith("--"):
                    continue
                name, eq, value = arg.partition("=")
                if not eq:
                    # `--flag value` as two entries; a bare `--flag` is a boolean.
                    if i < len(cmd) and not cmd[i].startswith("-"):
                        value = cmd[i]
                        i += 1
                    else:
                        value = "true"
                flags[name] = value
            mounts = [str(m.get("mountPath", "")) for m in c.get("volumeMounts") or []]
            return flags, mounts
    return None


def _mounted(path: str, mounts: list[str]) -> bool:
    p = path.rstrip("/")
    return any(p == m.rstrip("/") or p.startswith(m.rstrip("/") + "/") for m in mounts if m)


def _int_flag(flags: dict[str, str], name: str, out: list[Finding]) -> int | None:
    if name not in flags:
        return None
    try:
        value = int(flags[name])
    except ValueError:
        out.append(Finding(FAIL, "manifest", f"{name}={flags[name]}: not a whole number"))
        return None
    if value < 0:
        out.append(
            Finding(FAIL, "manifest", f"{name} {value} can't be a negative number", "use 0 or more")
        )
    return value


def check_manifest(path: Path) -> tuple[list[Finding], dict[str, str]]:
    out: list[Finding] = []
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        return [Finding(FAIL, "manifest", f"{path}: cannot read: {exc}")], {}
    found = _apiserver_flags(doc)
    if found is None:
        return [Finding(FAIL, "manifest", f"{path}: no kube-apiserver container found")], {}
    flags, mounts = found
    policy = flags.get("--audit-policy-file", "")
    if not policy:
        out.append(
            Finding(
                FAIL,
                "manifest",
                "no --audit-policy-file: the apiserver audits nothing, whatever the backends",
                "add --audit-policy-file (kaudit setup apiserver writes one)",
            )
        )
    log, hook = flags.get("--audit-log-path", ""), flags.get("--audit-webhook-config-file", "")
    if not log and not hook:
        out.append(
            Finding(
                FAIL,
                "manifest",
                "neither --audit-log-path nor --audit-webhook-config-file: no backend receives "
                "events",
                "add --audit-webhook-config-file (and/or --audit-log-path)",
            )
        )
    for name, p in (
        ("--audit-policy-file", policy),
        ("--audit-webhook-config-file", hook),
        ("--audit-log-path", str(Path(log).parent) if log and log != "-" else ""),
    ):
        if p and not _mounted(p, mounts):
            out.append(
                Finding(
                    FAIL,
                    "manifest",
                    f"{name}: {p} is not inside any volumeMount of the kube-apiserver container",
                    "add a hostPath volume and a volumeMount for it",
                )
            )
    for plugin, default_mode in (("log", "blocking"), ("webhook", "batch")):
        mode = flags.get(f"--audit-{plugin}-mode", default_mode)
        if mode not in ("batch", "blocking", "blocking-strict"):
            out.append(
                Finding(
                    FAIL,
                    "manifest",
                    f"invalid audit {plugin} mode {mode}, allowed modes are "
                    '"batch,blocking,blocking-strict"',
                )
            )
    fmt = flags.get("--audit-log-format", "json")
    if fmt not in ("json", "legacy"):
        out.append(
            Finding(
                FAIL,
                "manifest",
                f'invalid audit log format {fmt}, allowed formats are "legacy,json"',
            )
        )
    maxage = _int_flag(flags, "--audit-log-maxage", out)
    maxbackup = _int_flag(flags, "--audit-log-maxbackup", out)
    maxsize = _int_flag(flags, "--audit-log-maxsize", out)
    if log and log != "-":
        if maxage == 0 and maxbackup == 0 and maxsize != 0:
            out.append(
                Finding(
                    WARN,
                    "manifest",
                    "--audit-log-maxage=0 and --audit-log-maxbackup=0: rotated logs are never "
                    "deleted and will fill the disk",
                    "set --audit-log-maxbackup (e.g. 10) or --audit-log-maxage (days)",
                )
            )
        if maxsize == 0:
            out.append(
                Finding(
                    WARN,
                    "manifest",
                    "--audit-log-maxsize=0: no rotation on Kubernetes 1.36+ (the file grows "
                    "forever); 100 MiB on older versions",
                    "set --audit-log-maxsize=100",
                )
            )
    if hook and flags.get("--audit-webhook-mode", "batch") == "blocking-strict":
        out.append(
            Finding(
                WARN,
                "manifest",
                "--audit-webhook-mode=blocking-strict: requests fail when kaudit is unreachable",
                "use batch (the default) unless losing an event is worse than an outage",
            )
        )
    if not out:
        backends = " and ".join(b for b, v in (("log", log), ("webhook", hook)) if v)
        out.append(Finding(OK, "manifest", f"audit policy and {backends} backend configured"))
    return out, flags


# --- the policy --------------------------------------------------------------------


_PROBES = (
    ("GET", "/api/v1/namespaces/default/pods"),
    ("POST", "/apis/apps/v1/namespaces/default/deployments"),
    ("DELETE", "/api/v1/namespaces/default/configmaps/app"),
    ("GET", "/api/v1/namespaces/default/secrets/db"),
    ("POST", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings"),
    ("POST", "/api/v1/namespaces/default/pods/web/exec"),
)


def check_policy(path: Path) -> list[Finding]:
    from kaudit.errors import PolicyDecodeError, PolicyError, PolicyInvalidError
    from kaudit.policy import Evaluator, User, from_http, load_policy

    try:
        policy = load_policy(path)
    except PolicyDecodeError as exc:
        return [Finding(FAIL, "policy", p) for p in exc.problems]
    except PolicyInvalidError as exc:
        return [Finding(FAIL, "policy", f"{path}: {e}") for e in exc.errors]
    except PolicyError as exc:
        return [Finding(FAIL, "policy", str(exc))]
    out: list[Finding] = []
    ev = Evaluator(policy)
    user = User("jane@example.com", ("developers", "system:authenticated"))
    levels = {f"{m} {u}": ev.evaluate(from_http(m, u, user)).level for m, u in _PROBES}
    recorded = {k: v for k, v in levels.items() if v != "None"}
    if not recorded:
        out.append(
            Finding(
                FAIL,
                "policy",
                "every typical request (pods, deployments, configmaps, secrets, RBAC, exec) "
                "is at level None: the audit log stays empty",
                "end the rules with a catch-all `- level: Metadata`",
            )
        )
    elif len(recorded) < len(levels):
        missing = ", ".join(k for k in levels if k not in recorded)
        out.append(Finding(WARN, "policy", f"not audited (level None): {missing}"))
    big = [k for k, v in levels.items() if v == "RequestResponse"]
    if len(big) >= 4:
        out.append(
            Finding(
                WARN,
                "policy",
                f"RequestResponse for most requests ({len(big)} of {len(levels)} probes): "
                "expect a very large log",
                "record bodies only for security-relevant writes; see `kaudit policy recommend`",
            )
        )
    if "RequestReceived" not in policy.omit_stages:
        out.append(
            Finding(
                WARN,
                "policy",
                "RequestReceived is not in omitStages: most requests are logged twice",
                "add `omitStages: [RequestReceived]` at the top of the policy",
            )
        )
    secrets = levels["GET /api/v1/namespaces/default/secrets/db"]
    if secrets in ("Request", "RequestResponse"):
        out.append(
            Finding(
                FAIL,
                "policy",
                f"secrets are recorded at {secrets}: their contents end up in the audit log",
                "put a `level: Metadata` rule for secrets before the broader rules",
            )
        )
    if not out:
        summary = ", ".join(f"{k} → {v}" for k, v in levels.items())
        out.append(Finding(OK, "policy", f"{path}: valid; {summary}"))
    return out


# --- the log file ------------------------------------------------------------------


def _tail_lines(path: Path, max_bytes: int = 8 * 1024 * 1024) -> list[bytes]:
    with open(path, "rb") as f:
        size = f.seek(0, os.SEEK_END)
        f.seek(max(0, size - max_bytes))
        data = f.read()
    lines = data.splitlines()
    if size > max_bytes and lines:
        lines = lines[1:]  # the first may be cut
    return [ln for ln in lines if ln.strip()]


def check_log(path: Path, now: datetime | None = None) -> list[Finding]:
    from kaudit.errors import DecodeError
    from kaudit.model import decode_event, to_micros
    from kaudit.sources.files import expand_paths

    now = now or datetime.now(UTC)
    out: list[Finding] = []
    if path.is_dir():
        return [Finding(FAIL, "log", f"{path}: a directory, not the audit log file")]
    if not path.exists():
        parent = path.parent
        if not parent.is_dir():
            return [
                Finding(
                    FAIL,
                    "log",
                    f"{path}: neither the file nor its directory {parent} exists",
                    "create the directory (0700) and mount it into the apiserver container",
                )
            ]
        if not os.access(parent, os.W_OK):
            return [Finding(FAIL, "log", f"{parent}: not writable", "fix its owner or mode")]
        return [
            Finding(
                FAIL,
                "log",
                f"{path}: does not exist (yet): the apiserver has not written any event",
                "check --audit-log-path and --audit-policy-file, then restart the apiserver",
            )
        ]
    backups = [i for i in expand_paths([str(path)]).inputs if i.path != path]
    lines = _tail_lines(path)
    if not lines:
        return [
            Finding(
                FAIL if not backups else WARN,
                "log",
                f"{path}: empty" + (f" ({len(backups)} rotated backups)" if backups else ""),
                "a policy whose rules are all None, or no --audit-policy-file, logs nothing",
            )
        ]
    levels: Counter[str] = Counter()
    stamps: list[int] = []
    bad = 0
    for ln in lines:
        try:
            ev = decode_event(ln)
        except DecodeError:
            bad += 1
            continue
        levels[ev.level] += 1
        ts = ev.stage_timestamp or ev.request_received_timestamp
        if ts:
            try:
                stamps.append(to_micros(ts))
            except ValueError:
                bad += 1
    n = sum(levels.values())
    if bad:
        out.append(Finding(WARN, "log", f"{bad} of {len(lines)} recent lines are not JSON events"))
    if stamps:
        newest = datetime.fromtimestamp(max(stamps) / 1e6, UTC)
        age = (now - newest).total_seconds()
        if age > 3600:
            out.append(
                Finding(
                    WARN,
                    "log",
                    f"the newest event is {age / 3600:.1f} h old ({newest:%Y-%m-%d %H:%M:%S}Z): "
                    "is the apiserver still writing here?",
                )
            )
        span = (max(stamps) - min(stamps)) / 1e6
        if span > 0 and n > 1:
            size = sum(len(ln) + 1 for ln in lines)
            per_day = size / span * 86400
            msg = (
                f"about {per_day / 1e9:.1f} GB/day at the recent rate "
                f"({n / span:.0f} events/s, {size / n:.0f} bytes/event)"
            )
            big = per_day > 20e9
            out.append(
                Finding(
                    WARN if big else OK,
                    "log",
                    msg,
                    "see `kaudit policy simulate` and `kaudit policy recommend`" if big else "",
                )
            )
    share = {k: v / n for k, v in levels.items()} if n else {}
    if share.get("RequestResponse", 0) > 0.5:
        out.append(
            Finding(
                WARN,
                "log",
                f"{share['RequestResponse']:.0%} of recent events carry request and response "
                "bodies (RequestResponse)",
                "record bodies only where they answer what changed",
            )
        )
    mix = ", ".join(f"{k} {v / n:.0%}" for k, v in levels.most_common()) if n else "none"
    out.append(Finding(OK, "log", f"{path}: {n} recent events ({mix}); {len(backups)} backups"))
    return out


# --- the webhook -------------------------------------------------------------------


@dataclass
class Webhook:
    url: str
    token: str | None = None
    ca: bytes | None = None
    client_cert: bytes | None = None
    client_key: bytes | None = None

    @classmethod
    def from_kubeconfig(cls, path: Path) -> Webhook:
        cfg = yaml.safe_load(path.read_text())
        ctx_name = cfg.get("current-context") or cfg["contexts"][0]["name"]
        ctx = next(c for c in cfg["contexts"] if c["name"] == ctx_name)["context"]
        cluster = next(c for c in cfg["clusters"] if c["name"] == ctx["cluster"])["cluster"]
        user = next(u for u in cfg["users"] if u["name"] == ctx["user"])["user"]

        def data(d: dict[str, Any], key: str) -> bytes | None:
            if f"{key}-data" in d:
                return base64.b64decode(d[f"{key}-data"])
            if key in d:
                return Path(d[key]).read_bytes()
            return None

        token = user.get("token")
        if token is None and "tokenFile" in user:
            token = Path(user["tokenFile"]).read_text().strip()
        return cls(
            url=cluster["server"],
            token=token,
            ca=data(cluster, "certificate-authority"),
            client_cert=data(user, "client-certificate"),
            client_key=data(user, "client-key"),
        )


def check_webhook(hook: Webhook) -> list[Finding]:
    import httpx

    url = hook.url.rstrip("/") + "?timeout=30s"
    headers = {"Content-Type": "application/json", "Accept": "application/json, */*"}
    out: list[Finding] = []
    if hook.token:
        if hook.url.startswith("https://"):
            headers["Authorization"] = f"Bearer {hook.token}"
        else:
            out.append(
                Finding(
                    FAIL,
                    "webhook",
                    "a bearer token over http:// is never sent by the apiserver",
                    "serve kaudit over https (kaudit setup certs)",
                )
            )
    with tempfile.TemporaryDirectory() as tmp:
        verify: ssl.SSLContext | bool = True
        if hook.url.startswith("https://"):
            ctx = ssl.create_default_context()
            if hook.ca:
                ca = Path(tmp) / "ca.crt"
                ca.write_bytes(hook.ca)
                ctx = ssl.create_default_context(cafile=str(ca))
            if hook.client_cert and hook.client_key:
                crt, key = Path(tmp) / "c.crt", Path(tmp) / "c.key"
                crt.write_bytes(hook.client_cert)
                key.write_bytes(hook.client_key)
                ctx.load_cert_chain(crt, key)
            verify = ctx
        try:
            with httpx.Client(verify=verify, timeout=10) as client:
                r = client.post(url, content=EMPTY_EVENT_LIST, headers=headers)
        except httpx.HTTPError as exc:
            return [
                *out,
                Finding(
                    FAIL,
                    "webhook",
                    f"{hook.url}: cannot reach it: {exc}",
                    "check the address, the port, and that the CA in the kubeconfig signed the "
                    "server's certificate",
                ),
            ]
    if r.status_code in (401, 403):
        out.append(
            Finding(
                FAIL,
                "webhook",
                f"{hook.url}: {r.status_code}: the receiver refuses these credentials",
                "the token (or client certificate CN) must be one kaudit serve knows",
            )
        )
    elif 200 <= r.status_code <= 206:
        out.append(Finding(OK, "webhook", f"{hook.url}: reachable, authenticated, accepts batches"))
    else:
        detail = r.text.strip()[:200]
        out.append(Finding(FAIL, "webhook", f"{hook.url}: answered {r.status_code}: {detail}"))
    return out


# --- events arriving -----------------------------------------------------------------


def check_store(path: Path, now: datetime | None = None) -> list[Finding]:
    from kaudit.store import open_store

    now = now or datetime.now(UTC)
    if not path.exists():
        return [Finding(FAIL, "store", f"{path}: no store here")]
    t = open_store(path, create=False).query(
        "select cluster, count(*) as n, max(ts) as newest from events group by cluster "
        "order by cluster"
    )
    rows = t.to_pylist()
    if not rows:
        return [Finding(FAIL, "store", f"{path}: no events stored yet")]
    out = []
    for row in rows:
        newest = row["newest"]
        age = (now - newest).total_seconds() if newest else float("inf")
        name = row["cluster"] or "(no cluster)"
        status = OK if age < 900 else WARN
        out.append(
            Finding(
                status,
                "store",
                f"{name}: {row['n']} events, newest {age / 60:.0f} min ago",
                "" if status == OK else "no recent events: is the apiserver sending?",
            )
        )
    return out


def to_json(findings: Iterable[Finding]) -> str:
    return json.dumps([f.__dict__ for f in findings], indent=2)


__all__ = [
    "FAIL",
    "OK",
    "WARN",
    "Finding",
    "Webhook",
    "check_log",
    "check_manifest",
    "check_policy",
    "check_store",
    "check_webhook",
    "to_json",
]
