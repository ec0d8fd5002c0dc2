"""Decode and encode throughput of audit log lines: kaudit.model vs stdlib json, orjson, msgspec.

    .venv/bin/python bench/bench_decode.py            # 1M lines of generated traffic
    .venv/bin/python bench/bench_decode.py --n 200000 --repeat 5

The lines come from :mod:`kaudit.traffic` (cached in ``bench/.cache``). Decoding is
timed over every line; encoding over the decoded events, in chunks so memory stays
bounded. All ratios are from the same run. Prints figures, asserts nothing about time.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import deque
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import msgspec
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ZERO, Timing, best_of, machine_line, rate, traffic_lines  # noqa: E402
from kaudit.model import decode_event, encode_event  # noqa: E402

CHUNK = 100_000


def _drain(fn: Callable[[bytes], object], lines: list[bytes]) -> None:
    deque(map(fn, lines), maxlen=0)


def _time_map(repeat: int, fn: Callable[[Any], object], items: list[Any]) -> Timing:
    return best_of(repeat, lambda: deque(map(fn, items), maxlen=0))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000, help="lines (default 1,000,000)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per figure; the best is kept")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-cache", action="store_true", help="regenerate the traffic")
    args = ap.parse_args()

    print(machine_line())
    lines = traffic_lines(args.n, args.seed, cache=not args.no_cache)
    n = len(lines)
    mb = sum(map(len, lines)) / 1e6
    print(f"input: {n:,} lines, {mb:,.0f} MB, best of {args.repeat}\n")

    print("decode (bytes -> object), every line:")
    decoders: list[tuple[str, Callable[[bytes], object]]] = [
        ("kaudit.model.decode_event -> Event", decode_event),
        ("json.loads (stdlib) -> dict", json.loads),
        ("orjson.loads -> dict", orjson.loads),
        ("msgspec.json.decode -> dict", msgspec.json.decode),
    ]
    dec_times: dict[str, Timing] = {}
    for name, fn in decoders:
        dt = best_of(args.repeat, partial(_drain, fn, lines))
        dec_times[name] = dt
        print(f"  {name:<36} {rate(n, dt)}  {mb / dt.cpu:5,.0f} MB/s")
    kd = dec_times["kaudit.model.decode_event -> Event"].cpu
    base = dec_times["json.loads (stdlib) -> dict"].cpu
    orj = dec_times["orjson.loads -> dict"].cpu
    msd = dec_times["msgspec.json.decode -> dict"].cpu
    print(
        f"  speed of decode_event relative to: json.loads {base / kd:.2f}x, "
        f"orjson.loads {orj / kd:.2f}x, msgspec->dict {msd / kd:.2f}x (CPU time)"
    )

    print("\nencode (object -> bytes), in chunks of 100k decoded objects:")
    enc = {
        "kaudit.model.encode_event (exact line)": ZERO,
        "json.dumps (stdlib) of dict": ZERO,
        "orjson.dumps of dict": ZERO,
    }
    mismatches = 0
    first_mismatch: bytes | None = None
    t_check = time.perf_counter()
    for i in range(0, n, CHUNK):
        chunk = lines[i : i + CHUNK]
        events = [decode_event(x) for x in chunk]
        enc["kaudit.model.encode_event (exact line)"] += _time_map(
            args.repeat, encode_event, events
        )
        for line, ev in zip(chunk, events, strict=True):
            if encode_event(ev) != line:
                mismatches += 1
                first_mismatch = first_mismatch or line
        dicts = [orjson.loads(x) for x in chunk]
        enc["json.dumps (stdlib) of dict"] += _time_map(args.repeat, json.dumps, dicts)
        enc["orjson.dumps of dict"] += _time_map(args.repeat, orjson.dumps, dicts)
    for name, dt in enc.items():
        print(f"  {name:<38} {rate(n, dt)}")
    ke = enc["kaudit.model.encode_event (exact line)"].cpu
    jd = enc["json.dumps (stdlib) of dict"].cpu
    od = enc["orjson.dumps of dict"].cpu
    print(
        f"  speed of encode_event relative to: json.dumps {jd / ke:.2f}x, "
        f"orjson.dumps {od / ke:.2f}x (neither is byte-exact to the apiserver) (CPU time)"
    )
    print(
        f"\nround trip encode_event(decode_event(line)) == line: {n - mismatches:,}/{n:,} "
        f"identical ({time.perf_counter() - t_check:.0f} s for the encode section)"
    )
    if first_mismatch is not None:
        print(f"  first differing line: {first_mismatch[:300]!r}")


if __name__ == "__main__":
    main()
