"""Store benchmark: ingest rate, stored size vs the JSON log, query latency.

    python bench/bench_store.py [--events 1000000] [--batch 20000] [--keep DIR]

Generates a JSON audit log with ``kaudit.traffic`` (not timed), then times the
end-to-end ingest (read + decode + flatten + dedup + WAL fsync + Parquet) through
``Writer.append``, compares the Parquet bytes with the JSON log, compares segment
layouts (sort orders, zstd levels) on a sample, and times filter queries.
Prints figures; asserts nothing about time.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import duckdb
import msgspec
import pyarrow as pa

from kaudit.model.documents import iter_records
from kaudit.store import StoreSettings, open_store
from kaudit.store import segments as seg_mod
from kaudit.store.flatten import flatten


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"machine: {cpu}; cores={os.cpu_count()}; Python {platform.python_version()}; "
        f"pyarrow {pa.__version__}; duckdb {duckdb.__version__}; msgspec {msgspec.__version__}; "
        f"load average {os.getloadavg()[0]:.1f}"
    )


def make_log(path: Path, n: int) -> int:
    from kaudit.traffic import generate_lines

    size = 0
    with open(path, "wb") as f:
        for line in generate_lines(n, seed=1):
            f.write(line)
            size += len(line)
    return size


def batches(path: Path, size: int):  # type: ignore[no-untyped-def]
    with open(path, "rb") as f:
        batch = []
        for rec in iter_records(f, str(path)):
            batch.append(rec)
            if len(batch) >= size:
                yield batch
                batch = []
        if batch:
            yield batch


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--batch", type=int, default=20_000)
    ap.add_argument("--sample", type=int, default=200_000)
    ap.add_argument("--keep", type=Path, default=None, help="store directory to keep")
    args = ap.parse_args()
    print(machine())

    tmp = Path(tempfile.mkdtemp(prefix="kaudit-bench-"))
    log = tmp / "audit.log"
    t0 = time.perf_counter()
    log_bytes = make_log(log, args.events)
    print(
        f"generated {args.events:,} events, {log_bytes / 1e6:.1f} MB JSON "
        f"({time.perf_counter() - t0:.1f} s, not counted)"
    )

    # Decode-only and flatten-only rates (one pass each) to see where time goes.
    t0 = time.perf_counter()
    n = 0
    flat_s = 0.0
    for b in batches(log, args.batch):
        n += len(b)
        t1 = time.perf_counter()
        flatten(b)
        flat_s += time.perf_counter() - t1
    total = time.perf_counter() - t0
    print(f"read+decode: {n / (total - flat_s):,.0f} events/s; flatten: {n / flat_s:,.0f} events/s")

    root = args.keep or tmp / "store"
    store = open_store(root, settings=StoreSettings())
    t0 = time.perf_counter()
    stored = dup = 0
    with store.writer() as w:
        for b in batches(log, args.batch):
            r = w.append(b)
            stored += r.stored
            dup += r.duplicates
    ingest_s = time.perf_counter() - t0
    print(
        f"ingest end-to-end: {n:,} events in {ingest_s:.2f} s = {n / ingest_s:,.0f} events/s "
        f"(batch {args.batch:,}; stored {stored:,}, duplicates {dup:,})"
    )

    st = store.stats()
    print(
        f"stored: {st.bytes / 1e6:.1f} MB in {st.segments} segments; JSON log "
        f"{log_bytes / 1e6:.1f} MB; ratio 1/{log_bytes / st.bytes:.1f}"
    )

    # Re-ingest the same file: every event is a duplicate.
    t0 = time.perf_counter()
    again = 0
    with store.writer() as w:
        for b in batches(log, args.batch):
            again += w.append(b).duplicates
    s = time.perf_counter() - t0
    print(f"re-ingest (all duplicates): {again:,} dropped in {s:.2f} s = {n / s:,.0f} events/s")

    queries = {
        "count by user": (
            "SELECT count(*) FROM events WHERE username = ?",
            ["system:kube-scheduler"],
        ),
        "secrets deletes": (
            "SELECT ts, username, namespace, name FROM events "
            "WHERE verb = 'delete' AND resource = 'secrets'",
            None,
        ),
        "forbidden last hour": (
            "SELECT count(*) FROM events WHERE code = 403 AND "
            "ts >= (SELECT max(ts) FROM events) - INTERVAL 1 HOUR",
            None,
        ),
        "object history": (
            "SELECT ts, verb, username FROM events WHERE resource = 'pods' "
            "AND namespace = 'default' ORDER BY ts",
            None,
        ),
        "event text search": ("SELECT count(*) FROM events WHERE event LIKE '%exec%'", None),
    }
    for name, (sql, params) in queries.items():
        times = []
        rows = 0
        for _ in range(5):
            t0 = time.perf_counter()
            rows = store.query(sql, params).num_rows
            times.append(time.perf_counter() - t0)
        print(
            f"query {name!r}: median {statistics.median(times) * 1000:.0f} ms "
            f"(min {min(times) * 1000:.0f} ms) over {st.events:,} events, {rows} rows"
        )

    # Layout comparison on a sample: which sort order / zstd level gives the smallest file.
    sample = []
    for b in batches(log, args.batch):
        sample.extend(b)
        if len(sample) >= args.sample:
            break
    table = flatten(sample[: args.sample])
    raw = sum(len(r.raw) + 1 for r in sample[: args.sample])
    layouts = {
        "none": (),
        "resource,namespace,name,ts": seg_mod.SORT_KEYS,
        "username,ts": (("username", "ascending"), ("ts", "ascending")),
        "verb,resource,ts": (("verb", "ascending"), ("resource", "ascending"), ("ts", "ascending")),
    }
    orig = seg_mod.SORT_KEYS
    for level in (3, 6, 9):
        for lname, keys in layouts.items():
            seg_mod.SORT_KEYS = keys  # type: ignore[misc]
            t0 = time.perf_counter()
            data = seg_mod.encode_segment(table, StoreSettings(zstd_level=level))
            s = time.perf_counter() - t0
            print(
                f"layout zstd={level} sort=({lname}): 1/{raw / len(data):.1f} of JSON, "
                f"encode {table.num_rows / s:,.0f} rows/s"
            )
    seg_mod.SORT_KEYS = orig  # type: ignore[misc]
    without = table.drop_columns(["event"])
    data = seg_mod.encode_segment(without, StoreSettings())
    print(f"without the event column: 1/{raw / len(data):.1f} of JSON")


if __name__ == "__main__":
    main()
