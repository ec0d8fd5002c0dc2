"""Quality of the built-in pack: Panther's labelled events, and generated traffic.

    python bench/detect_quality.py PATH/TO/panther/labelled-events.jsonl
    python bench/detect_quality.py --traffic [N_EVENTS]

The first form: per-rule precision and recall on Panther's labelled events.
The second: alerts per N background events by severity (kaudit.traffic without
incidents: the false positives of everyday controllers and people), and the
recall of the generator's scripted incidents (an incident counts as detected when
any alert names one of its audit IDs), streaming in batches of 20,000.

Each labelled event is evaluated alone (as a rule's unit test is) by the kaudit
rule that corresponds to the Panther rule (MAPPING). Events in Kubernetes audit
form (``Amazon.EKS.Audit`` bare events, ``Azure.MonitorActivity`` kube-audit
wrappers) are decoded as audit events; GCP Cloud Audit LogEntries are not
audit.k8s.io events and are counted as not evaluable. Threshold/distinct rules see
one event at a time, so their recall here says nothing about bursts.
"""

from __future__ import annotations

import json
import sys
from collections import Counter, defaultdict
from typing import Any

import duckdb

from kaudit.detect.engine import hunt
from kaudit.detect.flat import table_from_events
from kaudit.detect.rule import load_rules
from kaudit.errors import DecodeError
from kaudit.model.codec import decode_event

#: Panther rule id -> kaudit rule ids (an alert by any of them counts as a detection).
MAPPING: dict[str, tuple[str, ...]] = {
    "Amazon.EKS.AnonymousAPIAccess": ("anonymous-request-allowed",),
    "Kubernetes.API.AnonymousAccess": ("anonymous-request-allowed",),
    "Kubernetes.AdmissionController.Created": ("admission-webhook-changed",),
    "Kubernetes.BulkSecretAccess": ("secret-enumeration", "secret-list-cluster-wide"),
    "Kubernetes.ClientCertificate.Created": ("csr-created",),
    "Kubernetes.ClusterRoleBinding.Privileged": ("binding-cluster-admin",),
    "Kubernetes.CronJob.CreatedOrModified": ("cronjob-created",),
    "Kubernetes.DaemonSet.Created": ("daemonset-created-kube-system",),
    "Kubernetes.Ingress.NoTLS": ("ingress-without-tls",),
    "Kubernetes.Kubectl.CP.Operation": ("exec-kubectl-cp",),
    "Kubernetes.Pod.Dangerous.Capabilities": ("pod-dangerous-capabilities",),
    "Kubernetes.Pod.Exec": ("pod-exec",),
    "Kubernetes.Pod.Host.IPC": ("pod-host-namespaces",),
    "Kubernetes.Pod.Host.Network": ("pod-host-namespaces",),
    "Kubernetes.Pod.Host.PID": ("pod-host-namespaces",),
    "Kubernetes.Pod.HostPath.Volume": ("pod-sensitive-hostpath",),
    "Kubernetes.Pod.Privileged.Created": ("pod-privileged",),
    "Kubernetes.Pod.StealServiceAccountToken": ("exec-serviceaccount-token-read",),
    "Kubernetes.Pod.SystemNamespace": ("pod-created-in-system-namespace",),
    "Kubernetes.Role.NodeProxyPermissions": ("role-nodes-proxy",),
    "Kubernetes.Role.PodExec": ("role-pods-exec",),
    "Kubernetes.Role.Wildcard": ("role-wildcard",),
    "Kubernetes.Secret.AccessDenied": ("secret-read-denied",),
    "Kubernetes.Secrets.DumpAllNamespaces": ("secret-list-cluster-wide",),
    "Kubernetes.Service.NodePort.Deployed": ("service-nodeport",),
    "Kubernetes.ServiceAccount.TokenCreated": ("serviceaccount-token-created",),
    "Kubernetes.SystemRole.Modified": ("system-rbac-modified",),
    "Amazon.EKS.Audit.Multiple403": ("forbidden-burst",),
    "Kubernetes.API.Multiple403.PublicIP": ("forbidden-burst",),
}


def _audit_event(rec: dict[str, object]) -> bytes | None:
    ev = rec["event"]
    assert isinstance(ev, dict)
    if rec["log_type"] == "Amazon.EKS.Audit":
        return json.dumps(ev).encode()
    if rec["log_type"] == "Azure.MonitorActivity":
        props = ev.get("properties")
        if isinstance(props, dict) and isinstance(props.get("log"), str):
            return props["log"].encode()
    return None


