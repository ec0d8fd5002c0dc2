"""Ingest throughput: a JSON audit log into the store, end to end, and where the time goes.

    .venv/bin/python bench/bench_ingest.py                 # 1M events of generated traffic
    .venv/bin/python bench/bench_ingest.py --events 200000 --sample 100000
    .venv/bin/python bench/bench_ingest.py --baseline HEAD~5     # before/after in one run

The log comes from :mod:`kaudit.traffic` (cached in ``bench/.cache``) and is written to a
temporary file (not timed). Then, each into a fresh store:

* ``kaudit ingest`` as a process of its own (read, the native scanner or the exact
  reader, dedup, Parquet segments, manifest), its CPU time, wall time and peak RSS; and
  again with ``KAUDIT_SCANNER=off`` (every line through the exact reader, what an
  install without a C compiler does);
* ``Writer.append(records)``: the Python API, records read with
  :func:`kaudit.model.documents.iter_records` (the path ``kaudit serve``'s transforms use);

and finally the stages one by one over a sample (decode, flatten, WAL frame, Parquet
segment). With ``--baseline REF`` the same end-to-end figures are first measured for
the source tree of git revision ``REF`` (exported with ``git archive``, run in a child
process), so that before and after come from one run on the same machine state.

Every figure is CPU seconds of the process (all its threads) and wall seconds: on a
shared machine wall time mostly measures the neighbours, so the load average is
printed too. Prints figures; asserts nothing about time.
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from itertools import islice
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Timing, machine_line, traffic_file, traffic_lines  # noqa: E402
from kaudit.model.documents import Record, iter_records  # noqa: E402
from kaudit.store import StoreSettings, open_store  # noqa: E402
from kaudit.store.flatten import flatten  # noqa: E402
from kaudit.store.segments import encode_segment  # noqa: E402
from kaudit.store.wal import encode_frame  # noqa: E402


def timed(fn: Callable[[], object]) -> tuple[Timing, object]:
    gc.collect()
    c0, w0 = time.process_time(), time.perf_counter()
    out = fn()
    return Timing(time.process_time() - c0, time.perf_counter() - w0), out


def cli_ingest(store: Path, log: Path, batch: int, extra_env: dict[str, str]) -> tuple[Timing, int]:
    """``kaudit ingest`` of ``log`` as its own process: (its CPU and wall time, peak RSS)."""
    env = {**os.environ, **extra_env}
    argv = [sys.executable, "-m", "kaudit", "ingest", "--store", str(store), "--no-progress"]
    argv += ["--batch-size", str(batch), "--output", "json", str(log)]
    w0 = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - w0
    if proc.returncode != 0:
        raise SystemExit(f"kaudit ingest failed ({proc.returncode})")
    return Timing(usage.ru_utime + usage.ru_stime, wall), usage.ru_maxrss * 1024


def load() -> str:
    try:
        return "load " + " ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "load ?"


def line(what: str, n: int, t: Timing, extra: str = "") -> None:
    print(
        f"  {what:<34} {n / t.wall:>9,.0f} events/s wall  {n / t.cpu:>9,.0f} events/s CPU  "
        f"({t.cpu * 1e6 / n:6.2f} µs/event CPU; {t.cpu:6.1f} s CPU, {t.wall:6.1f} s wall; "
        f"{load()}){extra}"
    )


def _fail(err: object, raw: bytes) -> None:
    raise AssertionError(f"generated traffic has a bad line: {err}")


def batches(path: Path, size: int) -> Iterator[list[Record]]:
    with open(path, "rb") as f:
        batch: list[Record] = []
        for rec in iter_records(f, str(path)):
            batch.append(rec)
            if len(batch) >= size:
                yield batch
                batch = []
        if batch:
            yield batch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--batch", type=int, default=10_000, help="events per append")
    ap.add_argument("--sample", type=int, default=200_000, help="events for the breakdown")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-cache", action="store_true", help="regenerate the traffic")
    ap.add_argument("--skip-api", action="store_true", help="only file -> store")
    ap.add_argument("--skip-stages", action="store_true", help="no per-stage breakdown")
    ap.add_argument("--baseline", metavar="REF", help="also measure git revision REF first")
    ap.add_argument("--label", default="this tree", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.baseline:
        baseline(args)
    print(machine_line())
    print(f"source: {args.label}")
    tmp = Path(tempfile.mkdtemp(prefix="kaudit-bench-ingest-"))
    try:
        if args.no_cache:
            lines = traffic_lines(args.events, args.seed, cache=False)
            log = tmp / "audit.log"
            with log.open("wb") as f:
                f.writelines(lines)
            del lines
        else:
            # The cached file itself: the parent holds no copy of a GB of lines while the
            # child process it times needs the memory (the kernel's reclaim would compete).
            log = traffic_file(args.events, args.seed)
        size = log.stat().st_size
        with log.open("rb") as src:
            sample = [ln.rstrip(b"\n") for ln in islice(src, args.sample)]
        n = args.events
        gc.collect()
        os.sync()  # the log's pages written back before anything is timed
        print(f"input: {n:,} events, {size / 1e6:,.0f} MB JSON Lines ({size / n:,.0f} B/event)\n")

        print("end to end (fresh store each):")
        for label, extra_env in (
            ("kaudit ingest (a process)", {}),
            ("kaudit ingest, KAUDIT_SCANNER=off", {"KAUDIT_SCANNER": "off"}),
        ):
            if extra_env and args.label != "this tree":
                continue  # a tree from before the scanner has no switch
            store_dir = tmp / "store-cli"
            t, rss = cli_ingest(store_dir, log, args.batch, extra_env)
            line(label, n, t, f"; peak RSS {rss / 1e6:,.0f} MB")
            if not extra_env:
                stats = open_store(store_dir).stats()
                mb, ratio = stats.bytes / 1e6, size / max(stats.bytes, 1)
                print(
                    f"    stored {stats.events:,} events in {stats.segments} segments, "
                    f"{mb:,.1f} MB: 1/{ratio:.1f} of the JSON log"
                )
            shutil.rmtree(store_dir)

        if not args.skip_api:
            store = open_store(tmp / "store-api", settings=StoreSettings())

            def run_api() -> int:
                total = 0
                with store.writer() as w:
                    for b in batches(log, args.batch):
                        total += w.append(b).stored
                return total

            t, stored = timed(run_api)
            line("Writer.append(iter_records)", n, t)
            shutil.rmtree(store.path)

        if args.skip_stages:
            return
        print(f"\nstages over {len(sample):,} events (batches of {args.batch:,}):")
        m = len(sample)

        def decode() -> list[list[Record]]:
            out: list[list[Record]] = []
            for i in range(0, m, args.batch):
                chunk = b"\n".join(sample[i : i + args.batch]) + b"\n"
                import io

                out.append(list(iter_records(io.BytesIO(chunk), "sample")))
            return out

        t, recs = timed(decode)
        line("decode (iter_records)", m, t)
        assert isinstance(recs, list)
        del recs
        try:
            from kaudit.model.codec import gc_paused
            from kaudit.sources.importer import _json_lines
        except ImportError:  # a tree from before the JSON Lines reader
            pass
        else:

            def paused() -> list[list[Record]]:
                with gc_paused():
                    return decode()

            t, recs = timed(paused)
            line("decode (iter_records, GC paused)", m, t)
            del recs

            def fast() -> list[list[Record]]:
                import io

                out: list[list[Record]] = []
                data = b"\n".join(sample) + b"\n"
                it = _json_lines(io.BytesIO(data), "sample", _fail, (), no_legacy=False)
                with gc_paused():
                    while batch := list(islice(it, args.batch)):
                        out.append([r for r in batch if isinstance(r, Record)])
                return out

            t, recs = timed(fast)
            line("decode (ingest's JSON Lines reader)", m, t)
        assert isinstance(recs, list)
        t, tables = timed(lambda: [flatten(b) for b in recs])
        line("flatten", m, t)
        try:
            from kaudit.store.scan import available, scan_buffer
        except ImportError:
            pass
        else:
            if available():
                data = b"\n".join(sample) + b"\n"
                step = 4 * 1024 * 1024  # the reader's chunks

                def scanned() -> int:
                    rows = pos = 0
                    while pos < len(data):
                        got = scan_buffer(data[pos : pos + step], 0)
                        rows += got.table.num_rows if got.table is not None else 0
                        pos += max(got.end, 1)
                    return rows

                t, rows = timed(scanned)
                line("native scanner (rows + dedup keys)", m, t, f" {rows:,} of the lines")
        assert isinstance(tables, list)
        t, frames = timed(lambda: [encode_frame(tb) for tb in tables])
        assert isinstance(frames, list)
        wal_mb = sum(len(f) for f in frames) / 1e6
        line("WAL frame (encode_frame)", m, t, f" {wal_mb:,.0f} MB")
        import pyarrow as pa

        whole = pa.concat_tables(tables)
        t, seg = timed(lambda: encode_segment(whole, StoreSettings()))
        assert isinstance(seg, bytes)
        line("Parquet segment (encode_segment)", m, t, f" {len(seg) / 1e6:,.1f} MB")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def baseline(args: argparse.Namespace) -> None:
    """Run this script's end-to-end part against the ``src`` tree of ``args.baseline``."""
    repo = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory(prefix="kaudit-bench-baseline-") as tmp:
        archive = subprocess.run(
            ["git", "-C", str(repo), "archive", args.baseline, "src"],
            check=True,
            capture_output=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        env = dict(os.environ, PYTHONPATH=str(Path(tmp) / "src"))
        argv = [sys.executable, __file__, "--skip-stages", "--label", f"git {args.baseline}"]
        argv += ["--events", str(args.events), "--batch", str(args.batch)]
        argv += ["--seed", str(args.seed)] + (["--skip-api"] if args.skip_api else [])
        subprocess.run(argv, env=env, check=True)
    print()


if __name__ == "__main__":
    main()
