"""Benchmark: the tailer (``kaudit serve --tail``) following a live, rotating audit log.

A writer thread appends generated apiserver lines to ``audit.log`` as fast as it can
and rotates it the way lumberjack does (rename to ``audit-<time>.log``, new file) every
``--rotate-mb``; the tailer reads it into a real store, committing its checkpoint after
each durable batch. Prints events/s of the tailer (read + decode + store) and checks
that every event arrived exactly once. A script, not a test: it asserts no time.

    .venv/bin/python bench/bench_tail.py --events 300000
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from pathlib import Path

from common import machine_line
from kaudit.model.codec import gc_paused
from kaudit.sources.tail import Tailer
from kaudit.store import open_store
from kaudit.traffic import generate_lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=300_000)
    ap.add_argument("--rotate-mb", type=float, default=50.0)
    args = ap.parse_args()
    print(machine_line())
    lines = list(generate_lines(args.events, seed=11))
    size = sum(len(x) for x in lines)
    print(f"log: {args.events:,} events, {size / 1e6:.0f} MB, rotated every {args.rotate_mb} MB")
    with tempfile.TemporaryDirectory(prefix="kaudit-bench-tail-") as tmp:
        logs = Path(tmp) / "logs"
        logs.mkdir()
        log = logs / "audit.log"
        log.touch()
        done = threading.Event()

        def writer() -> None:
            f = open(log, "ab", buffering=1 << 20)  # noqa: SIM115 - rotated below
            written = 0
            for i, line in enumerate(lines):
                f.write(line)
                written += len(line)
                if written > args.rotate_mb * 1e6:
                    f.close()
                    stamp = time.strftime("%Y-%m-%dT%H-%M-%S", time.gmtime())
                    log.rename(logs / f"audit-{stamp}.{i % 1000:03d}.log")
                    f = open(log, "ab", buffering=1 << 20)  # noqa: SIM115
                    written = 0
            f.close()
            done.set()

        store = open_store(Path(tmp) / "store")
        tailer = Tailer(log, Path(tmp) / "state" / "audit.log.json", max_batch=10_000)
        stored = 0
        t0 = time.perf_counter()
        c0 = time.process_time()
        th = threading.Thread(target=writer)
        th.start()
        with store.writer() as w:
            w.flush_in_background = True
            while True:
                with gc_paused():
                    batch = tailer.poll()
                if batch:
                    stored += w.append(batch).stored
                    tailer.commit()
                elif done.is_set() and stored >= args.events:
                    break
                elif done.is_set():
                    time.sleep(0.01)
                else:
                    time.sleep(0.001)
        wall = time.perf_counter() - t0
        cpu = time.process_time() - c0
        th.join()
        tailer.close()
        n = store.query("select count(*) as n from events").column("n")[0].as_py()
        rotations = len(list(logs.glob("audit-*.log")))
        print(
            f"tail -> store: {stored:,} events in {wall:.2f} s = {stored / wall:,.0f} events/s "
            f"wall, {cpu / stored * 1e6:.1f} µs/event CPU (writer thread included); "
            f"{rotations} rotations; stored exactly once: {n == args.events == stored}"
        )
        print(f"load average: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