def main(path: str) -> None:
    rules = {r.id: r for r in load_rules()}
    stats: dict[str, dict[str, int]] = defaultdict(
        lambda: {"tp": 0, "fp": 0, "fn": 0, "tn": 0, "skipped": 0}
    )
    con = duckdb.connect()
    for line in open(path, encoding="utf-8"):
        rec = json.loads(line)
        pid = rec["rule_id"]
        if pid not in MAPPING:
            stats[pid]["skipped"] += 1
            continue
        raw = _audit_event(rec)
        if raw is None:
            stats[pid]["skipped"] += 1
            continue
        try:
            event = decode_event(raw)
        except DecodeError:
            stats[pid]["skipped"] += 1
            continue
        con.register("events", table_from_events([event]))
        fired = bool(hunt(con, [rules[r] for r in MAPPING[pid]]))
        con.unregister("events")
        key = ("t" if fired == rec["expected"] else "f") + ("p" if fired else "n")
        stats[pid][key] += 1
    print(
        f"{'panther rule':45} {'kaudit rule':32} {'tp':>3} {'fp':>3} {'fn':>3} {'tn':>3} "
        f"{'skip':>4} {'prec':>5} {'rec':>5}"
    )
    tot = {"tp": 0, "fp": 0, "fn": 0, "tn": 0, "skipped": 0}
    for pid in sorted(stats):
        s = stats[pid]
        for k in tot:
            tot[k] += s[k]
        prec = f"{s['tp'] / (s['tp'] + s['fp']):.2f}" if s["tp"] + s["fp"] else "-"
        rec_ = f"{s['tp'] / (s['tp'] + s['fn']):.2f}" if s["tp"] + s["fn"] else "-"
        kid = ",".join(MAPPING.get(pid, ("(no counterpart)",)))
        print(
            f"{pid:45} {kid[:32]:32} {s['tp']:>3} {s['fp']:>3} {s['fn']:>3} {s['tn']:>3} "
            f"{s['skipped']:>4} {prec:>5} {rec_:>5}"
        )
    p = tot["tp"] / max(1, tot["tp"] + tot["fp"])
    r = tot["tp"] / max(1, tot["tp"] + tot["fn"])
    print(
        f"\ntotal: tp={tot['tp']} fp={tot['fp']} fn={tot['fn']} tn={tot['tn']} "
        f"skipped={tot['skipped']} precision={p:.2f} recall={r:.2f}"
    )


def _stream(events: list[Any], rules: list[Any]) -> list[Any]:
    from kaudit.detect.engine import Engine
    from kaudit.detect.flat import table_from_events

    table = table_from_events(events)
    eng = Engine(rules)
    alerts = []
    for off in range(0, table.num_rows, 20_000):
        alerts += eng.process(table.slice(off, 20_000))
    return alerts


def traffic(n: int) -> None:
    from kaudit.traffic import ClusterProfile, Traffic

    rules = load_rules()
    background = Traffic(seed=7, cluster_profile=ClusterProfile(incident_every_requests=0))
    alerts = _stream(list(background.events(n)), rules)
    by_sev = Counter(a.severity for a in alerts)
    print(f"background traffic (seed 7, no incidents): {n} events, {len(alerts)} alerts")
    for sev in ("critical", "high", "medium", "low", "info"):
        print(f"  {sev:8} {by_sev[sev]:5}")
    for (sev, rid), k in sorted(Counter((a.severity, a.rule_id) for a in alerts).items()):
        print(f"    {sev:8} {rid:36} {k}")
    tr = Traffic(seed=1)
    alerts = _stream(list(tr.events(n)), rules)
    fired: dict[str, set[str]] = defaultdict(set)
    for a in alerts:
        for aid in a.audit_ids:
            fired[aid].add(a.rule_id)
    total: Counter[str] = Counter()
    found: Counter[str] = Counter()
    by: dict[str, Counter[str]] = defaultdict(Counter)
    for inc in tr.incidents:
        if not inc.complete:
            continue
        total[inc.kind] += 1
        rids = set().union(*(fired.get(x, set()) for x in inc.audit_ids))
        found[inc.kind] += bool(rids)
        by[inc.kind].update(rids)
    print(f"\nincidents (seed 1, {n} events): kind, detected/total, rules that fired")
    for kind in sorted(total):
        rules_fired = ", ".join(f"{r} {c}" for r, c in sorted(by[kind].items()))
        print(f"  {kind:22} {found[kind]}/{total[kind]}  {rules_fired}")
    print(f"recall: {sum(found.values())}/{sum(total.values())}")


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "--traffic":
        traffic(int(sys.argv[2]) if len(sys.argv) > 2 else 100_000)
    elif len(sys.argv) == 2:
        main(sys.argv[1])
    else:
        sys.exit(
            "usage: python bench/detect_quality.py labelled-events.jsonl\n"
            "       python bench/detect_quality.py --traffic [N_EVENTS]"
        )
