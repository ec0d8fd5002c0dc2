"""Detection throughput with the full built-in pack: streaming and retro-hunt.

    python bench/bench_detect.py [N_EVENTS] [BATCH ...]

Generates N events (kaudit.traffic, seed 1), builds the flat table once (the
store's flatten), then measures events/s through ``Engine.process`` in batches
of each BATCH size and through ``hunt`` over a DuckDB view of the same table,
wall and CPU time, plus the streaming state size afterwards. Other jobs may load
the machine: the load average is printed. Prints figures; asserts nothing.
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


def load() -> str:
    return "load average: " + " ".join(f"{x:.2f}" for x in os.getloadavg())


class Timer:
    def __enter__(self) -> Timer:
        self.w0, self.c0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.w0
        self.cpu = time.process_time() - self.c0


def main(n: int, batches: list[int]) -> None:
    print(machine())
    print(load())
    rules = load_rules()
    with Timer() as tg:
        events = list(Traffic(seed=1).events(n))
    with Timer() as tf:
        table = table_from_events(events)
    table = table.sort_by([("ts", "ascending"), ("audit_id", "ascending"), ("stage", "ascending")])
    print(f"events: {n}, rules: {len(rules)}")
    print(f"generate: {tg.wall:.2f} s; flatten (store's flatten): {n / tf.wall:,.0f} ev/s")

    for batch in batches:
        eng = Engine(rules)
        alerts = 0
        with Timer() as t:
            for off in range(0, table.num_rows, batch):
                alerts += len(eng.process(table.slice(off, batch)))
        state = eng.state_sizes()
        state_bytes = len(msgspec.json.encode(eng.state_dict()))
        print(
            f"streaming, batch {batch}: {n / t.wall:,.0f} ev/s wall, {n / t.cpu:,.0f} ev/s CPU "
            f"({t.wall:.2f} s wall, {t.cpu:.2f} s CPU, {alerts} alerts, "
            f"{sum(state.values())} state entries, {state_bytes / 1e6:.2f} MB serialized)"
        )
        eng.close()
    print(load())

    con = duckdb.connect()
    con.register("events", table)
    with Timer() as t:
        found = hunt(con, rules)
    print(
        f"hunt (in-memory table): {n / t.wall:,.0f} ev/s wall, {n / t.cpu:,.0f} ev/s CPU "
        f"({t.wall:.2f} s wall, {t.cpu:.2f} s CPU on up to {os.cpu_count()} threads, "
        f"{len(found)} alerts)"
    )
    print(load())


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    batches = [int(x) for x in sys.argv[2:]] or [20_000, 5_000]
    main(n, batches)
