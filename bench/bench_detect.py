"""Detection throughput with the full built-in pack: streaming and retro-hunt.

    python bench/bench_detect.py [N_EVENTS] [BATCH]

Generates N events (kaudit.traffic, seed 1), builds the flat table once, then
measures events/s through ``Engine.process`` in batches and through ``hunt`` over
a DuckDB view of the same table, and the streaming state size afterwards.
Prints figures; asserts nothing.
"""

from __future__ import annotations

import os
import platform
import sys
import time

import duckdb
import msgspec
import pyarrow as pa

from kaudit.detect.engine import Engine, hunt
from kaudit.detect.flat import table_from_events
from kaudit.detect.rule import load_rules
from kaudit.traffic import Traffic


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (
        f"machine: {cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"duckdb {duckdb.__version__}, pyarrow {pa.__version__}, msgspec {msgspec.__version__}"
    )


def main(n: int, batch: int) -> None:
    print(machine())
    rules = load_rules()
    t0 = time.perf_counter()
    events = list(Traffic(seed=1).events(n))
    t1 = time.perf_counter()
    table = table_from_events(events).sort_by(
        [("ts", "ascending"), ("audit_id", "ascending"), ("stage", "ascending")]
    )
    t2 = time.perf_counter()
    print(f"events: {n}, rules: {len(rules)}, batch: {batch}")
    print(f"generate: {t1 - t0:.2f} s; flatten (Records -> flat table): {n / (t2 - t1):,.0f} ev/s")

    eng = Engine(rules)
    t0 = time.perf_counter()
    alerts = 0
    for off in range(0, table.num_rows, batch):
        alerts += len(eng.process(table.slice(off, batch)))
    dt = time.perf_counter() - t0
    state = sum(eng.state_sizes().values())
    print(f"streaming: {n / dt:,.0f} ev/s ({dt:.2f} s, {alerts} alerts, {state} state entries)")

    con = duckdb.connect()
    con.register("events", table)
    t0 = time.perf_counter()
    found = hunt(con, rules)
    dt = time.perf_counter() - t0
    print(f"hunt (in-memory table): {n / dt:,.0f} ev/s ({dt:.2f} s, {len(found)} alerts)")


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    batch = int(sys.argv[2]) if len(sys.argv) > 2 else 20_000
    main(n, batch)
