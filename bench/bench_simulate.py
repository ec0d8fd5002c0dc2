"""Policy simulation benchmark: replay stored events under a policy.

    python bench/bench_simulate.py [--events 1000000] [--store DIR] [--scale 10] [--no-scan]

Builds a store of ``--events`` generated events (``kaudit.traffic``, not timed) unless
``--store`` names an existing one, then times ``kaudit policy simulate``'s two steps:
grouping the capture and evaluating the policy per group. Three ways: ``capture_from_store``
with the per-segment rollups removed first (cold: every segment grouped and cached), then
again (warm: the cached groups merged), and one DuckDB pass over the whole ``events``
view without rollups (``--no-scan`` skips it). ``--scale N`` also times a view that reads
the store N times over (``UNION ALL``). For a real 10M store, grow one with
``bench/bench_ui.py --events 1000000 --copies 10 --keep DIR`` and pass ``--store DIR``.
Prints figures; asserts nothing about time.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import duckdb
import msgspec
import pyarrow as pa

from kaudit.policy import load_policy_bytes
from kaudit.policy.capture import ROLLUP_NAME
from kaudit.policy.simulate import capture_from_connection, capture_from_store, names_of, simulate
from kaudit.query.rollup import CACHE_DIR
from kaudit.store import open_store

POLICY = """\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
omitManagedFields: true
rules:
- level: None
  nonResourceURLs: ["/healthz*", "/readyz*", "/livez*"]
- level: Metadata
  resources: [{group: "", resources: [secrets, configmaps, "serviceaccounts/token"]}]
- level: None
  resources: [{group: coordination.k8s.io, resources: [leases]}]
- level: None
  users: ["system:kube-proxy"]
  verbs: [watch]
- level: None
  resources: [{group: "", resources: [configmaps], resourceNames: [kube-root-ca.crt]}]
- level: Request
  resources: [{group: "", resources: ["pods/exec", "pods/attach", "pods/portforward"]}]
- level: RequestResponse
  verbs: [create, update, patch, delete]
  resources: [{group: apps}, {group: rbac.authorization.k8s.io}, {group: "", resources: [pods]}]
- level: Request
  verbs: [get, list, watch]
  resources: [{group: ""}, {group: apps}]
- level: Metadata
"""


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        load = "load average {:.1f} {:.1f} {:.1f}".format(*os.getloadavg())
    except OSError:
        load = "load average unknown"
    return (
        f"machine: {cpu}; cores={os.cpu_count()}; {load}; Python {platform.python_version()}; "
        f"duckdb {duckdb.__version__}; pyarrow {pa.__version__}; msgspec {msgspec.__version__}"
    )


def build(root: Path, n: int) -> None:
    from kaudit.traffic import generate

    store = open_store(root)
    batch = []
    with store.writer() as w:
        for ev in generate(n, seed=1):
            batch.append(ev)
            if len(batch) >= 50_000:
                w.append_events(batch)
                batch = []
        if batch:
            w.append_events(batch)
        w.flush()


def run(con: duckdb.DuckDBPyConnection | Path, relation: str, label: str) -> None:
    pol = load_policy_bytes(POLICY, "bench-policy.yaml")
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    if isinstance(con, Path):
        cap = capture_from_store(str(con), names=names_of([pol]))
    else:
        cap = capture_from_connection(con, relation, names=names_of([pol]))
    t1 = time.perf_counter()
    sim = simulate(pol, cap)  # includes the managedFields pass for the groups that need it
    t2 = time.perf_counter()
    cpu = time.process_time() - cpu0
    n = cap.events
    print(
        f"{label}: {n:,} events -> {len(cap.groups):,} groups, "
        f"{len({g.attrs for g in cap.groups}):,} distinct attribute tuples; "
        f"group {t1 - t0:.2f} s + simulate {t2 - t1:.2f} s = {t2 - t0:.2f} s "
        f"({n / (t2 - t0):,.0f} events/s; process CPU {cpu:.2f} s); "
        f"simulated {sim.simulated.events:,.0f} events, {sim.simulated.bytes / 1e6:,.1f} MB "
        f"of {sim.captured.bytes / 1e6:,.1f} MB captured"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--store", type=Path, default=None, help="an existing store to read")
    ap.add_argument("--scale", type=int, default=0, help="also read the store N times over")
    ap.add_argument("--no-scan", action="store_true", help="skip the pass without rollups")
    args = ap.parse_args()
    print(machine())
    root = args.store
    if root is None:
        root = Path(tempfile.mkdtemp(prefix="kaudit-bench-")) / "store"
        t0 = time.perf_counter()
        build(root, args.events)
        print(
            f"built a store of {args.events:,} events ({time.perf_counter() - t0:.0f} s, "
            "not counted)"
        )
    store = open_store(root, create=False)
    st = store.stats()
    print(f"store: {st.events:,} events, {st.bytes / 1e6:.1f} MB in {st.segments} segments")
    shutil.rmtree(root / CACHE_DIR / ROLLUP_NAME, ignore_errors=True)
    run(root, "events", "rollups, cold (every segment grouped and cached)")
    run(root, "events", "rollups, warm (cached groups merged)")
    if not args.no_scan:
        con = store.connect()
        run(con, "events", "one pass over every event, no rollups")
        con.close()
    if args.scale > 1:
        con = store.connect()
        union = " UNION ALL ".join(["SELECT * FROM events"] * args.scale)
        con.execute(f"CREATE VIEW scaled AS {union}")
        run(con, "scaled", f"store read {args.scale}x over")
        con.close()


if __name__ == "__main__":
    main()
