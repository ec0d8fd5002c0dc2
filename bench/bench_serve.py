"""Benchmark: ``kaudit serve`` sustained events/s with durable acknowledgements.

Starts ``kaudit serve`` on 127.0.0.1 (a fresh store in a temp dir), then several client
processes POST apiserver-shaped EventList batches of 400 events, each waiting for the
200 (the batch is fsynced) before sending the next. Prints events/s and the p50/p99
acknowledgement latency, first flat out, then paced at a fixed rate. Bounded in count
and time; never asserts a time.

    python bench/bench_serve.py [--clients 4] [--batches 100] [--rate 10000] [--no-detect]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version

TOKEN = "bench-token"


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
    libs = ", ".join(
        f"{p} {version(p)}" for p in ("msgspec", "pyarrow", "duckdb", "starlette", "uvicorn")
    )
    return f"machine: {cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, {libs}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def client(url: str, bodies: list[bytes], interval: float, out: mp.Queue) -> None:  # type: ignore[type-arg]
    import httpx

    lat: list[float] = []
    failures = 0
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    with httpx.Client(timeout=30) as c:
        next_at = time.perf_counter()
        for body in bodies:
            if interval:
                delay = next_at - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                next_at += interval
            while True:
                t0 = time.perf_counter()
                r = c.post(url, content=body, headers=headers)
                if r.status_code == 200:
                    lat.append(time.perf_counter() - t0)
                    break
                failures += 1
                time.sleep(0.05)
    out.put((lat, failures))


def run(url: str, per_client: list[list[bytes]], interval: float) -> tuple[float, list[float], int]:
    q: mp.Queue = mp.Queue()  # type: ignore[type-arg]
    procs = [mp.Process(target=client, args=(url, b, interval, q)) for b in per_client]
    t0 = time.perf_counter()
    for p in procs:
        p.start()
    results = [q.get(timeout=600) for _ in procs]
    elapsed = time.perf_counter() - t0
    for p in procs:
        p.join()
    lat = sorted(x for r in results for x in r[0])
    return elapsed, lat, sum(r[1] for r in results)


def pct(values: list[float], p: float) -> float:
    return values[min(len(values) - 1, int(p / 100 * len(values)))] * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--batches", type=int, default=60, help="batches of 400 per client")
    ap.add_argument("--rate", type=int, default=10000, help="events/s of the paced run")
    ap.add_argument("--no-detect", action="store_true", help="serve without streaming detection")
    args = ap.parse_args()

    from kaudit.model.codec import encode_event_list
    from kaudit.traffic import generate

    print(machine())
    print(f"detection: {'off' if args.no_detect else 'on'}")
    n_batches = args.clients * args.batches
    evs = list(generate(n_batches * 400 * 2, seed=7))
    bodies = [encode_event_list(evs[i : i + 400]) for i in range(0, len(evs), 400)]
    flat, paced = bodies[:n_batches], bodies[n_batches:]
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "kaudit", "serve", "--store", f"{tmp}/store",
             "--port", str(port), "--token", f"bench={TOKEN}", "--log-level", "warning",
             *(["--no-detect"] if args.no_detect else [])],
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            import httpx

            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1)
                    break
                except httpx.TransportError:
                    time.sleep(0.1)
            url = f"http://127.0.0.1:{port}/audit/webhook?timeout=30s"
            split = [flat[i :: args.clients] for i in range(args.clients)]
            elapsed, lat, fails = run(url, split, 0.0)
            n = len(flat) * 400
            print(
                f"flat out: {args.clients} client processes, {n} events in {elapsed:.2f} s: "
                f"{n / elapsed:,.0f} events/s; ack latency p50 {pct(lat, 50):.1f} ms, "
                f"p99 {pct(lat, 99):.1f} ms; {fails} non-200 answers (retried)"
            )
            interval = 400 * args.clients / args.rate
            split = [paced[i :: args.clients] for i in range(args.clients)]
            elapsed, lat, fails = run(url, split, interval)
            n = len(paced) * 400
            print(
                f"paced at {args.rate:,} events/s: {n} events in {elapsed:.2f} s "
                f"({n / elapsed:,.0f} events/s); ack latency p50 {pct(lat, 50):.1f} ms, "
                f"p99 {pct(lat, 99):.1f} ms; {fails} non-200 answers (retried)"
            )
            m = httpx.get(f"http://127.0.0.1:{port}/metrics").text
            for line in m.splitlines():
                if line.startswith(
                    (
                        "kaudit_commit_batches_count",
                        "kaudit_commit_batches_sum",
                        "kaudit_events_stored_total",
                        "kaudit_detect_events_total",
                        "kaudit_detect_lag_seconds_sum",
                        "kaudit_detect_lag_seconds_count",
                    )
                ):
                    print("  " + line)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)


if __name__ == "__main__":
    main()
