"""Generation speed of kaudit.traffic: Event structs and JSON log lines.

    .venv/bin/python bench/bench_traffic.py            # 1M events, 200k lines

Prints figures, asserts nothing about time.
"""

from __future__ import annotations

import argparse
import sys
from collections import deque
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import best_of, machine_line, rate  # noqa: E402
from kaudit.traffic import generate, generate_lines  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000, help="events (default 1,000,000)")
    ap.add_argument("--lines", type=int, default=200_000, help="lines (default 200,000)")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    print(machine_line())
    t = best_of(args.repeat, lambda: deque(generate(args.n, seed=1), maxlen=0))
    print(f"  generate() -> Event                  {rate(args.n, t)}")
    t = best_of(args.repeat, lambda: deque(generate_lines(args.lines, seed=1), maxlen=0))
    print(f"  generate_lines() -> bytes            {rate(args.lines, t)}")
    size = sum(len(x) for x in generate_lines(args.lines, seed=1))
    print(f"  mean line size: {size / args.lines:,.0f} bytes")


if __name__ == "__main__":
    main()
