"""Dashboard benchmark: how long each page's data takes over a store of N events.

    python bench/bench_ui.py [--events 1000000] [--copies 1] [--repeat 3] [--keep DIR]

Generates traffic with ``kaudit.traffic`` (1000 events/s of simulated time), ingests
it into a temporary store (``kaudit ingest``, from the cached JSON log), then times
the JSON twin of each page in process (the same data the HTML page renders), best of
``--repeat`` (each run on a new app, so nothing is cached) and once more on the same app
(a reload), through the real ASGI app with a bearer token. ``--copies K`` grows the
store to K time-shifted copies of the generated events (10M events for the price of
generating 1M). Prints the figures and a machine line; asserts nothing about time.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import CACHE_DIR, machine_line

TOKEN = "bench-token"


def log_file(n: int, seed: int) -> Path:
    from kaudit.traffic import generate_lines

    path = CACHE_DIR / f"traffic-seed{seed}-{n}.jsonl"
    if not path.exists():
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            for line in generate_lines(n, seed=seed):
                f.write(line)
        tmp.rename(path)
    return path


def replicate(store_dir: Path, copies: int) -> None:
    """Grow a store to ``copies`` time-shifted copies of its segments (each copy later
    than the last, audit IDs made unique): 10M events from 1M generated ones, without
    generating 10M. Only the flat columns move; the ``event`` column stays the original."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from kaudit.store.layout import new_id
    from kaudit.store.manifest import Manifest
    from kaudit.store.segments import write_segments
    from kaudit.store.settings import StoreSettings

    man = Manifest(store_dir)
    base = sorted(man.state.segments.values(), key=lambda s: s.path)
    lo = min(s.min_ts for s in base)
    hi = max(s.max_ts for s in base)
    step = ((hi - lo) // 60_000_000 + 2) * 60_000_000  # whole minutes, a gap between copies
    settings = StoreSettings()
    for k in range(1, copies):
        for seg in base:
            t = pq.read_table(store_dir / seg.path)
            shift = pa.scalar(step * k, pa.duration("us"))
            prefix = f"{k:02x}"
            aid = t["audit_id"]
            new_aid = pc.if_else(
                pc.equal(aid, ""),
                aid,
                pc.binary_join_element_wise(prefix, pc.utf8_slice_codeunits(aid, 2), ""),
            )
            for name, col in (
                ("ts", pc.add(t["ts"], shift)),
                ("stage_ts", pc.add(t["stage_ts"], shift)),
                ("audit_id", new_aid),
            ):
                t = t.set_column(
                    t.schema.get_field_index(name), name, col.cast(t.schema.field(name).type)
                )
            infos = write_segments(store_dir, new_id(), t, settings)
            man.append("flush", add=infos)
        print(f"copy {k + 1}/{copies} written", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--keep", type=Path, default=None, help="store directory to keep/reuse")
    ap.add_argument(
        "--only", default="", help="time only the pages whose name contains this (e.g. overview)"
    )
    ap.add_argument(
        "--copies",
        type=int,
        default=1,
        help="grow the store to this many time-shifted copies of the --events generated "
        "(e.g. --events 1000000 --copies 10 for 10M events)",
    )
    args = ap.parse_args()

    import httpx

    from kaudit.config import load_config
    from kaudit.store import open_store

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from kaudit.cli.ui import build_ui_app

    print(machine_line())
    tmp = None
    store_dir = args.keep
    if store_dir is None:
        tmp = tempfile.mkdtemp(prefix="kaudit-bench-ui-")
        store_dir = Path(tmp) / "store"
    if not (store_dir / "manifest.jsonl").exists() and not any(store_dir.glob("**/*.parquet")):
        log = log_file(args.events, args.seed)
        t = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "kaudit", "ingest", "--store", str(store_dir), str(log)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        print(f"ingest {args.events} events: {time.perf_counter() - t:.1f} s")
    store = open_store(store_dir)
    st = store.stats()
    if args.copies > 1 and st.events < args.events * args.copies:
        t = time.perf_counter()
        replicate(store_dir, args.copies)
        print(f"replicated to {args.copies} copies: {time.perf_counter() - t:.1f} s")
        st = store.stats()
    print(f"store: {st.events} events, {st.segments} segments, {st.bytes / 1e6:.1f} MB")
    config = load_config(
        None, env={}, flags={"store_path": str(store_dir), "tokens": [f"b={TOKEN}"]}
    )
    newest = store.query("SELECT max(ts) AS t FROM events")["t"][0].as_py()
    user = store.query("SELECT username FROM events GROUP BY 1 ORDER BY count(*) DESC LIMIT 1")[
        "username"
    ][0].as_py()
    obj = store.query(
        "SELECT resource, api_group, namespace, name FROM events WHERE verb = 'update' "
        "AND name IS NOT NULL LIMIT 1"
    ).to_pylist()[0]
    aid = store.query("SELECT audit_id FROM events WHERE audit_id <> '' LIMIT 1")["audit_id"][
        0
    ].as_py()
    print(f"newest event: {newest}")
    cases = [
        ("overview 1h", "/api/v1/overview?since=1h"),
        ("overview 24h (all)", "/api/v1/overview?since=24h"),
        ("search verb=delete, page 1", "/api/v1/search?verb=delete&limit=50"),
        ("search user glob, page 3", "/api/v1/search?user=system:serviceaccount:*&limit=50&page=3"),
        ("event page", f"/api/v1/events/{aid}"),
        (
            "object history",
            f"/api/v1/history?object={obj['resource']}"
            f"{'.' + obj['api_group'] if obj['api_group'] else ''}/{obj['name']}"
            f"&namespace={obj['namespace'] or ''}",
        ),
        ("user timeline 24h", f"/api/v1/timeline?user={user}&since=24h"),
        ("alerts", "/api/v1/alerts"),
    ]

    async def get(app: object, name: str, url: str) -> float:
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(
            transport=transport, base_url="http://bench", timeout=600
        ) as c:
            t = time.perf_counter()
            r = await c.get(url, headers={"Authorization": f"Bearer {TOKEN}"})
            took = time.perf_counter() - t
            if r.status_code != 200:
                raise SystemExit(f"{name}: {r.status_code} {r.text[:300]}")
            return took

    async def run() -> None:
        # "cold": the overview with the store's rollups removed first (every segment
        # aggregated and cached); "uncached": a new app (an empty result cache) for every
        # run, rollups cached on disk (the in-process copy of the rollups forgotten first, as
        # in a new process); "memo": a new app with the rollups already in memory (a
        # long-running server); "again": the same request once more on the last app (what
        # a reload costs while no event arrives).
        from kaudit.query.rollup import clear_memo

        print(
            f"{'page':34} {'cold s':>8} {'best s':>8} {'median s':>9} {'memo s':>8} {'again s':>8}"
        )
        for name, url in cases:
            if args.only not in name:
                continue
            cold = "-"
            if name.startswith("overview"):
                shutil.rmtree(store_dir / "cache", ignore_errors=True)
                cold = f"{await get(build_ui_app(config, store), name, url):.3f}"
            times = []
            for _ in range(args.repeat):
                clear_memo()
                fresh = build_ui_app(config, store)
                times.append(await get(fresh, name, url))
            memo = await get(build_ui_app(config, store), name, url)
            fresh = build_ui_app(config, store)
            memo = min(memo, await get(fresh, name, url))
            again = await get(fresh, name, url)
            times.sort()
            print(
                f"{name:34} {cold:>8} {times[0]:8.3f} {times[len(times) // 2]:9.3f} "
                f"{memo:8.3f} {again:8.3f}"
            )

    asyncio.run(run())
    if tmp is not None:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
